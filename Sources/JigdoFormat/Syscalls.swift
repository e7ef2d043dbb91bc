#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The libc file calls of jigdofs, behind one door.
///
/// Each wrapper returns what libc returns and leaves `errno` as libc left it, so call sites keep
/// their own error handling (and their messages). What the door adds is for tests: a test can
/// make calls on paths under one directory fail with a chosen errno (`injectFailure`), e.g. a
/// full disk (ENOSPC) or a read-only one (EROFS), which otherwise needs a root-only tmpfs.
/// Calls on a descriptor (`pread`, `pwrite`, `fsync`, ...) are matched by the path it was opened
/// with through `Syscalls.open`. With no failure injected (always, outside tests) a call costs
/// one relaxed atomic load more than the bare libc call.
///
/// Not routed here (yet): directory listing (`opendir`/`readdir`), `realpath`, `lseek`, `flock`,
/// `utimensat`; the daemon's and the log's descriptors (FUSEBridge's Daemon and FUSEMount, the
/// jigdofs target's Logging and MountCommand); the unlink in the signal handler (Interrupt:
/// it must stay async-signal-safe); terminal and pipe I/O; libfuse's and libcurl's own calls.
public enum Syscalls {
    /// The kinds of call a test can make fail.
    public enum Operation: String, Sendable, Hashable, CaseIterable {
        case open, close, read, write, stat, rename, unlink, mkdir, fsync, truncate
    }

    // MARK: The wrappers

    public static func open(_ path: UnsafePointer<CChar>, _ flags: Int32, _ mode: mode_t = 0) -> Int32 {
        if let e = injected(.open, path: path) { return fail(e) }
        let fd = Glibc.open(path, flags, mode)
        if fd >= 0, isActive.load(ordering: .relaxed) { remember(fd, path: String(cString: path)) }
        return fd
    }

    /// A duplicate of `fd` (close-on-exec; `fcntl(F_DUPFD_CLOEXEC)`): the same open file,
    /// matched by the path `fd` was opened with.
    public static func duplicate(_ fd: Int32) -> Int32 {
        if let e = injected(.open, fd: fd) { return fail(e) }
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        if copy >= 0, isActive.load(ordering: .relaxed), let path = state.withLock({ $0.paths[fd] }) {
            remember(copy, path: path)
        }
        return copy
    }

    @discardableResult
    public static func close(_ fd: Int32) -> Int32 {
        let e = injected(.close, fd: fd)
        if isActive.load(ordering: .relaxed) { forget(fd) }
        // The descriptor is released even when a failure is injected (as close(2) does on EIO).
        let r = Glibc.close(fd)
        if let e { return fail(e) }
        return r
    }

    public static func pread(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int, _ offset: off_t) -> Int {
        if let e = injected(.read, fd: fd) { return Int(fail(e)) }
        return Glibc.pread(fd, buffer, count, offset)
    }

    public static func pwrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int, _ offset: off_t) -> Int {
        if let e = injected(.write, fd: fd) { return Int(fail(e)) }
        return Glibc.pwrite(fd, buffer, count, offset)
    }

    public static func write(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
        if let e = injected(.write, fd: fd) { return Int(fail(e)) }
        return Glibc.write(fd, buffer, count)
    }

    public static func fstat(_ fd: Int32, _ st: inout stat) -> Int32 {
        if let e = injected(.stat, fd: fd) { return fail(e) }
        return Glibc.fstat(fd, &st)
    }

    public static func stat(_ path: UnsafePointer<CChar>, _ st: inout stat) -> Int32 {
        if let e = injected(.stat, path: path) { return fail(e) }
        return libcStat(path, &st)
    }

    public static func lstat(_ path: UnsafePointer<CChar>, _ st: inout stat) -> Int32 {
        if let e = injected(.stat, path: path) { return fail(e) }
        return Glibc.lstat(path, &st)
    }

    public static func fsync(_ fd: Int32) -> Int32 {
        if let e = injected(.fsync, fd: fd) { return fail(e) }
        return Glibc.fsync(fd)
    }

    public static func ftruncate(_ fd: Int32, _ length: off_t) -> Int32 {
        if let e = injected(.truncate, fd: fd) { return fail(e) }
        return Glibc.ftruncate(fd, length)
    }

    /// Matched against both paths (a rename out of or into the directory fails).
    public static func rename(_ from: UnsafePointer<CChar>, _ to: UnsafePointer<CChar>) -> Int32 {
        if let e = injected(.rename, path: to) ?? injected(.rename, path: from) { return fail(e) }
        return Glibc.rename(from, to)
    }

    @discardableResult
    public static func unlink(_ path: UnsafePointer<CChar>) -> Int32 {
        if let e = injected(.unlink, path: path) { return fail(e) }
        return Glibc.unlink(path)
    }

    public static func mkdir(_ path: UnsafePointer<CChar>, _ mode: mode_t) -> Int32 {
        if let e = injected(.mkdir, path: path) { return fail(e) }
        return Glibc.mkdir(path, mode)
    }

    // MARK: The same, for paths held as Strings
    // A String passed where a C string pointer is expected is copied into a new array at every
    // call (the implicit conversion); `withCString` hands a native string's own bytes over. The
    // path calls of a part downloaded (its partial file, the rename into the cache, the checks
    // of its files) went through that copy about ten times a part.

    public static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0) -> Int32 {
        path.withCString { open($0, flags, mode) }
    }

    public static func stat(_ path: String, _ st: inout stat) -> Int32 {
        path.withCString { stat($0, &st) }
    }

    public static func lstat(_ path: String, _ st: inout stat) -> Int32 {
        path.withCString { lstat($0, &st) }
    }

    public static func rename(_ from: String, _ to: String) -> Int32 {
        from.withCString { f in to.withCString { rename(f, $0) } }
    }

    @discardableResult
    public static func unlink(_ path: String) -> Int32 {
        path.withCString { unlink($0) }
    }

    public static func mkdir(_ path: String, _ mode: mode_t) -> Int32 {
        path.withCString { mkdir($0, mode) }
    }

    // MARK: Failure injection (tests only)

    /// One injected failure; `remove()` ends it (tests call it in a `defer`).
    public struct InjectedFailure: Sendable {
        fileprivate let id: UInt64
        public func remove() { Syscalls.remove(id) }
    }

    /// From now on, every call among `operations` on a path at or under `directory` (absolute,
    /// as the code under test spells it) fails with `code`, at most `times` times (nil: until
    /// removed). Other paths are unaffected, so tests running in parallel do not see it.
    @discardableResult
    public static func injectFailure(_ operations: Set<Operation>, under directory: String, errno code: Int32,
                                     times: Int? = nil) -> InjectedFailure {
        var dir = directory
        while dir.count > 1, dir.hasSuffix("/") { dir.removeLast() }
        let id = state.withLock { s -> UInt64 in
            s.nextID += 1
            s.rules.append(Rule(id: s.nextID, operations: operations, directory: dir, code: code, remaining: times))
            return s.nextID
        }
        isActive.store(true, ordering: .relaxed)
        return InjectedFailure(id: id)
    }

    private struct Rule {
        var id: UInt64
        var operations: Set<Operation>
        var directory: String
        var code: Int32
        var remaining: Int?

        func covers(_ path: String) -> Bool {
            directory == "/" || path == directory || path.hasPrefix(directory + "/")
        }
    }

    private struct State {
        var rules: [Rule] = []
        var nextID: UInt64 = 0
        /// Descriptors opened while a rule existed, by path (for calls on descriptors).
        var paths: [Int32: String] = [:]
    }

    /// True from the first injected failure on (descriptors opened before it are not known).
    private static let isActive = Atomic<Bool>(false)
    private static let state = Mutex(State())

    private static func remove(_ id: UInt64) {
        state.withLock { s in s.rules.removeAll { $0.id == id } }
    }

    private static func remember(_ fd: Int32, path: String) {
        state.withLock { $0.paths[fd] = path }
    }

    private static func forget(_ fd: Int32) {
        _ = state.withLock { $0.paths.removeValue(forKey: fd) }
    }

    private static func fail(_ code: Int32) -> Int32 {
        errno = code
        return -1
    }

    private static func injected(_ op: Operation, path: UnsafePointer<CChar>) -> Int32? {
        guard isActive.load(ordering: .relaxed) else { return nil }
        return match(op, String(cString: path))
    }

    private static func injected(_ op: Operation, fd: Int32) -> Int32? {
        guard isActive.load(ordering: .relaxed) else { return nil }
        guard let path = state.withLock({ $0.paths[fd] }) else { return nil }
        return match(op, path)
    }

    private static func match(_ op: Operation, _ path: String) -> Int32? {
        state.withLock { s in
            guard let i = s.rules.firstIndex(where: { $0.operations.contains(op) && $0.covers(path) }) else { return nil }
            let code = s.rules[i].code
            if let n = s.rules[i].remaining {
                if n <= 1 { s.rules.remove(at: i) } else { s.rules[i].remaining = n - 1 }
            }
            return code
        }
    }
}

/// stat(2) (at file scope: inside `Syscalls`, `Glibc.stat(...)` names the struct, not the call).
private func libcStat(_ path: UnsafePointer<CChar>, _ st: inout stat) -> Int32 {
    stat(path, &st)
}
