#if canImport(Glibc)
import Glibc
#endif
import ImageAssembly
import JigdoFormat
import ISO9660
import PartSources
import Synchronization

/// The browse view of one image: the directory `X.iso.d` that shows the ISO 9660 tree inside
/// `X.iso` as ordinary read-only files.
///
/// Whether an image gets a view is decided once, before mounting, by `probe` (the "CD001"
/// signature of the first volume descriptor: a template read, never a part). The volume itself
/// is opened on the first lookup inside `X.iso.d` and kept; the root listing and `stat` of
/// `X.iso.d` never open it. Directories come from the volume's own cache; file reads go
/// straight to the image reader, through the file's extents only.
///
/// Lock: `state` guards the opened volume (bookkeeping only; the volume is opened outside it,
/// so two first lookups at once may both open it, and the first stored wins).
final class BrowseView: Sendable {
    /// The directory's name in the mount root: the image's name plus ".d".
    let name: String
    let imageIndex: Int
    private let reader: ImageReader
    private let imageName: String
    private let state = Mutex<ISO9660Volume?>(nil)

    init(imageIndex: Int, imageName: String, reader: ImageReader) {
        self.name = imageName + ".d"
        self.imageIndex = imageIndex
        self.imageName = imageName
        self.reader = reader
    }

    /// Whether the image starts like an ISO 9660 volume: "CD001" in the descriptor at sector 16.
    /// Reads 6 bytes, which in a jigdo image lie in the template.
    static func probe(_ reader: ImageReader) throws -> Bool {
        try ISO9660Signature.probe(size: reader.size) { try reader.read(at: $0, count: $1) }
    }

    /// The volume, opened on first use. Failures are not kept: the next access tries again
    /// (and logs again), so a part that becomes available later is picked up.
    func volume() throws -> ISO9660Volume {
        if let v = state.withLock({ $0 }) { return v }
        let opened = try ISO9660Volume.open(reader, name: imageName)
        return state.withLock { current in
            if let current { return current }
            current = opened
            return opened
        }
    }

    /// The entry at `inner` ("/" or "/a/b"), without following a final symlink (lstat).
    /// Symlinks in the middle never occur: the kernel resolves each component itself.
    func entry(at inner: String) throws -> ISOEntry {
        let v = try volume()
        return inner == "/" ? v.root : try v.lookup(inner)
    }
}

/// `stat` for entries of the browse views.
enum BrowseAttributes {
    /// Read-only for everyone: directories 0555, files 0444 plus the image's execute bits,
    /// symlinks 0777; no set-id or sticky bits. The file type is the image's.
    static func mode(of entry: ISOEntry) -> mode_t {
        let type = entry.mode & 0o170000
        let permissions: UInt32
        switch entry.type {
        case .directory: permissions = 0o555
        case .symlink: permissions = 0o777
        default: permissions = 0o444 | (entry.mode & 0o111)
        }
        return mode_t(type | permissions)
    }

    static func fill(_ entry: ISOEntry, owner: (uid: uid_t, gid: gid_t), _ st: inout stat) {
        st = stat()
        st.st_mode = mode(of: entry)
        st.st_nlink = nlink_t(max(1, entry.links))
        st.st_uid = owner.uid
        st.st_gid = owner.gid
        st.st_size = off_t(entry.size)
        st.st_blocks = blkcnt_t((entry.size + 511) / 512)
        st.st_blksize = 128 * 1024
        st.st_ino = ino_t(truncatingIfNeeded: entry.id)
        st.st_mtim = timespec(tv_sec: Int(entry.mtime), tv_nsec: 0)
        st.st_atim = timespec(tv_sec: Int(entry.atime), tv_nsec: 0)
        st.st_ctim = timespec(tv_sec: Int(entry.ctime), tv_nsec: 0)
        if let d = entry.device {
            st.st_rdev = makeDevice(major: d.major, minor: d.minor)
        }
    }

    /// glibc's makedev (a macro Swift does not import).
    static func makeDevice(major: UInt32, minor: UInt32) -> dev_t {
        let ma = UInt64(major), mi = UInt64(minor)
        let v = ((ma & 0xFFFF_F000) << 32) | ((ma & 0xFFF) << 8) | ((mi & 0xFFFF_FF00) << 12) | (mi & 0xFF)
        return dev_t(v)
    }
}
