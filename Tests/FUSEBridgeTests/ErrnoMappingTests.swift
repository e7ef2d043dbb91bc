// The one conversion of errors into errno values (FUSEBridge's ErrnoMapping), tested with
// the errors the layers below really throw where they can be provoked without a mount.
#if canImport(Glibc)
import Glibc
#endif
import FUSEBridge
import ISO9660
import JigdoFormat
import Testing
import TestSupport

@Suite("Errors become errno values once, at the FUSE boundary")
struct ErrnoMappingTests {
    @Test("ISO 9660 kinds: lookups are expected answers, damage is EIO",
          arguments: [
              (ISO9660Error.Kind.notFound, ENOENT, true), (.notADirectory, ENOTDIR, true),
              (.isADirectory, EISDIR, true), (.symlinkLoop, ELOOP, true),
              (.unsupported, EOPNOTSUPP, false), (.damaged, EIO, false), (.notISO9660, EIO, false),
          ])
    func iso9660Kinds(_ kind: ISO9660Error.Kind, _ code: Int32, _ expected: Bool) {
        let r = ErrnoMapping.errno(for: ISO9660Error(kind, image: "x.iso", path: "/a", "m"))
        #expect(r.code == code)
        #expect(r.expected == expected)
    }

    @Test("JigdoError kinds without errno: bad requests are EINVAL, everything else EIO",
          arguments: [
              (JigdoError.Kind.usage, EINVAL), (.invalidArgument, EINVAL), (.io, EIO), (.syntax, EIO),
              (.unsupportedVersion, EIO), (.corruptTemplate, EIO), (.checksumMismatch, EIO),
              (.partUnavailable, EIO), (.badFormat, EIO),
          ])
    func jigdoKinds(_ kind: JigdoError.Kind, _ code: Int32) {
        let r = ErrnoMapping.errno(for: JigdoError(kind, path: "p", "m"))
        #expect(r.code == code)
        #expect(!r.expected, "only ISO 9660 lookups are answers that need no log line")
    }

    @Test("a carried errno is answered as itself, whatever the kind",
          arguments: [ENOENT, EACCES, ENOSPC, EROFS, EMFILE])
    func carriedErrno(_ code: Int32) {
        #expect(ErrnoMapping.errno(for: JigdoError(.io, path: "p", "cannot open", errno: SystemErrno(code))).code == code)
        #expect(ErrnoMapping.errno(for: JigdoError(.usage, "m", errno: SystemErrno(code))).code == code)
        #expect(ErrnoMapping.errno(for: SystemErrno(code)).code == code)
    }

    @Test("an I/O error answers as its cause; a part with no source stays EIO")
    func causes() {
        let lookup = ISO9660Error(.notFound, image: "old.iso", path: "/f", "no such file")
        #expect(ErrnoMapping.errno(for: JigdoError(.io, path: "old.iso", "--scan-image: /f", underlying: lookup)).code == ENOENT)
        let cause = JigdoError(.io, path: "a", "read failed", errno: SystemErrno(EACCES))
        #expect(ErrnoMapping.errno(for: JigdoError(.io, "wrapped", underlying: cause)).code == EACCES)
        #expect(ErrnoMapping.errno(for: JigdoError(.partUnavailable, "no source", underlying: cause)).code == EIO)
    }

    @Test("an error of no known type is EIO")
    func unknown() {
        struct Other: Error {}
        #expect(ErrnoMapping.errno(for: Other()).code == EIO)
        #expect(ErrnoMapping.errno(for: SystemErrno(0)).code == EIO)
    }

    @Test("a file that is not there: ENOENT kept in the error, the line as before")
    func missingFile() throws {
        let tmp = try TemporaryDirectory()
        let path = tmp.file("absent")
        let e = try #require(throws: JigdoError.self) { _ = try ReadOnlyFile(path: path) }
        #expect(e.errno == SystemErrno(ENOENT))
        #expect(e.description == "\(path): cannot open: \(String(cString: strerror(ENOENT)))")
        #expect(ErrnoMapping.errno(for: e).code == ENOENT)
        #expect(e.causes.count == 1)
    }

    @Test("a negative offset is a bad argument (EINVAL), not a usage error")
    func negativeOffset() throws {
        let tmp = try TemporaryDirectory()
        let path = tmp.file("f")
        let fd = open(path, O_WRONLY | O_CREAT, 0o600)
        try #require(fd >= 0)
        let written = [UInt8](repeating: 1, count: 4096).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        try #require(written == 4096)
        let file = try ImageFile(path: path)
        var buf = [UInt8](repeating: 0, count: 16)
        let e = try #require(throws: JigdoError.self) {
            _ = try buf.withUnsafeMutableBytes { try file.read(at: -1, into: $0) }
        }
        #expect(e.kind == .invalidArgument)
        #expect(ErrnoMapping.errno(for: e).code == EINVAL)
    }

    @Test("the cause chain lists every wrapped error, the first errno found through it")
    func chain() {
        let root = JigdoError(.io, path: "part", "read failed", errno: SystemErrno(EIO))
        let mid = JigdoError(.partUnavailable, path: "part", "refused", underlying: root)
        let top = JigdoError(.io, "image", underlying: mid)
        #expect(top.causes.count == 3)
        #expect(top.firstErrno == SystemErrno(EIO))
        #expect(top.description == "image", "the cause never lengthens the line")
        #expect(SystemErrno(ENOENT).name == "ENOENT")
    }
}
