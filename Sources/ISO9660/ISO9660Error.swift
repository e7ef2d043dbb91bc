/// What went wrong while reading an ISO 9660 file system.
///
/// `description` is one line naming the image (and the path inside it, when there is one).
/// A type of its own beside `JigdoError`: its kinds are the answers of a file-system lookup
/// (no such entry, not a directory), which the FUSE bridge turns into ENOENT, ENOTDIR,
/// EISDIR, ELOOP, EOPNOTSUPP or EIO (`ErrnoMapping`), and the reader does not depend on the
/// .jigdo layers for them. Errors of the byte source (e.g. a part that cannot be had) are
/// passed through unchanged.
public struct ISO9660Error: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// The image has no ISO 9660 primary volume descriptor.
        case notISO9660
        /// A structure is inconsistent: lengths out of bounds, a directory loop, a broken chain.
        case damaged
        case notFound
        case notADirectory
        case isADirectory
        /// Too many symbolic links while resolving a path.
        case symlinkLoop
        /// A file stored in a way this reader does not decode (interleaved, unknown compression).
        case unsupported
    }

    public var kind: Kind
    /// The image's name, as given to `ISO9660Volume.open`.
    public var image: String
    /// The path inside the image, if the error is about one.
    public var path: String?
    public var message: String

    public init(_ kind: Kind, image: String, path: String? = nil, _ message: String) {
        self.kind = kind
        self.image = image
        self.path = path
        self.message = message
    }

    public var description: String {
        if let path { return "\(image): \(path): \(message)" }
        return "\(image): \(message)"
    }
}
