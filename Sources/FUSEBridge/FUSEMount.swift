#if canImport(Glibc)
import Glibc
#endif
import CFuse3
import JigdoFormat
import Logging
import Synchronization

/// One FUSE session serving a `JigdoFilesystem`: created, mounted, run until unmounted or
/// signalled, then torn down. Each step reports failure as a `JigdoError` naming the mount point.
///
/// Not thread-safe: the owner drives it from one thread (the loop's worker threads only see the
/// filesystem, through the request context).
public final class FUSEMount {
    public let mountpoint: String
    private let filesystem: Unmanaged<JigdoFilesystem>
    private var fuse: OpaquePointer?
    private var mounted = false
    private var signalsInstalled = false

    /// Creates the session. `options` are `-o` values (mount options such as `allow_other`);
    /// `ro`, `default_permissions`, `fsname` and `subtype` are always added.
    public init(filesystem: JigdoFilesystem, mountpoint: String, fsname: String, options: [String], debug: Bool) throws {
        self.mountpoint = mountpoint
        FUSELog.install()
        FUSELog.verbose.withLock { $0 = debug }
        var optionList = ["ro", "default_permissions", "subtype=jigdofs", "fsname=" + Self.escapeOption(fsname)]
        optionList += options.filter { !$0.isEmpty }
        var argv = ["jigdofs", "-o", optionList.joined(separator: ",")]
        if debug { argv.append("-d") }
        let retained = Unmanaged.passRetained(filesystem)
        self.filesystem = retained

        let cArgs = argv.map { strdup($0) }
        defer { cArgs.forEach { free($0) } }
        var pointers: [UnsafeMutablePointer<CChar>?] = cArgs + [nil]
        var ops = makeOperations()
        FUSELog.startCapturing()
        let handle: OpaquePointer? = pointers.withUnsafeMutableBufferPointer { buf in
            var args = fuse_args(argc: Int32(argv.count), argv: buf.baseAddress, allocated: 0)
            defer { fuse_opt_free_args(&args) }
            return jfs_fuse_new(&args, &ops, retained.toOpaque())
        }
        guard let handle else {
            // deinit releases `filesystem` (it runs for a throwing init once all properties are set).
            throw JigdoError(.usage, path: mountpoint, "cannot set up FUSE: \(FUSELog.stopCapturing() ?? "bad options \(optionList.joined(separator: ","))")")
        }
        _ = FUSELog.stopCapturing()
        fuse = handle
        // SIGINT/SIGTERM/SIGHUP from now on only flag the session as exited (libfuse's handlers):
        // a signal that arrives while mounting makes run() return at once and unmount, instead
        // of killing the process and leaving a dead mount behind.
        // libfuse leaves a signal alone if it is ignored, and shells start background jobs
        // with SIGINT ignored: an explicit `kill -INT` must still unmount. (SIGHUP keeps its
        // disposition, so `nohup` works.)
        // Likewise a caller may have blocked them (Foundation's Process spawns with its thread's
        // mask); the loop's worker threads inherit this thread's mask.
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for sig in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&unblock, sig) }
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        signalsInstalled = fuse_set_signal_handlers(fuse_get_session(handle)) == 0
    }

    deinit {
        unmount()
        if signalsInstalled, let fuse { fuse_remove_signal_handlers(fuse_get_session(fuse)) }
        if let fuse { fuse_destroy(fuse) }
        filesystem.release()
    }

    /// Mounts. Refuses a mount point that is missing, not a directory, or already a mount point
    /// (mounting over it would hide what is there, and usually means a previous mount is still up).
    public func mount() throws {
        guard let fuse else { return }
        var st = stat()
        if stat(mountpoint, &st) != 0 {
            throw JigdoError(.io, path: mountpoint, "mount point: \(errnoText(errno))")
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
        let result = fuse_mount(fuse, mountpoint)
        let message = FUSELog.stopCapturing()
        guard result == 0 else {
            throw JigdoError(.io, path: mountpoint, "cannot mount: \(message ?? "fuse_mount failed")")
        }
        mounted = true
        filesystem.takeUnretainedValue().onFirstRequest { Self.raiseReadahead(resolvedMountpoint) }
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
        guard let fuse, mounted else { return -1 }
        let result = jfs_fuse_loop_mt(fuse, 10)
        unmount()
        return result
    }

    /// Unmounts if still mounted (idempotent).
    public func unmount() {
        guard mounted, let fuse else { return }
        fuse_unmount(fuse)
        mounted = false
    }

    /// fuse option values are comma-separated with backslash escapes.
    static func escapeOption(_ s: String) -> String {
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
        let lines = String(decoding: readProcFile("/proc/self/mountinfo"), as: UTF8.self).split(separator: "\n")
        for line in lines.reversed() {
            let fields = line.split(separator: " ")
            guard fields.count > 4, unescape(String(fields[4])) == target,
                  let dash = fields.firstIndex(of: "-"), dash + 1 < fields.count else { continue }
            return String(fields[dash + 1])
        }
        return nil
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
        let line = text.trimmingCharacters(in: "\n")
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

extension String {
    fileprivate func trimmingCharacters(in c: Character) -> String {
        var s = Substring(self)
        while s.last == c { s = s.dropLast() }
        return String(s)
    }
}
