#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import JigdoFormat

/// Random access to the bytes of a disc image: what the ISO 9660 reader needs and nothing more.
///
/// `ImageFile` (a plain .iso file or a block device) satisfies it, and so does `ImageReader` (a
/// jigdo image; the conformance is glue code in PartSources, since this module sits below
/// ImageAssembly), so the reader is tested on real ISOs and used on jigdo images alike.
public protocol ImageByteSource: Sendable {
    /// The image size in bytes.
    var size: Int64 { get }
    /// Fills `buffer` from `offset`; returns the bytes read, fewer only at the end of the image.
    func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

/// A plain image file or block device, read with pread. Its size comes from seeking to the end,
/// which also works for block devices (where stat reports 0).
public final class ImageFile: ImageByteSource {
    public let path: String
    public let size: Int64
    /// From fstat: lets callers tell whether the image changed (e.g. for cached checksums).
    public let inode: UInt64
    public let modificationTimeNs: Int64
    public let isBlockDevice: Bool
    private let fd: Int32

    public init(path: String) throws {
        self.path = path
        let fd = Syscalls.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw JigdoError(.io, path: path, "cannot open", errno: SystemErrno(errno)) }
        var st = stat()
        guard Syscalls.fstat(fd, &st) == 0 else {
            let e = errno
            Syscalls.close(fd)
            throw JigdoError(.io, path: path, "cannot stat", errno: SystemErrno(e))
        }
        let type = st.st_mode & S_IFMT
        guard type == S_IFREG || type == S_IFBLK else {
            Syscalls.close(fd)
            throw JigdoError(.io, path: path, type == S_IFDIR ? "is a directory, not an image" : "is not a regular file or block device")
        }
        let end = lseek(fd, 0, SEEK_END)
        guard end >= 0 else {
            let e = errno
            Syscalls.close(fd)
            throw JigdoError(.io, path: path, "cannot find the size", errno: SystemErrno(e))
        }
        self.fd = fd
        self.size = Int64(end)
        self.inode = UInt64(st.st_ino)
        self.modificationTimeNs = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        self.isBlockDevice = type == S_IFBLK
    }

    deinit { Syscalls.close(fd) }

    /// Whether the open file still has the size and mtime it had when opened (a block device
    /// has no such record: true). A file written to in place since (`dd`, `rsync --inplace`)
    /// no longer holds what was hashed from it then.
    public func isUnchanged() -> Bool {
        guard !isBlockDevice else { return true }
        var st = stat()
        guard Syscalls.fstat(fd, &st) == 0 else { return false }
        return Int64(st.st_size) == size
            && Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec) == modificationTimeNs
    }

    public func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard offset >= 0 else { throw JigdoError(.invalidArgument, path: path, "negative offset \(offset)") }
        guard offset < size, buffer.count > 0 else { return 0 }
        let total = Int(min(Int64(buffer.count), size - offset))
        return try preadFully(fd, path: path, at: offset, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<total]))
    }
}

/// Whether the file at `path` looks like an ISO 9660 image ("CD001" at the first volume
/// descriptor), as opposed to a .jigdo. Reads 6 bytes.
public func looksLikeISO9660File(_ path: String) -> Bool {
    guard let f = try? ImageFile(path: path) else { return false }
    let yes = try? ISO9660Signature.probe(size: f.size) { offset, count in
        var bytes = [UInt8](repeating: 0, count: count)
        let n = try bytes.withUnsafeMutableBytes { try f.read(at: offset, into: $0) }
        return Array(bytes.prefix(n))
    }
    return yes ?? false
}
