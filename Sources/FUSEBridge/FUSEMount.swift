#if canImport(Glibc)
import Glibc
#endif
import CFuse3
import Foundation
import JigdoFormat
import Logging
import Synchronization

/// One FUSE session serving a `JigdoFilesystem` through libfuse's low-level API
/// (`LowLevelBridge`): created, mounted, run until unmounted or signalled, then torn down.
/// Each step reports failure as a `JigdoError` naming the mount point.
///
/// Not thread-safe: the owner drives it from one thread (the loop's worker threads only see the
/// bridge, through the request's userdata).
///
/// Signals (the one place they are handled): SIGINT, SIGTERM and SIGHUP end the session. Their
/// handler only writes to a pipe; a thread reading it answers every read still waiting for a
/// download with EIO, marks the session exited and wakes the loop, so the process unmounts
/// and exits at once, whatever downloads are in flight.
public final class FUSEMount {
    public let mountpoint: String
    private let bridge: LowLevelBridge
    private let retained: Unmanaged<LowLevelBridge>
    private var session: OpaquePointer?
    private var mounted = false
    /// The thread running the loop (woken with a signal when the session must end).
    private let loopThread = LoopThread()

    /// Creates the session. `options` are `-o` values (mount options such as `allow_other`);
    /// `ro`, `default_permissions`, `fsname` and `subtype` are always added. `attributeTimeout`:
    /// how long the kernel may keep names and attributes (nothing changes while mounted).
    public init(filesystem: JigdoFilesystem, mountpoint: String, fsname: String, options: [String], debug: Bool,
                attributeTimeout: Double = 86400) throws {
        self.mountpoint = mountpoint
        FUSELog.install()
        FUSELog.verbose.withLock { $0 = debug }
        var optionList = ["ro", "default_permissions", "subtype=jigdofs", "fsname=" + Self.escapeOption(fsname)]
        optionList += options.filter { !$0.isEmpty }
        var argv = ["jigdofs", "-o", optionList.joined(separator: ",")]
        if debug { argv.append("-d") }
        bridge = LowLevelBridge(filesystem: filesystem, attributeTimeout: attributeTimeout)
        retained = Unmanaged.passRetained(bridge)

        let cArgs = argv.map { strdup($0) }
        defer { cArgs.forEach { free($0) } }
        var pointers: [UnsafeMutablePointer<CChar>?] = cArgs + [nil]
        var ops = makeLowLevelOperations()
        FUSELog.startCapturing()
        let handle: OpaquePointer? = pointers.withUnsafeMutableBufferPointer { buf in
            var args = fuse_args(argc: Int32(argv.count), argv: buf.baseAddress, allocated: 0)
            defer { fuse_opt_free_args(&args) }
            return jfs_session_new(&args, &ops, retained.toOpaque())
        }
        guard let handle else {
            // deinit releases the bridge (it runs for a throwing init once all properties are set).
            throw JigdoError(.usage, path: mountpoint, "cannot set up FUSE: \(FUSELog.stopCapturing() ?? "bad options \(optionList.joined(separator: ","))")")
        }
        _ = FUSELog.stopCapturing()
        session = handle
        try installSignalHandling(handle)
    }

    deinit {
        unmount()
        if let session { fuse_session_destroy(session) }
        retained.release()
    }

    /// From now on SIGINT/SIGTERM/SIGHUP end the session (see the type's note): a signal that
    /// arrives while mounting makes run() return at once and unmount, instead of killing the
    /// process and leaving a dead mount behind. Shells start background jobs with SIGINT
    /// ignored and a caller may have blocked these signals (Foundation's Process spawns with
    /// its thread's mask): an explicit `kill -INT` must still unmount.
    private func installSignalHandling(_ session: OpaquePointer) throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw JigdoError(.io, path: mountpoint, "cannot create a pipe", errno: SystemErrno(errno)) }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        // A full pipe must never block the handler.
        _ = fcntl(fds[1], F_SETFL, O_NONBLOCK)
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
        guard jfs_install_signal_pipe(fds[1]) == 0 else {
            throw JigdoError(.io, path: mountpoint, "cannot install signal handlers", errno: SystemErrno(errno))
        }
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for sig in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&unblock, sig) }
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        let readFD = fds[0]
        let bridge = self.bridge
        let loopThread = self.loopThread
        let sessionBox = SessionPointer(session)
        let thread = Thread {
            var byte: UInt8 = 0
            var shuttingDown = false
            while true {
                let n = read(readFD, &byte, 1)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                // SIGHUP ends the session as SIGTERM does (what libfuse's own handlers did);
                // this switch is where another meaning (e.g. reopening logs) would go.
                switch Int32(byte) {
                case SIGINT, SIGTERM, SIGHUP:
                    guard !shuttingDown else { continue }
                    shuttingDown = true
                    bridge.shutdown()
                    fuse_session_exit(sessionBox.pointer)
                    // The loop's main thread sleeps in sem_wait until a worker ends; a signal
                    // sent to it wakes it, and it then ends the workers (cancelled while they
                    // wait for the kernel, never inside a request).
                    if let t = loopThread.thread.withLock({ $0 }) { pthread_kill(t, SIGTERM) }
                default:
                    continue
                }
            }
        }
        thread.name = "jigdofs-signals"
        thread.stackSize = 256 << 10
        thread.start()
    }

    /// Mounts. Refuses a mount point that is missing, not a directory, or already a mount point
    /// (mounting over it would hide what is there, and usually means a previous mount is still up).
    public func mount() throws {
        guard let session else { return }
        var st = stat()
        if stat(mountpoint, &st) != 0 {
            throw JigdoError(.io, path: mountpoint, "mount point", errno: SystemErrno(errno))
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            throw JigdoError(.usage, path: mountpoint, "mount point is not a directory")
        }
        // Mounting over another mount is what an automount does (x-systemd.automount, autofs:
        // the trigger is mounted there first); over a jigdofs mount it is a second mount of
        // the same thing, which would only hide the first.
        if MountTable.filesystemType(at: mountpoint) == "fuse.jigdofs" {
            throw JigdoError(.usage, path: mountpoint, "mount point is busy: a jigdofs mount is already there")
        }
        // As mountinfo will show it; resolved now, while resolving needs no FUSE request.
        let resolvedMountpoint = canonicalPath(mountpoint)
        FUSELog.startCapturing()
        let result = fuse_session_mount(session, mountpoint)
        let message = FUSELog.stopCapturing()
        guard result == 0 else {
            throw JigdoError(.io, path: mountpoint, "cannot mount: \(message ?? "fuse_session_mount failed")")
        }
        mounted = true
        bridge.filesystem.onFirstRequest { Self.raiseReadahead(resolvedMountpoint) }
    }

    /// Readahead of the mount's backing device, in KiB. The kernel starts a FUSE mount at
    /// 128 KiB, so sequential readers (dd, cmp, loop devices) get 128 KiB requests; the image is
    /// immutable and parts are large, so bigger requests cost nothing and save a round trip
    /// through the daemon per 128 KiB (about a third faster `dd` on this 2-core machine).
    public static let readaheadKiB = 1024

    /// Best effort (needs root): raises the readahead via /sys/class/bdi. The kernel sets it
    /// when it processes the reply to FUSE's INIT, so this runs on the first request after
    /// INIT (`JigdoFilesystem.onFirstRequest`); the device is looked up in mountinfo, never by
    /// a stat(2) of the mount point (which would be a FUSE request of our own).
    static func raiseReadahead(_ target: String) {
        guard let device = MountTable.entries().last(where: { $0.mountPoint == target })?.device else { return }
        let path = "/sys/class/bdi/\(device)/read_ahead_kb"
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let text = Array("\(readaheadKiB)\n".utf8)
        _ = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    /// Serves requests on several threads until the filesystem is unmounted (`fusermount3 -u`,
    /// `umount`) or SIGINT/SIGTERM/SIGHUP arrives, then unmounts. Returns libfuse's loop result.
    @discardableResult
    public func run() -> Int32 {
        guard let session, mounted else { return -1 }
        loopThread.thread.withLock { $0 = pthread_self() }
        // Up to 10 idle workers kept (see jfs_session_loop_mt: reads block their worker on
        // disk and decompression, never on the network).
        let result = jfs_session_loop_mt(session, 10)
        loopThread.thread.withLock { $0 = nil }
        // Reads still waiting for downloads get EIO (after an unmount the kernel has dropped
        // them already); no reply is sent once this returns.
        bridge.shutdown()
        unmount()
        return result
    }

    /// Unmounts if still mounted (idempotent).
    public func unmount() {
        guard mounted, let session else { return }
        fuse_session_unmount(session)
        mounted = false
    }

    /// fuse option values are comma-separated with backslash escapes (the one escaping of
    /// `-o` items: fsname here, the CLI's fuse options).
    public static func escapeOption(_ s: String) -> String {
        var out = ""
        for c in s {
            if c == "," || c == "\\" { out.append("\\") }
            out.append(c)
        }
        return out
    }
}

/// Reads /proc/self/mountinfo.
public enum MountTable {
    /// Whether `path` (resolved) is the mount point of some mount.
    public static func isMountPoint(_ path: String) -> Bool {
        let target = canonicalPath(path)
        return mountPoints().contains(target)
    }

    /// The type (`fuse.jigdofs`, `autofs`, ...) of the topmost mount at `path`, if any.
    public static func filesystemType(at path: String) -> String? {
        let target = canonicalPath(path)
        return mounts().last { $0.mountPoint == target }?.type
    }

    /// Every mount in /proc/self/mountinfo order: its mount point and file system type.
    public static func mounts() -> [(mountPoint: String, type: String)] {
        String(decoding: readProcFile("/proc/self/mountinfo"), as: UTF8.self).split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count > 4, let dash = fields.firstIndex(of: "-"), dash + 1 < fields.count else { return nil }
            return (unescape(String(fields[4])), String(fields[dash + 1]))
        }
    }

    public static func mountPoints() -> Set<String> {
        Set(entries().map(\.mountPoint))
    }

    /// (device "MAJOR:MINOR", mount point) of every mount, from /proc/self/mountinfo.
    static func entries() -> [(device: String, mountPoint: String)] {
        String(decoding: readProcFile("/proc/self/mountinfo"), as: UTF8.self).split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            return fields.count > 4 ? (String(fields[2]), unescape(String(fields[4]))) : nil
        }
    }

    /// mountinfo writes space, tab, newline and backslash as \ooo.
    static func unescape(_ s: String) -> String {
        let u = Array(s.utf8)
        var bytes: [UInt8] = []
        var i = 0
        while i < u.count {
            if u[i] == UInt8(ascii: "\\"), i + 3 < u.count,
               let v = UInt8(String(decoding: u[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                bytes.append(v)
                i += 4
            } else {
                bytes.append(u[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Files in /proc report size 0: read until the end.
    static func readProcFile(_ path: String) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return out }
            out += chunk[0..<n]
        }
    }
}

/// Routes libfuse's own messages into swift-log, and lets the setup steps capture the last one
/// so a failure is reported as one line with libfuse's reason.
enum FUSELog {
    static let logger = Logger(label: "jigdofs.fuse")
    private static let capture = Mutex<(active: Bool, last: String?)>((false, nil))
    private static let installed = Mutex(false)
    /// Set for -d: every libfuse message goes to stderr.
    static let verbose = Mutex(false)

    static func install() {
        let first = installed.withLock { done in
            defer { done = true }
            return !done
        }
        guard first else { return }
        fuse_set_log_func { level, format, args in
            guard let format, let args else { return }
            var buffer = [CChar](repeating: 0, count: 1024)
            _ = vsnprintf(&buffer, buffer.count, format, args)
            let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
            FUSELog.record(level: level, String(decoding: bytes, as: UTF8.self))
        }
    }

    /// libfuse sometimes builds one message from several calls; while capturing, everything is
    /// collected and returned as one line.
    static func record(level: fuse_log_level, _ text: String) {
        let captured = capture.withLock { state -> Bool in
            guard state.active else { return false }
            state.last = (state.last ?? "") + text
            return true
        }
        let line = text.trimming(trailing: { $0 == "\n" })
        if verbose.withLock({ $0 }) {
            // -d: libfuse's request trace, to stderr as libfuse itself would print it.
            _ = text.withCString { write(2, $0, strlen($0)) }
        } else if captured || level.rawValue > FUSE_LOG_WARNING.rawValue {
            logger.debug("\(line)")
        } else {
            logger.warning("\(line)")
        }
    }

    static func startCapturing() {
        capture.withLock { $0 = (true, nil) }
    }

    static func stopCapturing() -> String? {
        let text = capture.withLock { state in
            defer { state = (false, nil) }
            return state.last
        }
        guard let text else { return nil }
        let lines = text.split(separator: "\n").map { $0.trimmingPrefix("fuse: ").trimmingPrefix("fusermount3: ") }
        return lines.isEmpty ? nil : lines.joined(separator: "; ")
    }
}

/// The thread running the session loop, shared with the signal thread.
final class LoopThread: Sendable {
    let thread = Mutex<pthread_t?>(nil)
}

/// The session pointer, handed to the signal thread (libfuse's exit flag is thread-safe).
struct SessionPointer: @unchecked Sendable {
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
}
