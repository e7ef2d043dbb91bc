#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one error type of the format and assembly layers: what failed, where, and why.
///
/// `description` is the single line the CLI prints; it always names the file involved. A
/// failed system call keeps its errno (`errno`), which `description` spells out at the end;
/// a failure caused by another error keeps that error (`underlying`), so the FUSE boundary
/// and the logs can see the whole chain while the line stays one line.
public struct JigdoError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// A file could not be opened, read or written (usually carries the errno).
        case io
        /// A .jigdo (or configuration) file is not valid (syntax, missing entries, include loop).
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
        /// A caller passed a value outside what the callee accepts (a negative offset, a read
        /// beyond the end of a file): a bug of the caller or a request the kernel forwarded.
        case invalidArgument
        /// A file is not in the format it must have (an image that is not ISO 9660, status
        /// data that is not the JSON a mount writes); unlike `.syntax`, not a .jigdo file.
        case badFormat
        /// What a .jigdo or template declares would cost more memory than the mount's or
        /// command's limit allows (`MetadataBudget`).
        case overLimit
    }

    public var kind: Kind
    /// The file the error is about, if any.
    public var path: String?
    /// What failed, without the path and without the errno's text (see `reason`).
    public var message: String
    /// The errno of the system call that failed, if one did.
    public var errno: SystemErrno?
    /// The error this one wraps, if it was caused by another (a download failure, an
    /// ISO 9660 error, a JigdoError of a lower layer).
    public var underlying: (any Error)?

    public init(_ kind: Kind, path: String? = nil, _ message: String, errno: SystemErrno? = nil, underlying: (any Error)? = nil) {
        self.kind = kind
        self.path = path
        self.message = message
        self.errno = errno
        self.underlying = underlying
    }

    /// The message followed by the errno's text: the line without the path.
    public var reason: String {
        if let errno { return "\(message): \(errno.text)" }
        return message
    }

    public var description: String {
        if let path { return "\(path): \(reason)" }
        return reason
    }

    /// The chain of causes, this error first (each `JigdoError`'s `underlying`, in turn).
    public var causes: [any Error] {
        var chain: [any Error] = [self]
        var next = underlying
        while let e = next, chain.count < 32 {
            chain.append(e)
            next = (e as? JigdoError)?.underlying
        }
        return chain
    }

    /// The first errno in the chain of causes (this error's own first).
    public var firstErrno: SystemErrno? {
        for e in causes {
            if let j = e as? JigdoError, let errno = j.errno { return errno }
            if let s = e as? SystemErrno { return s }
        }
        return nil
    }

    /// Errors are equal when they say the same: kind, path, message and errno. The cause is
    /// not compared (an arbitrary error is not Equatable); it never changes the line printed.
    public static func == (a: JigdoError, b: JigdoError) -> Bool {
        a.kind == b.kind && a.path == b.path && a.message == b.message && a.errno == b.errno
    }
}

/// An errno value of a failed system call, kept as a value rather than as text (modelled on
/// swift-system's `Errno`). It is an `Error` itself, so a bare errno can be a cause.
public struct SystemErrno: Error, Hashable, Sendable, CustomStringConvertible {
    /// The positive errno code (ENOENT, EACCES, ...).
    public var rawValue: Int32

    public init(_ rawValue: Int32) { self.rawValue = rawValue }

    /// The errno of the last failed call on this thread (read it right after the call).
    public static var current: SystemErrno { SystemErrno(errno) }

    /// The system's text for it ("No such file or directory").
    public var text: String { errnoText(rawValue) }

    /// The symbolic name for the common codes ("ENOENT"); "errno N" for others.
    public var name: String {
        switch rawValue {
        case EPERM: return "EPERM"
        case ENOENT: return "ENOENT"
        case EIO: return "EIO"
        case EBADF: return "EBADF"
        case ENOMEM: return "ENOMEM"
        case EACCES: return "EACCES"
        case EEXIST: return "EEXIST"
        case ENOTDIR: return "ENOTDIR"
        case EISDIR: return "EISDIR"
        case EINVAL: return "EINVAL"
        case EMFILE: return "EMFILE"
        case ENFILE: return "ENFILE"
        case EFBIG: return "EFBIG"
        case ENOSPC: return "ENOSPC"
        case EROFS: return "EROFS"
        case EPIPE: return "EPIPE"
        case ENAMETOOLONG: return "ENAMETOOLONG"
        case ELOOP: return "ELOOP"
        case EDQUOT: return "EDQUOT"
        case EAGAIN: return "EAGAIN"
        case EINTR: return "EINTR"
        case EXDEV: return "EXDEV"
        case EBUSY: return "EBUSY"
        case ENODEV: return "ENODEV"
        case ENXIO: return "ENXIO"
        case ETIMEDOUT: return "ETIMEDOUT"
        case EOPNOTSUPP: return "EOPNOTSUPP"
        default: return "errno \(rawValue)"
        }
    }

    public var description: String { "\(text) (\(name))" }
}
