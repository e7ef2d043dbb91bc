#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The system's error text for an errno value.
public func errnoText(_ code: Int32) -> String {
    String(cString: strerror(code))
}

/// What identifies one version of a file: a file rewritten in place changes its mtime and
/// ctime, a file replaced changes its inode. Nanosecond times, so a rewrite within the same
/// second is still seen (ctime cannot be set back by the file's owner).
public struct FileIdentity: Sendable, Hashable {
    public var device: UInt64
    public var inode: UInt64
    public var size: Int64
    public var modificationTimeNs: Int64
    public var changeTimeNs: Int64

    public init(_ st: stat) {
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
        size = Int64(st.st_size)
        modificationTimeNs = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        changeTimeNs = Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec)
    }
}

/// An open file descriptor for positional reads, shared safely between threads.
///
/// The reading layers read files through here (and its calls go through `Syscalls`), so error
/// handling lives in one place: every failure becomes a `JigdoError(.io)` naming the file.
public final class ReadOnlyFile: Sendable {
    public let path: String
    public let size: Int64
    /// Inode and mtime, so callers can tell whether a file changed under them.
    public let inode: UInt64
    public let modificationTime: Int64
    /// The file as it was when opened (see `currentIdentity`).
    public let identity: FileIdentity
    /// The owner's user id.
    public let owner: UInt32
    /// Whether it is a regular file (not a directory, device or FIFO).
    public let isRegularFile: Bool
    private let fd: Int32

    /// `extraFlags` are added to the open(2) flags (e.g. O_NOFOLLOW for files in a cache).
    public convenience init(path: String, extraFlags: Int32 = 0) throws {
        // A path from a .jigdo may hold raw (non-UTF-8) name bytes (RawNames).
        let fd = RawNames.withFileSystemPath(path) { Syscalls.open($0, O_RDONLY | O_CLOEXEC | extraFlags) }
        if fd < 0 {
            let e = SystemErrno.current
            throw JigdoError(.io, path: RawNames.display(path), "cannot open", errno: e)
        }
        var st = stat()
        if Syscalls.fstat(fd, &st) != 0 {
            let e = errno
            Syscalls.close(fd)
            throw JigdoError(.io, path: path, "cannot stat", errno: SystemErrno(e))
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            Syscalls.close(fd)
            throw JigdoError(.io, path: path, "is a directory, not a file")
        }
        self.init(fd: fd, path: path, st)
    }

    /// Takes over `fd`, an open descriptor of the file at `path` (e.g. one this process wrote
    /// and renamed there: no open by name). It may be open for writing too; only reads go
    /// through it here. nil, with `fd` closed, when it cannot be looked at or the file has no
    /// name any more (unlinked meanwhile).
    public convenience init?(adopting fd: Int32, path: String) {
        var st = stat()
        guard Syscalls.fstat(fd, &st) == 0, st.st_nlink > 0, (st.st_mode & S_IFMT) != S_IFDIR else {
            Syscalls.close(fd)
            return nil
        }
        self.init(fd: fd, path: path, st)
    }

    private init(fd: Int32, path: String, _ st: stat) {
        self.path = path
        self.fd = fd
        self.size = Int64(st.st_size)
        self.inode = UInt64(st.st_ino)
        self.modificationTime = Int64(st.st_mtim.tv_sec)
        self.identity = FileIdentity(st)
        self.owner = UInt32(st.st_uid)
        self.isRegularFile = (st.st_mode & S_IFMT) == S_IFREG
    }

    /// The file's identity now (fstat of the open descriptor), nil if fstat fails. Differs from
    /// `identity` once the file was written to since it was opened.
    public func currentIdentity() -> FileIdentity? {
        var st = stat()
        guard Syscalls.fstat(fd, &st) == 0 else { return nil }
        return FileIdentity(st)
    }

    deinit { Syscalls.close(fd) }

    /// Reads exactly `buffer.count` bytes at `offset`; a short file is an error.
    public func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        let done = try preadFully(fd, path: path, at: offset, into: buffer)
        if done < buffer.count {
            throw JigdoError(.io, path: path, "file ends at \(offset + Int64(done)), expected \(buffer.count - done) more bytes (was it truncated?)")
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
        try hash(count: size, into: &hasher, bufferSize: bufferSize)
        return hasher.finalize()
    }

    /// Feeds the first `count` bytes of the file to `hasher` (the whole file, or a resumed
    /// download's prefix); a file shorter than that is an error.
    public func hash(count: Int64, into hasher: inout ChecksumHasher, bufferSize: Int = 1 << 20) throws {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 16)
        defer { buffer.deallocate() }
        var offset: Int64 = 0
        while offset < count {
            let n = Int(min(Int64(bufferSize), count - offset))
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n])
            try read(at: offset, into: slice)
            hasher.update(UnsafeRawBufferPointer(slice))
            offset += Int64(n)
        }
    }
}

/// Reads from `fd` at `offset` until `buffer` is full or the file ends (a short count, retried;
/// EINTR, retried) and returns the bytes read. The one pread loop (`ReadOnlyFile`, ISO9660's
/// `ImageFile`); a failed read throws, naming `path` and the offset that failed.
public func preadFully(_ fd: Int32, path: String, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
    var done = 0
    while done < buffer.count {
        let n = Syscalls.pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
        if n < 0 {
            if errno == EINTR { continue }
            throw JigdoError(.io, path: path, "read failed at offset \(offset + Int64(done))", errno: SystemErrno(errno))
        }
        if n == 0 { break }
        done += n
    }
    return done
}

/// Writes all of `bytes` to `fd` (through `Syscalls`), again after EINTR or a short write.
/// Returns nil when every byte was written, else the errno of the call that failed (EIO for
/// a write that wrote nothing: never a loop without progress).
public func writeFully(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> SystemErrno? {
    var done = 0
    while done < bytes.count {
        let n = Syscalls.write(fd, bytes.baseAddress! + done, bytes.count - done)
        if n < 0 {
            if errno == EINTR { continue }
            return SystemErrno(errno)
        }
        if n == 0 { return SystemErrno(EIO) }
        done += n
    }
    return nil
}
