#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ISO9660
import JigdoFormat

/// THE place where an error becomes the errno a FUSE request is answered with. Everything
/// below the bridge throws typed errors (`JigdoError`, `ISO9660Error`, a bare `SystemErrno`);
/// nothing there returns or reads errno values meant for the kernel.
///
/// - `ISO9660Error`: not found -> ENOENT, not a directory -> ENOTDIR, a directory -> EISDIR,
///   link loop -> ELOOP (these four are expected answers, not logged), unsupported storage ->
///   EOPNOTSUPP, damaged or not ISO 9660 -> EIO.
/// - `JigdoError` that carries the errno of the system call that failed (`errno`): that errno
///   (a local part that became unreadable, EACCES; one that vanished, ENOENT).
/// - `JigdoError` by kind: a bad argument or request (`.usage`, `.invalidArgument`) -> EINVAL;
///   anything the image's data cannot give (no source for a part, a corrupt template, a
///   checksum mismatch, a bad .jigdo, an unreadable file without errno) -> EIO.
/// - a bare `SystemErrno`: itself. Anything else -> EIO, never a crash.
public enum ErrnoMapping {
    /// The positive errno for `error`, and whether it is an expected answer (a lookup of a
    /// name that is not there) that need not be logged.
    public static func errno(for error: any Error) -> (code: Int32, expected: Bool) {
        if let e = error as? ISO9660Error {
            switch e.kind {
            case .notFound: return (ENOENT, true)
            case .notADirectory: return (ENOTDIR, true)
            case .isADirectory: return (EISDIR, true)
            case .symlinkLoop: return (ELOOP, true)
            case .unsupported: return (EOPNOTSUPP, false)
            case .damaged, .notISO9660: return (EIO, false)
            }
        }
        if let e = error as? JigdoError {
            if let own = e.errno, own.rawValue > 0 { return (own.rawValue, false) }
            switch e.kind {
            case .usage, .invalidArgument:
                return (EINVAL, false)
            case .io:
                // An I/O failure wrapping another error (e.g. an ISO 9660 error of an image
                // used as a part source) answers as its cause would.
                if let cause = e.underlying { return (errno(for: cause).code, false) }
                return (EIO, false)
            case .partUnavailable, .checksumMismatch, .corruptTemplate, .syntax, .unsupportedVersion, .badFormat, .overLimit:
                return (EIO, false)
            }
        }
        if let e = error as? SystemErrno, e.rawValue > 0 { return (e.rawValue, false) }
        return (EIO, false)
    }

    /// The errno's symbolic name for a log line ("EIO", "ENOENT").
    public static func name(_ code: Int32) -> String { SystemErrno(code).name }
}
