/// The one error type of the format and assembly layers: what failed, where, and why.
///
/// `description` is the single line the CLI prints; it always names the file involved.
public struct JigdoError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// A file could not be opened or read (carries the errno text).
        case io
        /// A .jigdo file is not valid (syntax, missing entries, include loop).
        case syntax
        /// A format version this program does not know.
        case unsupportedVersion
        /// A .template file is truncated, corrupt or inconsistent.
        case corruptTemplate
        /// A checksum did not match the one that was promised.
        case checksumMismatch
        /// A part of the image is not available from any source.
        case partUnavailable
        /// The user asked for something that cannot be done (bad option, file exists).
        case usage
    }

    public var kind: Kind
    /// The file the error is about, if any.
    public var path: String?
    public var message: String

    public init(_ kind: Kind, path: String? = nil, _ message: String) {
        self.kind = kind
        self.path = path
        self.message = message
    }

    public var description: String {
        if let path { return "\(path): \(message)" }
        return message
    }
}
