#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import JigdoFormat
import Logging
import Synchronization

/// The content-addressed store of downloaded parts under a cache directory:
///
///     <dir>/parts/<kind>/<first 2 chars of b64>/<b64>   verified parts (renamed in when complete)
///     <dir>/partial/<kind>/<b64>                         downloads in progress, resumable
///     <dir>/sources/...                                  fetched .jigdo and .template files
///
/// A file appears under `parts/` only by `rename` after its checksum matched, so a crash never
/// leaves a corrupt part there. The cache may be shared by several processes.
///
/// Hygiene: every file in the cache is opened with O_NOFOLLOW and must be a regular file owned
/// by this user (a symlink planted in `partial/` or `parts/` is never followed, so a daemon
/// running as root never writes or serves through one); directories the cache creates are 0700.
/// The cache directory and its layout must be this user's own, writable by no one else and no
/// link (`CacheTrust`); otherwise the whole cache is refused (`refusal`): nothing
/// is read from it or written to it, parts are kept in memory and fetched sources cannot be had.
/// A cache that cannot be written (read-only, no permission, disk full, quota) costs caching,
/// never a read: `isWritable` turns false and parts are kept in memory (one warning).
public final class PartCache: Sendable {
    public let directory: String
    /// Upper bound of the bytes under `parts/` (`--cache-size`); nil: unbounded.
    public let sizeLimit: Int64?
    /// What `--cache-size` keeps count of: the bytes under `parts/`, parts being added, and
    /// the parts readers pin (`CacheRoom`).
    let room = Mutex(CacheRoom())
    /// Set once writing into the cache failed for a reason that will not go away by itself.
    private let unwritable = Mutex<String?>(nil)
    /// Why the cache directory is not trusted (`CacheTrust`); nil when it is.
    public let refusal: JigdoError?
    /// Parts whose partial file's lock this process holds (by `lockPartial`), with who waits
    /// for its release: the images of one mount share this cache, each with its own pipeline,
    /// so a part two images share is downloaded by one and the other joins it (a release set).
    /// A leaf lock; the closures run after it is released.
    private let heldHere = Mutex<[Checksum: Holder]>([:])
    /// Prefix directories under `parts/` this process made or checked (`commit`).
    private let knownPrefixes = Mutex<Set<UInt16>>([])
    let logger: Logger
    /// `<dir>/parts/<kind>/` and `<dir>/partial/<kind>/`, in `ChecksumKind.allCases` order
    /// (`path`).
    private let partsBases: [[UInt8]]
    private let partialBases: [[UInt8]]

    private struct Holder {
        /// Tells the holder a reader waits for the part (its read-ahead becomes a demand).
        var onDemand: (@Sendable () -> Void)?
        var waiters: [@Sendable () -> Void] = []
    }

    /// Creates the directory layout if needed (0700). A layout that cannot be created because
    /// the disk is read-only, full or not ours leaves the cache read-only (`isWritable` false);
    /// a path that is not a directory is an error.
    public init(directory: String, sizeLimit: Int64? = nil, logger: Logger = Logger(label: "jigdofs.cache")) throws {
        self.sizeLimit = sizeLimit
        self.logger = logger
        var dir = absolutePath(directory)
        if dir.hasSuffix("/") && dir.count > 1 { dir.removeLast() }
        self.directory = dir
        partsBases = ChecksumKind.allCases.map { Array("\(dir)/parts/\($0.rawValue.lowercased())/".utf8) }
        partialBases = ChecksumKind.allCases.map { Array("\(dir)/partial/\($0.rawValue.lowercased())/".utf8) }
        var refusal: JigdoError?
        var unwritable: JigdoError?
        do {
            try CacheTrust.makeTrustedDirectories(dir, ChecksumKind.allCases.flatMap {
                ["parts/" + $0.rawValue.lowercased(), "partial/" + $0.rawValue.lowercased()]
            })
        } catch let e as JigdoError where CacheTrust.isRefusal(e) {
            refusal = e
        } catch let e as JigdoError where Self.costsOnlyCaching(e.firstErrno) {
            unwritable = e
        }
        self.refusal = refusal
        if let unwritable { noteUnwritable("\(unwritable)") }
        // Said once by the caller (a warning for a mount, the error of `cache list`).
        if let refusal { self.unwritable.withLock { $0 = refusal.description } }
    }

    /// errno values that mean "this cache cannot be written", not "this read is wrong".
    public static func costsOnlyCaching(_ code: Int32) -> Bool {
        code == EROFS || code == EACCES || code == EPERM || code == ENOSPC || code == EDQUOT
    }

    /// `costsOnlyCaching` of an error's errno; false when it has none.
    public static func costsOnlyCaching(_ errno: SystemErrno?) -> Bool {
        errno.map { costsOnlyCaching($0.rawValue) } ?? false
    }

    /// Whether new parts can be stored (false after a read-only or full cache was seen).
    public var isWritable: Bool { unwritable.withLock { $0 == nil } }

    /// Records that the cache cannot be written; warns once per process.
    public func noteUnwritable(_ why: String) {
        let first = unwritable.withLock { u -> Bool in
            defer { if u == nil { u = why } }
            return u == nil
        }
        if first { logger.warning("\(why): the part cache cannot be written; parts are kept in memory instead (caching is lost, reads are not)") }
    }

    /// The default cache directory (of parts, fetched sources and scan checksums):
    /// `$XDG_CACHE_HOME/jigdofs` when that is an absolute path (the XDG Base Directory spec says
    /// a relative one is to be ignored; an empty one is unset), else `$HOME/.cache/jigdofs`. With
    /// no absolute `$HOME` (a bare systemd unit, `env -i`), the home directory of the user
    /// database; with none there either, `$TMPDIR/jigdofs-<uid>` (`/tmp` without an absolute
    /// `$TMPDIR`). That one is made 0700 by the cache, and refused if someone made it first:
    /// not ours, writable by others or a link (`CacheTrust`).
    public static func defaultDirectory(environment: [String: String]) -> String {
        var home: String?
        if let pw = getpwuid(geteuid()), let dir = pw.pointee.pw_dir { home = String(cString: dir) }
        return defaultDirectory(environment: environment, userDatabaseHome: home)
    }

    /// The same with the user database's home directory given (nil: the user has none).
    public static func defaultDirectory(environment: [String: String], userDatabaseHome: String?) -> String {
        func absolute(_ value: String?) -> String? {
            guard var v = value, v.hasPrefix("/") else { return nil }
            while v.count > 1 && v.hasSuffix("/") { v.removeLast() }
            return v == "/" ? "" : v
        }
        if let xdg = absolute(environment["XDG_CACHE_HOME"]) { return xdg + "/jigdofs" }
        if let home = absolute(environment["HOME"]) { return home + "/.cache/jigdofs" }
        if let home = absolute(userDatabaseHome) { return home + "/.cache/jigdofs" }
        return (absolute(environment["TMPDIR"]) ?? "/tmp") + "/jigdofs-\(geteuid())"
    }

    /// Where the verified part with this checksum lives (whether or not it is there yet).
    public func path(for sum: Checksum) -> String { path(sum, partial: false) }

    /// The resumable download file of a part (named by checksum, so a restart finds it).
    public func partialPath(for sum: Checksum) -> String { path(sum, partial: true) }

    /// `<dir>/parts/<kind>/<2 chars>/<b64>` or `<dir>/partial/<kind>/<b64>`, written into one
    /// string's storage: one allocation (these are made several times a part downloaded, and
    /// interpolating them cost five).
    private func path(_ sum: Checksum, partial: Bool) -> String {
        String(unsafeUninitializedCapacity: pathLength(sum, partial: partial)) { writePath(sum, partial: partial, into: $0) }
    }

    /// The same path as a C string in a buffer on the stack, for calls that need it only while
    /// they run (a look, an open, a rename): no string is made (`path` is, several times a part
    /// downloaded, where one is kept or a message names it).
    private func withPath<R>(_ sum: Checksum, partial: Bool, _ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        let count = pathLength(sum, partial: partial)
        return try withUnsafeTemporaryAllocation(of: UInt8.self, capacity: count + 1) { out in
            out[writePath(sum, partial: partial, into: out)] = 0
            return try out.baseAddress!.withMemoryRebound(to: CChar.self, capacity: count + 1) { try body($0) }
        }
    }

    /// The directory part of the path: `<dir>/parts/<kind>/` or `<dir>/partial/<kind>/`.
    private func base(_ sum: Checksum, partial: Bool) -> [UInt8] {
        partial ? partialBases[Self.kindIndex(sum)] : partsBases[Self.kindIndex(sum)]
    }

    private func pathLength(_ sum: Checksum, partial: Bool) -> Int {
        base(sum, partial: partial).count + JigdoBase64.encodedCount((sum.kind ?? .md5).byteCount) + (partial ? 0 : 3)
    }

    /// Writes the path into `out` (at least `pathLength` bytes), returning its length.
    private func writePath(_ sum: Checksum, partial: Bool, into out: UnsafeMutableBufferPointer<UInt8>) -> Int {
        var at = 0
        for b in base(sum, partial: partial) { out[at] = b; at += 1 }
        let name = UnsafeMutableBufferPointer(rebasing: out[(partial ? at : at + 3)...])
        let written = sum.withUnsafeBytes { JigdoBase64.encode($0, into: name) }
        if !partial {
            out[at] = name[0]
            out[at + 1] = name[1]
            out[at + 2] = UInt8(ascii: "/")
            at += 3
        }
        return at + written
    }

    /// Takes the lock of a part's partial file (creating it if needed) for one whole download
    /// (transfers, check, rename), so processes sharing the cache never write the same partial
    /// file at once. Returns the descriptor holding the lock (close it to release), or nil when
    /// another process holds it.
    /// A partial file that is not ours to write (a symlink, another user's file) is removed
    /// (unlink removes the link, never its target) and made again.
    /// Throws `JigdoError(.io)` with the errno (`PartCache.costsOnlyCaching(e.firstErrno)`
    /// tells a read-only or full cache) when the cache cannot be written at all.
    /// Release the lock with `unlockPartial` (it wakes the waiters of `whenReleasedHere`);
    /// `onDemand` is called when a reader elsewhere in this process needs the part.
    public func lockPartial(for sum: Checksum, onDemand: (@Sendable () -> Void)? = nil) throws -> Int32? {
        guard let fd = try takePartialLock(sum) else { return nil }
        heldHere.withLock { $0[sum] = Holder(onDemand: onDemand) }
        return fd
    }

    /// Releases the lock `lockPartial` gave (closes `fd`), then calls whoever in this process
    /// waits for it.
    public func unlockPartial(_ fd: Int32, for sum: Checksum) {
        let holder = heldHere.withLock { $0.removeValue(forKey: sum) }
        Syscalls.close(fd)
        for w in holder?.waiters ?? [] { DispatchQueue.global().async { w() } }
    }

    /// After `store` renamed the locked partial file in: releases its lock like `unlockPartial`
    /// but keeps the descriptor, which is now the cached part's, as that open file (no open
    /// by name, and surely the file whose bytes were hashed as they were written). nil (the
    /// descriptor closed): it is no longer the cached part (evicted meanwhile) or not
    /// `length` bytes long.
    public func unlockStored(_ fd: Int32, for sum: Checksum, length: Int64) -> ReadOnlyFile? {
        let holder = heldHere.withLock { $0.removeValue(forKey: sum) }
        // Unlocked explicitly: the descriptor stays open, and a lock goes with the open file.
        _ = flock(fd, LOCK_UN)
        let file = ReadOnlyFile(adopting: fd, path: path(for: sum))
        for w in holder?.waiters ?? [] { DispatchQueue.global().async { w() } }
        guard let file, file.isRegularFile, file.owner == thisUser, file.size == length else { return nil }
        return file
    }

    /// When this process holds the lock of the part's partial file (another image's pipeline
    /// is downloading it): `released` is called once it is released, `demand` tells the holder
    /// a reader waits, and the result is true. False: another process holds it, or nobody does
    /// any more (look again later).
    public func whenReleasedHere(_ sum: Checksum, demand: Bool, _ released: @escaping @Sendable () -> Void) -> Bool {
        let onDemand = heldHere.withLock { held -> (@Sendable () -> Void)?? in
            guard held[sum] != nil else { return .none }
            held[sum]!.waiters.append(released)
            return .some(held[sum]!.onDemand)
        }
        guard let onDemand else { return false }
        if demand { onDemand?() }
        return true
    }

    /// How many in this process wait for the release of the part's partial file (0 when it
    /// is not locked here); for tests.
    public func waitersForRelease(_ sum: Checksum) -> Int {
        heldHere.withLock { $0[sum]?.waiters.count ?? 0 }
    }

    private func takePartialLock(_ sum: Checksum) throws -> Int32? {
        // EPERM classifies it (costsOnlyCaching): parts are kept in memory.
        if refusal != nil { throw JigdoError(.io, path: directory, "not trusted: the cache is not used", underlying: SystemErrno(EPERM)) }
        return try withPath(sum, partial: true) { path in
            for _ in 0..<2 {
                // Read-write: a download that must start again from byte 0 empties it in place
                // (`ftruncate`), keeping the lock.
                let fd = Syscalls.open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
                if fd < 0 {
                    let e = SystemErrno.current
                    if e.rawValue == ELOOP {
                        Syscalls.unlink(path)
                        continue
                    }
                    throw JigdoError(.io, path: partialPath(for: sum), "cannot open", errno: e)
                }
                guard Self.isOwnRegularFile(fd) else {
                    Syscalls.close(fd)
                    Syscalls.unlink(path)
                    continue
                }
                if flock(fd, LOCK_EX | LOCK_NB) != 0 {
                    Syscalls.close(fd)
                    return nil
                }
                return fd
            }
            // EPERM classifies it (costsOnlyCaching) without adding its text to the line.
            throw JigdoError(.io, path: partialPath(for: sum), "not a regular file of this user, and cannot be replaced",
                             underlying: SystemErrno(EPERM))
        }
    }

    /// Whether an open descriptor is a regular file owned by this process's user.
    static func isOwnRegularFile(_ fd: Int32) -> Bool {
        var st = stat()
        return Syscalls.fstat(fd, &st) == 0 && isOwnRegularFile(st)
    }

    /// Whether a file's status is that of a regular file owned by this process's user.
    static func isOwnRegularFile(_ st: stat) -> Bool {
        (st.st_mode & S_IFMT) == S_IFREG && st.st_uid == thisUser
    }

    /// Opens a cached part (O_NOFOLLOW: a symlink is never followed); nil when it is absent,
    /// not a regular file of this user, or not `length` bytes long. Its bytes are not checked
    /// here: the caller verifies a part the first time it serves it.
    public func openPart(_ sum: Checksum, length: Int64) -> ReadOnlyFile? {
        // Why it cannot be opened (absent, a symlink, unreadable) is not kept: every case
        // means "not in the cache", and the part is fetched again.
        guard refusal == nil, let f = try? ReadOnlyFile(path: path(for: sum), extraFlags: O_NOFOLLOW),
              f.isRegularFile, f.owner == thisUser, f.size == length else { return nil }
        return f
    }

    /// Whether the part is in the cache (a regular file of the right size; not followed
    /// through a symlink). Its bytes are checked when it is first served.
    public func contains(_ sum: Checksum, length: Int64) -> Bool {
        var st = stat()
        guard refusal == nil, withPath(sum, partial: false, { Syscalls.lstat($0, &st) }) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_uid == thisUser else { return false }
        return Int64(st.st_size) == length
    }

    /// Which prefix directories (`parts/<kind>/<first 2 chars>`, 4,096 of them: the first 12
    /// bits of the checksum) exist now, for a look at every part (a status report): a part
    /// whose prefix directory is absent is not cached, and costs no `lstat`. nil: cannot tell
    /// (the directory could not be read), look each part up.
    public func prefixDirectories(_ kind: ChecksumKind) -> PrefixDirectories? {
        guard refusal == nil else { return PrefixDirectories() }
        guard let dir = opendir("\(directory)/parts/\(kind.rawValue.lowercased())") else {
            return errno == ENOENT || errno == ENOTDIR ? PrefixDirectories() : nil
        }
        defer { closedir(dir) }
        var out = PrefixDirectories()
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            guard name.count == 2, let a = JigdoBase64.value(of: name[0]), let b = JigdoBase64.value(of: name[1]) else { continue }
            out.present[Int(a) << 6 | Int(b)] = true
        }
        return out
    }

    /// See `prefixDirectories(_:)`.
    public struct PrefixDirectories: Sendable {
        var present = [Bool](repeating: false, count: 4096)

        /// Whether the prefix directory of `sum` was there.
        public func mayHold(_ sum: Checksum) -> Bool {
            sum.withUnsafeBytes { b in present[Int(b[0]) << 4 | Int(b[1] >> 4)] }
        }
    }

    /// Removes a cached part that failed its check, if it is still the file that was checked.
    public func remove(_ sum: Checksum, ifStill identity: FileIdentity) {
        guard refusal == nil else { return }
        let p = path(for: sum)
        var st = stat()
        guard Syscalls.lstat(p, &st) == 0, FileIdentity(st).inode == identity.inode, FileIdentity(st).device == identity.device else { return }
        Syscalls.unlink(p)
    }

    /// Moves a verified partial file into the cache.
    public func commit(partial: String, as sum: Checksum) throws {
        if let refusal { throw refusal }
        let bit = Self.prefixBit(sum)
        // A prefix directory this process made or checked is not made and checked again for
        // every part (a mkdir and an lstat a part, 1% of the daemon's CPU): below the cache's
        // private directory (`CacheTrust`) no one else can replace it. One removed meanwhile
        // (the cache emptied by hand) fails the rename: it is made again, once.
        var known = knownPrefixes.withLock { $0.contains(bit) }
        while true {
            if !known { try makePrefixDirectory(of: path(for: sum)) }
            let renamed = partial.withCString { from in withPath(sum, partial: false) { Syscalls.rename(from, $0) } }
            if renamed == 0 {
                knownPrefixes.withLock { _ = $0.insert(bit) }
                return
            }
            let e = SystemErrno.current
            if known && e.rawValue == ENOENT {
                knownPrefixes.withLock { _ = $0.remove(bit) }
                known = false
                continue
            }
            throw JigdoError(.io, path: path(for: sum), "cannot move the downloaded part into the cache", errno: e)
        }
    }

    /// Makes the prefix directory of a part's path (only that one: a cache directory removed
    /// meanwhile is not brought back) and checks it is a directory, not a link.
    private func makePrefixDirectory(of target: String) throws {
        let prefixDir = String(directoryOf(target).dropLast())
        if Syscalls.mkdir(prefixDir, 0o700) != 0 && errno != EEXIST {
            let e = SystemErrno.current
            throw JigdoError(.io, path: prefixDir, "cannot create directory", errno: e)
        }
        var st = stat()
        if Syscalls.lstat(prefixDir, &st) != 0 || (st.st_mode & S_IFMT) != S_IFDIR {
            throw JigdoError(.io, path: prefixDir, "not a directory", underlying: SystemErrno(ENOTDIR))
        }
    }

    /// The prefix directory of `sum` (its kind and the first 12 bits: its first two Base64
    /// characters) as one number.
    private static func prefixBit(_ sum: Checksum) -> UInt16 {
        let kind = UInt16(kindIndex(sum))
        return sum.withUnsafeBytes { b in kind << 12 | UInt16(b[0]) << 4 | UInt16(b[1] >> 4) }
    }

    /// The index of the checksum's kind in `ChecksumKind.allCases` (MD5 when it has none).
    private static func kindIndex(_ sum: Checksum) -> Int {
        ChecksumKind.allCases.firstIndex(of: sum.kind ?? .md5) ?? 0
    }

    /// Marks a cached part as just used (its mtime orders least-recently-used eviction).
    public func touch(_ sum: Checksum) {
        guard refusal == nil else { return }
        _ = utimensat(AT_FDCWD, path(for: sum), nil, AT_SYMLINK_NOFOLLOW)
    }

    /// A directory for fetched .jigdo/.template files of one source URL: `sources/` and it are
    /// made 0700 or must be trusted (`CacheTrust`); so must every file read from it
    /// (`CacheTrust.checkFileIfPresent`). Throws the refusal otherwise, or that of the cache.
    public func sourceDirectory(forURL url: String) throws -> String {
        if let refusal { throw refusal }
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in url.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        let name = String(h, radix: 16)
        try CacheTrust.makeTrustedDirectories(directory, ["sources/" + name])
        return "\(directory)/sources/\(name)"
    }
}

/// `mkdir -p`; directories it creates are private (0700): a cache says what a user reads.
/// Throws `JigdoError(.io)` carrying the errno (ENOTDIR when `path` is not a directory), so
/// a caller can tell a read-only or full cache (`PartCache.costsOnlyCaching`) from others.
func makeDirectories(_ path: String) throws {
    var current = path.hasPrefix("/") ? "" : "."
    for component in path.split(separator: "/") {
        current += "/" + component
        if Syscalls.mkdir(current, 0o700) != 0 && errno != EEXIST {
            let e = SystemErrno.current
            throw JigdoError(.io, path: current, "cannot create directory", errno: e)
        }
    }
    guard isDirectory(path) else {
        throw JigdoError(.io, path: path, "is not a directory", underlying: SystemErrno(ENOTDIR))
    }
}

