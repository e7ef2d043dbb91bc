#if canImport(Glibc)
import Glibc
#endif
import ImageAssembly
import JigdoFormat
import Logging

/// One image as the mount shows it: a read-only regular file in the root directory.
public struct MountedImage: Sendable {
    /// The file name in the mount (the image's `[Image] Filename`).
    public var name: String
    public var reader: ImageReader
    /// The .jigdo the image comes from (named in log lines).
    public var jigdoPath: String
    /// Shown as the file's mtime: the .jigdo's.
    public var modificationTime: timespec

    public init(name: String, reader: ImageReader, jigdoPath: String, modificationTime: timespec) {
        self.name = name
        self.reader = reader
        self.jigdoPath = jigdoPath
        self.modificationTime = modificationTime
    }
}

/// The filesystem behind the FUSE callbacks: a root directory with one file per image.
///
/// Built once before mounting and never changed, so it needs no lock; every image reader is
/// itself thread-safe. Each method returns 0 / a byte count, or a negated errno: this type and
/// `FUSEOperations` are the only places where errors become errno values.
public final class JigdoFilesystem: Sendable {
    public let images: [MountedImage]
    private let index: [String: Int]
    private let logger: Logger
    private let owner: (uid: uid_t, gid: gid_t)
    private let mountTime: timespec

    public init(images: [MountedImage], logger: Logger) throws {
        var index: [String: Int] = [:]
        for (i, image) in images.enumerated() {
            if let other = index[image.name] {
                throw JigdoError(.usage, path: image.jigdoPath,
                    "image name \(image.name) is also the image of \(images[other].jigdoPath); one mount cannot show both")
            }
            guard !image.name.isEmpty, !image.name.contains("/"), image.name != ".", image.name != ".." else {
                throw JigdoError(.usage, path: image.jigdoPath, "image name '\(image.name)' cannot be a file name")
            }
            index[image.name] = i
        }
        self.images = images
        self.index = index
        self.logger = logger
        self.owner = (getuid(), getgid())
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        self.mountTime = images.map(\.modificationTime).max { $0.tv_sec < $1.tv_sec } ?? now
    }

    /// Index of the image at `path` ("/name"), if any.
    func image(at path: String) -> Int? {
        guard path.hasPrefix("/") else { return nil }
        return index[String(path.dropFirst())]
    }

    func getattr(_ path: String, _ st: inout stat) -> Int32 {
        st = stat()
        st.st_uid = owner.uid
        st.st_gid = owner.gid
        if path == "/" {
            st.st_mode = S_IFDIR | 0o555
            st.st_nlink = 2
            st.st_mtim = mountTime
            st.st_ctim = mountTime
            st.st_atim = mountTime
            return 0
        }
        guard let i = image(at: path) else { return -ENOENT }
        fillAttributes(i, &st)
        return 0
    }

    func fillAttributes(_ i: Int, _ st: inout stat) {
        let image = images[i]
        st.st_mode = S_IFREG | 0o444
        st.st_nlink = 1
        st.st_size = off_t(image.reader.size)
        st.st_blocks = blkcnt_t((image.reader.size + 511) / 512)
        st.st_blksize = 128 * 1024
        st.st_mtim = image.modificationTime
        st.st_ctim = image.modificationTime
        st.st_atim = image.modificationTime
        st.st_uid = owner.uid
        st.st_gid = owner.gid
    }

    /// Opening for writing is refused; the file handle is the image index, so reads need no
    /// path lookup.
    func open(_ path: String, flags: Int32) -> (result: Int32, handle: UInt64) {
        guard let i = image(at: path) else { return (-ENOENT, 0) }
        if flags & (O_WRONLY | O_RDWR) != 0 || flags & O_TRUNC != 0 { return (-EROFS, 0) }
        return (0, UInt64(i))
    }

    /// Reads into the kernel's buffer; returns the byte count (short only at the end of the image).
    func read(handle: UInt64, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) -> Int32 {
        guard handle < UInt64(images.count) else { return -EBADF }
        let image = images[Int(handle)]
        do {
            return Int32(try image.reader.read(at: offset, into: buffer))
        } catch {
            // A part with no source is JigdoError(.partUnavailable), whose text names the part;
            // anything else (a local file vanished, a corrupt chunk) also becomes EIO.
            logger.error("\(image.name): read of \(buffer.count) bytes at \(offset) failed (EIO): \(error)")
            return -EIO
        }
    }

    func readdirNames() -> [String] {
        images.map(\.name)
    }

    func statfs(_ st: inout statvfs) {
        st = statvfs()
        let block: UInt = 4096
        let total = images.reduce(Int64(0)) { $0 + ($1.reader.size + Int64(block) - 1) / Int64(block) }
        st.f_bsize = block
        st.f_frsize = block
        st.f_blocks = fsblkcnt_t(total)
        st.f_bfree = 0
        st.f_bavail = 0
        st.f_files = fsfilcnt_t(images.count + 1)
        st.f_ffree = 0
        st.f_favail = 0
        st.f_namemax = 255
        st.f_flag = UInt(ST_RDONLY)
    }
}
