#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The system's error text for an errno value.
public func errnoText(_ code: Int32) -> String {
    String(cString: strerror(code))
}

/// An open file descriptor for positional reads, shared safely between threads.
///
/// All libc file calls of the reading layers go through here, so error handling lives in one
/// place: every failure becomes a `JigdoError(.io)` naming the file.
public final class ReadOnlyFile: Sendable {
    public let path: String
    public let size: Int64
    /// Inode and mtime, so callers can tell whether a file changed under them.
    public let inode: UInt64
    public let modificationTime: Int64
    private let fd: Int32

    public init(path: String) throws {
        self.path = path
        // A path from a .jigdo may hold raw (non-UTF-8) name bytes (RawNames).
        let fd = RawNames.withFileSystemPath(path) { open($0, O_RDONLY | O_CLOEXEC) }
        if fd < 0 {
            throw JigdoError(.io, path: RawNames.display(path), "cannot open: \(errnoText(errno))")
        }
        var st = stat()
        if fstat(fd, &st) != 0 {
            let e = errno
            close(fd)
            throw JigdoError(.io, path: path, "cannot stat: \(errnoText(e))")
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            close(fd)
            throw JigdoError(.io, path: path, "is a directory, not a file")
        }
        self.fd = fd
        self.size = Int64(st.st_size)
        self.inode = UInt64(st.st_ino)
        self.modificationTime = Int64(st.st_mtim.tv_sec)
    }

    deinit { close(fd) }

    /// Reads exactly `buffer.count` bytes at `offset`; a short file is an error.
    public func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw JigdoError(.io, path: path, "read failed at offset \(offset + Int64(done)): \(errnoText(errno))")
            }
            if n == 0 {
                throw JigdoError(.io, path: path, "file ends at \(offset + Int64(done)), expected \(buffer.count - done) more bytes (was it truncated?)")
            }
            done += n
        }
    }

    public func read(at offset: Int64, count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        try out.withUnsafeMutableBytes { try read(at: offset, into: $0) }
        return out
    }

    /// Reads the whole file (for small files such as a .jigdo).
    public func readAll() throws -> [UInt8] {
        try read(at: 0, count: Int(size))
    }

    /// Hashes the whole file with the given algorithm.
    public func checksum(_ kind: ChecksumKind, bufferSize: Int = 1 << 20) throws -> Checksum {
        var hasher = ChecksumHasher(kind)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 16)
        defer { buffer.deallocate() }
        var offset: Int64 = 0
        while offset < size {
            let n = Int(min(Int64(bufferSize), size - offset))
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n])
            try read(at: offset, into: slice)
            hasher.update(UnsafeRawBufferPointer(slice))
            offset += Int64(n)
        }
        return hasher.finalize()
    }
}
