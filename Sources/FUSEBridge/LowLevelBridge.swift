#if canImport(Glibc)
import Glibc
#endif
import CFuse3
import Dispatch
import ImageAssembly
import JigdoFormat
import Logging
import Synchronization

/// A FUSE request, passed to the thread that answers it (libfuse allows any thread to reply,
/// exactly once).
struct Request: @unchecked Sendable, Hashable {
    let raw: OpaquePointer
    init(_ raw: OpaquePointer) { self.raw = raw }
    static func == (a: Request, b: Request) -> Bool { a.raw == b.raw }
    func hash(into h: inout Hasher) { h.combine(UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(raw)))) }
}

/// How a request is answered (built without any lock held, sent by `send`).
enum Reply {
    /// 0: success without data (release, forget-free ops); else a positive errno.
    case error(Int32)
    /// Bytes to return; the buffer is owned by the reply and freed once sent.
    case buffer(UnsafeMutableRawBufferPointer, count: Int)
    case attributes(stat)
    case entry(fuse_entry_param)
    case open(fuse_file_info)
    case link(String)
    case filesystem(statvfs)
}

/// libfuse's low-level API in front of `JigdoFilesystem` (see README.md: why low-level, the
/// inode scheme, the thread model).
///
/// Inodes are static: 1 the root, 2 the status file, an image's from its name and checksum
/// (`imageInode`: the same over remounts, whatever the order of the SOURCEs), `(v+1) << 48` the
/// browse view v (`X.iso.d`), and `(v+1) << 48 | entry.id` an entry inside it (ISO 9660 entry ids are
/// image offsets, far below 2^48). The only table is inode -> path for browse entries the
/// kernel has looked up, counted as libfuse's `forget` asks, so a path never needs resolving.
///
/// Every request runs on a libfuse worker inside `ReadContext.withoutWaiting`: a request
/// whose bytes are all available (template data, local files, cached parts) is answered right
/// there; one that needs a download gets `WouldWait` from the part store, is registered as
/// pending, and the worker returns at once. The download's completion runs the request again
/// on a dispatch thread and replies from there. `shutdown` answers every pending request with
/// EIO and makes later ones fail at once.
///
/// Locks: `pending` and `lookups`, each taken alone for bookkeeping; never held across a
/// reply, a read or a call into the filesystem.
final class LowLevelBridge: @unchecked Sendable {
    let filesystem: JigdoFilesystem
    let attributeTimeout: Double
    private let logger: Logger

    private struct Pending {
        var closed = false
        var requests: Set<Request> = []
        /// Completions answering a request right now (shutdown waits for them).
        var replying = 0
    }
    private let pending = Mutex(Pending())
    private let lookups = Mutex<[UInt64: (path: String, count: UInt64)]>([:])
    /// Listings of open directories inside views (readdir is answered in slices).
    private let listings = Mutex<[UInt64: [JigdoFilesystem.ListedName]]>([:])
    /// Image i's inode, and back.
    let imageInodes: [UInt64]
    private let imageByInode: [UInt64: Int]

    static let rootInode: UInt64 = 1
    static let statusInode: UInt64 = 2
    static let firstImageInode: UInt64 = 16
    static let viewShift: UInt64 = 48
    static let entryMask: UInt64 = (1 << 48) - 1
    /// A request that keeps meeting parts being downloaded (each wait is one download) is
    /// given up after this many rounds.
    static let maxRounds = 64

    init(filesystem: JigdoFilesystem, attributeTimeout: Double) {
        self.filesystem = filesystem
        self.attributeTimeout = attributeTimeout
        self.logger = Logger(label: "jigdofs.fuse")
        var byInode: [UInt64: Int] = [:]
        self.imageInodes = filesystem.images.enumerated().map { i, image in
            var ino = Self.imageInode(name: image.name, checksum: image.reader.info.imageChecksum.bytes)
            // Two images of one mount on one inode: the later takes the next free one.
            while byInode[ino] != nil { ino = ino + 1 < Self.viewInode(0) ? ino + 1 : Self.firstImageInode }
            byInode[ino] = i
            return ino
        }
        self.imageByInode = byInode
    }

    // MARK: inodes

    /// An image's inode: FNV-1a of its file name and its checksum (the template's), in
    /// [firstImageInode, 2^48). So `stat` shows the same inode at every mount of the same
    /// image, and another one when the content changes.
    static func imageInode(name: String, checksum: [UInt8]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in Array(name.utf8) + [0] + checksum {
            h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3
        }
        return firstImageInode + h % (viewInode(0) - firstImageInode)
    }

    static func viewInode(_ v: Int) -> UInt64 { UInt64(v + 1) << viewShift }

    /// The path an inode names, or nil (an inode the kernel should not have).
    func path(of ino: UInt64) -> String? {
        if ino == Self.rootInode { return "/" }
        if ino == Self.statusInode { return "/" + StatusFile.name }
        if let i = imageByInode[ino] { return "/" + filesystem.images[i].name }
        let v = Int(ino >> Self.viewShift) - 1
        guard v >= 0, v < filesystem.viewNames.count else { return nil }
        if ino & Self.entryMask == 0 { return "/" + filesystem.viewNames[v] }
        return lookups.withLock { $0[ino]?.path }
    }

    /// The inode of a path's node, from its attributes (`st_ino` of a browse entry is its id).
    func inode(ofPath path: String, _ st: stat) -> UInt64 {
        let rest = path.dropFirst()
        let top = rest.split(separator: "/", maxSplits: 1).first.map(String.init) ?? ""
        if path == "/" { return Self.rootInode }
        if top == StatusFile.name { return Self.statusInode }
        if let i = filesystem.images.firstIndex(where: { $0.name == top }), !rest.contains("/") {
            return imageInodes[i]
        }
        guard let v = filesystem.viewNames.firstIndex(of: top) else { return 0 }
        if !rest.contains("/") { return Self.viewInode(v) }
        return Self.viewInode(v) | (UInt64(truncatingIfNeeded: st.st_ino) & Self.entryMask)
    }

    private func isBrowseEntry(_ ino: UInt64) -> Bool {
        ino >> Self.viewShift != 0 && ino & Self.entryMask != 0
    }

    func remember(_ ino: UInt64, path: String) {
        guard isBrowseEntry(ino) else { return }
        lookups.withLock { table in
            let count = table[ino]?.count ?? 0
            table[ino] = (path, count + 1)
        }
    }

    func forget(_ ino: UInt64, _ n: UInt64) {
        guard isBrowseEntry(ino) else { return }
        lookups.withLock { table in
            guard let e = table[ino] else { return }
            if e.count <= n { table[ino] = nil } else { table[ino] = (e.path, e.count - n) }
        }
    }

    func childPath(_ parent: String, _ name: String) -> String {
        parent == "/" ? "/" + name : parent + "/" + name
    }

    // MARK: serving requests

    /// Runs `work` without waiting on the network and sends its reply; a request that needs a
    /// download is registered and answered from the download's completion (see the type).
    /// `what` names the request in an error line; it is built only then (not for every read).
    /// `holds`: what the request holds across its rounds (the cache pins of the parts it read),
    /// released once its reply is built, before it is sent.
    func serve(_ req: Request, _ what: @escaping @autoclosure @Sendable () -> String, round: Int = 0, claimed: Bool = false,
               holds: ReadHolds = ReadHolds(), _ work: @escaping @Sendable () throws(WouldWait) -> Reply) {
        let reply: Reply
        do {
            reply = try ReadContext.withoutWaiting(holding: holds) { () throws(WouldWait) -> Reply in try work() }
        } catch let wait {
            guard round < Self.maxRounds, register(req) else {
                holds.releaseAll()
                logger.error("\(what()) failed (EIO): \(round < Self.maxRounds ? "the filesystem is shutting down" : "parts keep being downloaded")")
                send(req, .error(EIO))
                if claimed { endClaim() }
                return
            }
            if claimed { endClaim() }
            wait.register { [self] error in
                // Never on the thread that registered the waiter while it holds a lock, and
                // never on libcurl's thread: answer from a dispatch thread.
                DispatchQueue.global().async {
                    guard self.claim(req) else {
                        holds.releaseAll()
                        return
                    }
                    if let error {
                        holds.releaseAll()
                        let code = ErrnoMapping.errno(for: error).code
                        self.logger.error("\(what()) failed (\(ErrnoMapping.name(code))): \(error)")
                        self.send(req, .error(code))
                        self.endClaim()
                        return
                    }
                    self.serve(req, what(), round: round + 1, claimed: true, holds: holds, work)
                }
            }
            return
        }
        // The reply holds its bytes: the request's pins go now, before the reply, so that a
        // reader that has its bytes finds the cache back within its limit.
        holds.releaseAll()
        send(req, reply)
        if claimed { endClaim() }
    }

    private func register(_ req: Request) -> Bool {
        pending.withLock { p in
            guard !p.closed else { return false }
            p.requests.insert(req)
            return true
        }
    }

    /// Takes a pending request to answer it; false if shutdown answered it already.
    private func claim(_ req: Request) -> Bool {
        pending.withLock { p in
            guard p.requests.remove(req) != nil else { return false }
            p.replying += 1
            return true
        }
    }

    private func endClaim() {
        pending.withLock { $0.replying -= 1 }
    }

    /// Answers every pending request with EIO; later ones fail at once. Waits (bounded) for
    /// completions that are answering a request right now, so no reply follows the session's end.
    func shutdown() {
        let waiting = pending.withLock { p -> [Request] in
            p.closed = true
            defer { p.requests.removeAll() }
            return Array(p.requests)
        }
        for r in waiting { fuse_reply_err(r.raw, EIO) }
        for _ in 0..<100 where pending.withLock({ $0.replying }) > 0 { usleep(10_000) }
    }

    func send(_ req: Request, _ reply: Reply) {
        switch reply {
        case .error(let e):
            fuse_reply_err(req.raw, e)
        case .buffer(let buf, let count):
            fuse_reply_buf(req.raw, buf.baseAddress?.assumingMemoryBound(to: CChar.self), count)
            ReadBuffers.shared.giveBack(buf)
        case .attributes(var st):
            fuse_reply_attr(req.raw, &st, attributeTimeout)
        case .entry(var e):
            fuse_reply_entry(req.raw, &e)
        case .open(var fi):
            fuse_reply_open(req.raw, &fi)
        case .link(let target):
            _ = target.withCString { fuse_reply_readlink(req.raw, $0) }
        case .filesystem(var st):
            fuse_reply_statfs(req.raw, &st)
        }
    }

    // MARK: operations (each builds a Reply; errors from the filesystem are negated errnos)

    func lookup(_ parent: UInt64, _ name: String) throws(WouldWait) -> Reply {
        filesystem.runFirstRequestAction()
        guard let dir = path(of: parent) else { return .error(ENOENT) }
        let p = childPath(dir, name)
        var st = stat()
        let r = try filesystem.getattr(p, &st)
        var e = fuse_entry_param()
        e.entry_timeout = attributeTimeout
        e.attr_timeout = attributeTimeout
        if r == -ENOENT {
            // A negative entry (inode 0): the kernel may remember that the name is absent.
            return .entry(e)
        }
        guard r == 0 else { return .error(-r) }
        let ino = inode(ofPath: p, st)
        guard ino != 0 else { return .error(ENOENT) }
        st.st_ino = ino_t(ino)
        remember(ino, path: p)
        e.ino = fuse_ino_t(ino)
        e.attr = st
        return .entry(e)
    }

    func getattr(_ ino: UInt64) throws(WouldWait) -> Reply {
        filesystem.runFirstRequestAction()
        guard let p = path(of: ino) else { return .error(ENOENT) }
        var st = stat()
        let r = try filesystem.getattr(p, &st)
        guard r == 0 else { return .error(-r) }
        st.st_ino = ino_t(ino)
        return .attributes(st)
    }

    func open(_ ino: UInt64, _ info: fuse_file_info) throws(WouldWait) -> Reply {
        guard let p = path(of: ino) else { return .error(ENOENT) }
        let (result, handle) = try filesystem.open(p, flags: info.flags)
        guard result == 0 else { return .error(-result) }
        var fi = info
        fi.fh = handle
        if ino == Self.statusInode {
            // A new snapshot per open: bypass the page cache and the cached size.
            fi.direct_io = 1
        } else {
            // Immutable content: pages cached by an earlier open stay valid.
            fi.keep_cache = 1
        }
        return .open(fi)
    }

    func read(_ handle: UInt64, size: Int, offset: Int64) throws(WouldWait) -> Reply {
        let buf = ReadBuffers.shared.take(size)
        do {
            let n = try filesystem.read(handle: handle, into: UnsafeMutableRawBufferPointer(rebasing: buf[0..<size]), at: offset)
            if n < 0 {
                ReadBuffers.shared.giveBack(buf)
                return .error(-n)
            }
            return .buffer(buf, count: Int(n))
        } catch {
            ReadBuffers.shared.giveBack(buf)
            throw error
        }
    }

    func opendir(_ ino: UInt64, _ info: fuse_file_info) throws(WouldWait) -> Reply {
        guard let p = path(of: ino) else { return .error(ENOENT) }
        let (result, handle) = try filesystem.opendir(p)
        guard result == 0 else { return .error(-result) }
        var fi = info
        fi.fh = handle
        // Directories never change while mounted: the kernel may keep their listings.
        fi.cache_readdir = 1
        fi.keep_cache = 1
        return .open(fi)
    }

    /// Entries from `offset` that fit in `size` bytes; the listing of a view directory is made
    /// once per open and kept until releasedir.
    func readdir(_ req: Request, _ ino: UInt64, _ handle: UInt64, size: Int, offset: Int64) throws(WouldWait) -> Reply {
        var names = listings.withLock { $0[handle] }
        if names == nil {
            switch try filesystem.readdir(handle: handle) {
            case .failure(let e): return .error(-e.negated)
            case .success(let list):
                names = list
                if handle != JigdoFilesystem.rootDirectoryHandle { listings.withLock { $0[handle] = list } }
            }
        }
        let list = names!
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 1), alignment: 16)
        var used = 0
        var index = Int(max(offset, 0))
        let view = ino >> Self.viewShift
        while index < list.count {
            let item = list[index]
            var st = stat()
            st.st_mode = item.type
            let childIno: UInt64
            if item.name == "." || item.name == ".." {
                childIno = ino
            } else if let id = item.entryID {
                childIno = (view << Self.viewShift) | (UInt64(truncatingIfNeeded: id) & Self.entryMask)
            } else {
                childIno = inode(ofPath: "/" + item.name, stat())
            }
            st.st_ino = ino_t(childIno)
            let n = item.name.withCString { name in
                fuse_add_direntry(req.raw, buf.baseAddress!.assumingMemoryBound(to: CChar.self) + used, size - used, name, &st, off_t(index + 1))
            }
            if n > size - used { break }
            used += n
            index += 1
        }
        return .buffer(buf, count: used)
    }

    func releasedir(_ handle: UInt64) {
        _ = listings.withLock { $0.removeValue(forKey: handle) }
        filesystem.release(handle: handle)
    }

    func readlink(_ ino: UInt64) throws(WouldWait) -> Reply {
        guard let p = path(of: ino) else { return .error(ENOENT) }
        switch try filesystem.readlink(p) {
        case .success(let target): return .link(target)
        case .failure(let e): return .error(-e.negated)
        }
    }

    func access(_ ino: UInt64, mask: Int32) throws(WouldWait) -> Reply {
        guard let p = path(of: ino) else { return .error(ENOENT) }
        return .error(-(try filesystem.access(p, mask: mask)))
    }
}

/// The bridge of a request (the session's userdata, retained by FUSEMount).
private func bridge(_ req: fuse_req_t?) -> LowLevelBridge {
    Unmanaged<LowLevelBridge>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
}

func makeLowLevelOperations() -> fuse_lowlevel_ops {
    var ops = fuse_lowlevel_ops()

    ops.`init` = { _, conn in
        guard let conn else { return }
        // Large sequential reads are the common case (cmp, dd, loop devices). max_readahead
        // arrives holding the kernel's maximum (the mount's read_ahead_kb) and can only be
        // lowered, so it is deliberately left at that maximum. Many readahead requests may be
        // in flight at once: workers answer those whose parts are there while others wait for
        // downloads without holding a thread.
        conn.pointee.max_background = 64
        conn.pointee.congestion_threshold = 48
        // Reads may be answered in parallel and out of order: required, since a read that
        // waits for a download is answered later, from another thread.
        conn.pointee.want |= UInt32(FUSE_CAP_ASYNC_READ) & conn.pointee.capable
        // Nothing is ever written, so write-related capabilities stay off.
        conn.pointee.want &= ~UInt32(FUSE_CAP_WRITEBACK_CACHE)
    }

    ops.lookup = { req, parent, name in
        guard let req, let name else { return }
        let b = bridge(req)
        let n = String(cString: name)
        let parentIno = UInt64(parent)
        b.serve(Request(req), "lookup of \(n)") { () throws(WouldWait) -> Reply in try b.lookup(parentIno, n) }
    }

    ops.forget = { req, ino, nlookup in
        guard let req else { return }
        bridge(req).forget(UInt64(ino), nlookup)
        fuse_reply_none(req)
    }

    ops.forget_multi = { req, count, forgets in
        guard let req else { return }
        let b = bridge(req)
        if let forgets {
            for i in 0..<count { b.forget(UInt64(forgets[i].ino), forgets[i].nlookup) }
        }
        fuse_reply_none(req)
    }

    // The inode names the node whether or not a file handle comes with it, so an open file
    // keeps its attributes however long it stays open.
    ops.getattr = { req, ino, _ in
        guard let req else { return }
        let b = bridge(req)
        let i = UInt64(ino)
        b.serve(Request(req), "getattr") { () throws(WouldWait) -> Reply in try b.getattr(i) }
    }

    ops.open = { req, ino, fi in
        guard let req, let fi else { return }
        let b = bridge(req)
        let info = fi.pointee
        let i = UInt64(ino)
        b.serve(Request(req), "open") { () throws(WouldWait) -> Reply in try b.open(i, info) }
    }

    ops.read = { req, _, size, offset, fi in
        guard let req, let fi else { return }
        let b = bridge(req)
        let handle = fi.pointee.fh
        let off = Int64(offset)
        b.serve(Request(req), "\(b.filesystem.name(ofHandle: handle)): read of \(size) bytes at \(offset)") { () throws(WouldWait) -> Reply in
            try b.read(handle, size: size, offset: off)
        }
    }

    ops.release = { req, _, fi in
        guard let req else { return }
        if let fi { bridge(req).filesystem.release(handle: fi.pointee.fh) }
        fuse_reply_err(req, 0)
    }

    ops.opendir = { req, ino, fi in
        guard let req, let fi else { return }
        let b = bridge(req)
        let info = fi.pointee
        let i = UInt64(ino)
        b.serve(Request(req), "opendir") { () throws(WouldWait) -> Reply in try b.opendir(i, info) }
    }

    ops.readdir = { req, ino, size, offset, fi in
        guard let req, let fi else { return }
        let b = bridge(req)
        let handle = fi.pointee.fh
        let i = UInt64(ino)
        let r = Request(req)
        let off = Int64(offset)
        b.serve(r, "readdir") { () throws(WouldWait) -> Reply in try b.readdir(r, i, handle, size: size, offset: off) }
    }

    ops.releasedir = { req, _, fi in
        guard let req else { return }
        if let fi { bridge(req).releasedir(fi.pointee.fh) }
        fuse_reply_err(req, 0)
    }

    ops.readlink = { req, ino in
        guard let req else { return }
        let b = bridge(req)
        let i = UInt64(ino)
        b.serve(Request(req), "readlink") { () throws(WouldWait) -> Reply in try b.readlink(i) }
    }

    ops.statfs = { req, _ in
        guard let req else { return }
        var st = statvfs()
        bridge(req).filesystem.statfs(&st)
        fuse_reply_statfs(req, &st)
    }

    ops.access = { req, ino, mask in
        guard let req else { return }
        let b = bridge(req)
        let i = UInt64(ino)
        b.serve(Request(req), "access") { () throws(WouldWait) -> Reply in try b.access(i, mask: mask) }
    }
    return ops
}

/// Buffers for read replies, kept for reuse: a fresh buffer of a read's size (128 KiB to
/// 1 MiB) is a fresh mapping each time, whose page faults and zeroing cost more than the copy
/// into it. At most `kept` are kept (bounded memory); sizes are multiples of 128 KiB, so other
/// replies' buffers (readdir) are freed, never kept.
final class ReadBuffers: Sendable {
    static let shared = ReadBuffers()
    private static let unit = 128 << 10
    private let kept = 8
    /// A kept buffer; owned by the list while in it, by one request once taken.
    private struct Kept: @unchecked Sendable { let buffer: UnsafeMutableRawBufferPointer }
    private let free = Mutex<[Kept]>([])

    func take(_ size: Int) -> UnsafeMutableRawBufferPointer {
        let found = free.withLock { list -> Kept? in
            guard let i = list.lastIndex(where: { $0.buffer.count >= size }) else { return nil }
            return list.remove(at: i)
        }
        if let found { return found.buffer }
        let rounded = (max(size, 1) + Self.unit - 1) / Self.unit * Self.unit
        return .allocate(byteCount: rounded, alignment: 4096)
    }

    func giveBack(_ buf: UnsafeMutableRawBufferPointer) {
        let kept = Kept(buffer: buf)
        let keep = buf.count % Self.unit == 0 && free.withLock { list -> Bool in
            guard list.count < self.kept else { return false }
            list.append(kept)
            return true
        }
        if !keep { buf.deallocate() }
    }
}
