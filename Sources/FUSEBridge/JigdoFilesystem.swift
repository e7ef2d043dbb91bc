#if canImport(Glibc)
import Glibc
#endif
import ImageAssembly
import ISO9660
import JigdoFormat
import Logging
import Synchronization

/// One image as the mount shows it: a read-only regular file in the root directory.
public struct MountedImage: Sendable {
    /// The file name in the mount (the image's `[Image] Filename`).
    public var name: String
    public var reader: ImageReader
    /// The .jigdo the image comes from (named in log lines).
    public var jigdoPath: String
    /// Shown as the file's mtime: its template's (`jigdofs mount`; README "Stable identity").
    public var modificationTime: timespec

    public init(name: String, reader: ImageReader, jigdoPath: String, modificationTime: timespec) {
        self.name = name
        self.reader = reader
        self.jigdoPath = jigdoPath
        self.modificationTime = modificationTime
    }
}

/// The filesystem behind the FUSE callbacks: a root directory with one file per image and, for
/// each image that is an ISO 9660 volume, a directory `X.iso.d` with the files inside it.
///
/// The images and views are fixed before mounting; every image reader and volume is itself
/// thread-safe. Each method returns 0 / a byte count, or a negated errno: this type and
/// `LowLevelBridge` are the only places where errors become errno values (`errnoValue`,
/// both through `ErrnoMapping`).
/// The one error they throw is `WouldWait`: under `ReadContext.withoutWaiting` (every FUSE
/// request) a read that needs a download throws it instead of blocking, and the bridge runs
/// the request again once the part is there.
///
/// File handles: an image file's handle is its index; the root directory's is
/// `rootDirectoryHandle`; a file or directory opened inside a view gets a fresh handle with the
/// top bit set, kept in `handles` until released (so reads and readdir need no path).
///
/// Locks: `handles` (bookkeeping only) and each view's own; never held across I/O or a reply,
/// never two at once.
public final class JigdoFilesystem: Sendable {
    public let images: [MountedImage]
    private let index: [String: Int]
    /// View name ("X.iso.d") -> view.
    private let views: [String: BrowseView]
    /// In root listing order (after the images); a view's position here is its number in the
    /// inode scheme (`LowLevelBridge`).
    let viewNames: [String]
    private let logger: Logger
    private let owner: (uid: uid_t, gid: gid_t)
    private let mountTime: timespec
    private let handles = Mutex<(next: UInt64, open: [UInt64: OpenEntry])>((1, [:]))
    /// Run once, by the first request the kernel sends (it sends none before INIT is done).
    private let firstRequestAction = Mutex<(@Sendable () -> Void)?>(nil)

    static let rootDirectoryHandle: UInt64 = 1 << 62
    static let browseHandleBit: UInt64 = 1 << 63

    enum OpenEntry: Sendable {
        /// A file or directory inside a view.
        case browse(view: BrowseView, path: String, entry: ISOEntry)
        /// The status file: its content as of the open.
        case status([UInt8])
    }

    /// Why an image cannot be shown under `name` in a mount whose images are called `names`
    /// (nil: it can). The mount's own names are reserved: the status file, and `X.d` when an
    /// image is called `X` (its browse view; reserved whether or not X is ISO 9660, so what a
    /// mount shows does not depend on the bytes of another image). A name taken by another
    /// image is the caller's to judge (which of the two to keep).
    public static func refusal(ofImageName name: String, among names: Set<String>) -> String? {
        if name.isEmpty || name.contains("/") || name == "." || name == ".." {
            return "image name '\(name)' cannot be a file name"
        }
        if name == StatusFile.name {
            return "image name \(name) is the name of the mount's status file"
        }
        if name.hasSuffix(".d"), names.contains(String(name.dropLast(2))) {
            return "image name \(name) is the name of the browse directory of image \(name.dropLast(2))"
        }
        return nil
    }

    /// `browse`: give each ISO 9660 image a `X.iso.d` directory (probes each image's first
    /// volume descriptor, which lies in the template).
    public init(images: [MountedImage], logger: Logger, browse: Bool = true) throws {
        var index: [String: Int] = [:]
        let names = Set(images.map(\.name))
        for (i, image) in images.enumerated() {
            if let other = index[image.name] {
                throw JigdoError(.usage, path: image.jigdoPath,
                    "image name \(image.name) is also the image of \(images[other].jigdoPath); one mount cannot show both")
            }
            if let problem = Self.refusal(ofImageName: image.name, among: names) {
                throw JigdoError(.usage, path: image.jigdoPath, problem)
            }
            index[image.name] = i
        }
        var views: [String: BrowseView] = [:]
        var viewNames: [String] = []
        if browse {
            for (i, image) in images.enumerated() {
                let view = BrowseView(imageIndex: i, imageName: image.name, reader: image.reader)
                guard index[view.name] == nil else {
                    logger.warning("\(image.name): no browse view: an image is called \(view.name)")
                    continue
                }
                do {
                    guard try BrowseView.probe(image.reader) else { continue }
                } catch {
                    logger.warning("\(image.name): no browse view: cannot read its first volume descriptor: \(error)")
                    continue
                }
                views[view.name] = view
                viewNames.append(view.name)
            }
        }
        self.images = images
        self.index = index
        self.views = views
        self.viewNames = viewNames
        self.logger = logger
        self.owner = (getuid(), getgid())
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        self.mountTime = images.map(\.modificationTime).max { $0.tv_sec < $1.tv_sec } ?? now
    }

    // MARK: Paths

    /// What a path names.
    enum Node {
        case root
        case image(Int)
        /// The hidden status file.
        case status
        /// The path inside the view ("/" for `X.iso.d` itself).
        case browse(BrowseView, String)
    }

    func node(at path: String) -> Node? {
        guard path.hasPrefix("/") else { return nil }
        if path == "/" { return .root }
        let rest = path.dropFirst()
        let slash = rest.firstIndex(of: "/")
        let top = String(rest[..<(slash ?? rest.endIndex)])
        // The status file first: no image can stand in for it (init refuses the name too).
        if slash == nil, top == StatusFile.name { return .status }
        if slash == nil, let i = index[top] { return .image(i) }
        guard let view = views[top] else { return nil }
        guard let slash else { return .browse(view, "/") }
        let inner = String(rest[slash...])
        return .browse(view, inner.count > 1 && inner.hasSuffix("/") ? String(inner.dropLast()) : inner)
    }

    /// Where errors become errno values (the mapping is `ErrnoMapping`). Expected answers (no
    /// such file, not a directory) are not logged; every other failure is, with the path and
    /// the errno it became.
    func errnoValue(_ error: Error, _ what: @autoclosure () -> String) throws(WouldWait) -> Int32 {
        if let w = error as? WouldWait { throw w }
        let (code, expected) = ErrnoMapping.errno(for: error)
        if !expected { logger.error("\(what()) failed (\(ErrnoMapping.name(code))): \(error)") }
        return -code
    }

    /// The entry at `inner` of `view`, or a negated errno (logged when it is EIO).
    func browseEntry(_ view: BrowseView, _ inner: String) throws(WouldWait) -> Result<ISOEntry, Errno> {
        do {
            return .success(try view.entry(at: inner))
        } catch {
            return .failure(Errno(try errnoValue(error, "\(view.name)\(inner == "/" ? "" : inner): lookup")))
        }
    }

    /// A negated errno as the failure of a `Result` (an answer to the kernel, made by
    /// `errnoValue`; not an error of the layers below).
    struct Errno: Error {
        let negated: Int32
        init(_ negated: Int32) { self.negated = negated }
    }

    // MARK: Operations

    /// Registers work that must wait until the kernel has processed FUSE INIT.
    public func onFirstRequest(_ action: @escaping @Sendable () -> Void) {
        firstRequestAction.withLock { $0 = action }
    }

    /// Runs the action registered with `onFirstRequest`, once.
    func runFirstRequestAction() {
        if let action = firstRequestAction.withLock({ a -> (@Sendable () -> Void)? in defer { a = nil }; return a }) {
            action()
        }
    }

    func getattr(_ path: String, _ st: inout stat) throws(WouldWait) -> Int32 {
        runFirstRequestAction()
        st = stat()
        st.st_uid = owner.uid
        st.st_gid = owner.gid
        switch node(at: path) {
        case nil:
            return -ENOENT
        case .root:
            st.st_mode = S_IFDIR | 0o555
            st.st_nlink = nlink_t(2 + views.count)
            st.st_mtim = mountTime
            st.st_ctim = mountTime
            st.st_atim = mountTime
            return 0
        case .image(let i):
            fillAttributes(i, &st)
            return 0
        case .status:
            // Size 0, as /proc files: each open makes a new snapshot, longer or shorter than any
            // size the kernel would keep cached, and reads use direct I/O, so readers read it
            // to its end.
            st.st_mode = S_IFREG | 0o444
            st.st_nlink = 1
            st.st_size = 0
            st.st_mtim = mountTime
            st.st_ctim = mountTime
            st.st_atim = mountTime
            return 0
        case .browse(let view, "/"):
            // X.iso.d itself: answered without opening the volume, so `ls -l MOUNT` reads no
            // more than before. Times are the image file's; link count 1 ("unknown") so find(1)
            // does not guess the number of subdirectories.
            let image = images[view.imageIndex]
            st.st_mode = S_IFDIR | 0o555
            st.st_nlink = 1
            st.st_mtim = image.modificationTime
            st.st_ctim = image.modificationTime
            st.st_atim = image.modificationTime
            return 0
        case .browse(let view, let inner):
            switch try browseEntry(view, inner) {
            case .success(let entry):
                BrowseAttributes.fill(entry, owner: owner, &st)
                return 0
            case .failure(let e):
                return e.negated
            }
        }
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

    private func register(_ open: OpenEntry) -> UInt64 {
        handles.withLock { h in
            let handle = Self.browseHandleBit | h.next
            h.next += 1
            h.open[handle] = open
            return handle
        }
    }

    private func openEntry(_ handle: UInt64) -> OpenEntry? {
        handles.withLock { $0.open[handle] }
    }

    /// Forgets a handle of a view entry (release, releasedir); other handles need nothing.
    func release(handle: UInt64) {
        guard handle & Self.browseHandleBit != 0 else { return }
        _ = handles.withLock { $0.open.removeValue(forKey: handle) }
    }

    /// Opening for writing is refused; the file handle lets reads skip the path lookup.
    func open(_ path: String, flags: Int32) throws(WouldWait) -> (result: Int32, handle: UInt64) {
        let writing = flags & (O_WRONLY | O_RDWR) != 0 || flags & O_TRUNC != 0
        switch node(at: path) {
        case .status?:
            return writing ? (-EROFS, 0) : (0, register(.status(StatusFile.snapshot(images))))
        case .image(let i)?:
            return writing ? (-EROFS, 0) : (0, UInt64(i))
        case .browse(let view, let inner)?:
            if writing { return (-EROFS, 0) }
            switch try browseEntry(view, inner) {
            case .success(let entry):
                if entry.isDirectory { return (-EISDIR, 0) }
                return (0, register(.browse(view: view, path: inner, entry: entry)))
            case .failure(let e):
                return (e.negated, 0)
            }
        case .root?:
            return (-EISDIR, 0)
        case nil:
            return (-ENOENT, 0)
        }
    }

    /// Reads into `buffer` (the bridge's, which libfuse sends to the kernel in the reply);
    /// returns the byte count (short only at the end of the file).
    func read(handle: UInt64, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws(WouldWait) -> Int32 {
        if handle & Self.browseHandleBit != 0 {
            switch openEntry(handle) {
            case nil:
                return -EBADF
            case .status(let bytes)?:
                guard offset < bytes.count else { return 0 }
                let n = min(buffer.count, bytes.count - Int(offset))
                bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + Int(offset), byteCount: n) }
                return Int32(n)
            case .browse(let view, let path, let entry)?:
                do {
                    return Int32(try view.volume().read(entry, at: offset, into: buffer))
                } catch {
                    return try errnoValue(error, "\(view.name)\(path): read of \(buffer.count) bytes at \(offset)")
                }
            }
        }
        guard handle < UInt64(images.count) else { return -EBADF }
        let image = images[Int(handle)]
        do {
            return Int32(try image.reader.read(at: offset, into: buffer))
        } catch {
            return try errnoValue(error, "\(image.name): read of \(buffer.count) bytes at \(offset)")
        }
    }

    /// What a file handle names, for log lines ("X.iso", "X.iso.d/dir/file").
    func name(ofHandle handle: UInt64) -> String {
        if handle & Self.browseHandleBit != 0 {
            switch openEntry(handle) {
            case .browse(let view, let path, _)?: return view.name + (path == "/" ? "" : path)
            case .status?: return StatusFile.name
            case nil: return "handle \(handle)"
            }
        }
        return handle < UInt64(images.count) ? images[Int(handle)].name : "handle \(handle)"
    }

    /// Checks that `path` is a directory; the handle lets readdir skip the path lookup.
    func opendir(_ path: String) throws(WouldWait) -> (result: Int32, handle: UInt64) {
        switch node(at: path) {
        case .root?:
            return (0, Self.rootDirectoryHandle)
        case .browse(let view, let inner)?:
            switch try browseEntry(view, inner) {
            case .success(let entry):
                guard entry.isDirectory else { return (-ENOTDIR, 0) }
                return (0, register(.browse(view: view, path: inner, entry: entry)))
            case .failure(let e):
                return (e.negated, 0)
            }
        case .image?, .status?:
            return (-ENOTDIR, 0)
        case nil:
            return (-ENOENT, 0)
        }
    }

    /// One name of a directory listing: its file type bits, and the ISO 9660 entry id of a
    /// name inside a view (nil for ".", ".." and the root's names).
    struct ListedName {
        var name: String
        var type: mode_t
        var entryID: Int64?
    }

    /// The names of a directory ("." and ".." included). A directory inside a view is read
    /// (from the image's template, normally) as a whole, so a damaged one fails as a whole.
    func readdir(handle: UInt64) throws(WouldWait) -> Result<[ListedName], Errno> {
        var names = [ListedName(name: ".", type: S_IFDIR), ListedName(name: "..", type: S_IFDIR)]
        if handle == Self.rootDirectoryHandle {
            names += images.map { ListedName(name: $0.name, type: S_IFREG) }
            names += viewNames.map { ListedName(name: $0, type: S_IFDIR) }
        } else {
            guard case .browse(let view, let path, let entry)? = openEntry(handle) else { return .failure(Errno(-EBADF)) }
            do {
                let entries = try view.volume().list(entry)
                names += entries.map { ListedName(name: $0.name, type: mode_t($0.mode & 0o170000), entryID: $0.id) }
            } catch {
                return .failure(Errno(try errnoValue(error, "\(view.name)\(path == "/" ? "" : path): readdir")))
            }
        }
        return .success(names)
    }

    /// The target of a symlink inside a view.
    func readlink(_ path: String) throws(WouldWait) -> Result<String, Errno> {
        guard case .browse(let view, let inner)? = node(at: path), inner != "/" else {
            return .failure(Errno(node(at: path) == nil ? -ENOENT : -EINVAL))
        }
        return try browseEntry(view, inner).flatMap { entry in
            guard entry.type == .symlink, let target = entry.symlinkTarget else { return .failure(Errno(-EINVAL)) }
            return .success(target)
        }
    }

    /// Existence check for access(2); writing is refused.
    func access(_ path: String, mask: Int32) throws(WouldWait) -> Int32 {
        switch node(at: path) {
        case nil:
            return -ENOENT
        case .browse(let view, let inner)? where inner != "/":
            if case .failure(let e) = try browseEntry(view, inner) { return e.negated }
        default:
            break
        }
        return mask & W_OK != 0 ? -EROFS : 0
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
