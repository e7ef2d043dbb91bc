#if canImport(Glibc)
import Glibc
#endif
import CPosix
import JigdoFormat

/// Backgrounding that lets the command return only once the mount is usable.
///
/// The process forks *first*, before it opens anything or starts a thread (forking a process
/// with running threads leaves locks and libdispatch in an undefined state). The parent then
/// only waits on a pipe: one byte means "mounted", end-of-file without it means the child
/// failed, and the child has already printed its one error line on the shared stderr; the parent
/// exits with the child's status. The child mounts, then calls `ready()`.
public final class Daemon {
    private var readyFD: Int32

    private init(readyFD: Int32) {
        self.readyFD = readyFD
    }

    /// Forks. Never returns in the parent (it exits 0 when the child reports the mount ready, or
    /// with the child's status). Returns in the child.
    public static func forkWaitingForReady() throws -> Daemon {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            throw JigdoError(.io, "cannot create a pipe", errno: SystemErrno(errno))
        }
        // Not inherited by helpers libfuse runs (fusermount3): only the two processes hold it.
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        let pid = jfs_fork()
        if pid < 0 {
            throw JigdoError(.io, "cannot fork", errno: SystemErrno(errno))
        }
        if pid > 0 {
            close(fds[1])
            waitForChild(pid, readFD: fds[0])
        }
        close(fds[0])
        closeInheritedDescriptors(keeping: fds[1])
        return Daemon(readyFD: fds[1])
    }

    /// A daemon must not hold descriptors its caller gave it (beyond stdio): a caller that waits
    /// for end-of-file on one of them (Foundation's Process does, through a socket it passes
    /// down) would wait for as long as the mount lives. Nothing of ours is open yet.
    private static func closeInheritedDescriptors(keeping keep: Int32) {
        guard let dir = opendir("/proc/self/fd") else { return }
        var open: [Int32] = []
        while let entry = readdir(dir) {
            if let fd = Int32(RawNames.name(of: entry)), fd > 2, fd != keep { open.append(fd) }
        }
        let own = dirfd(dir)
        closedir(dir)
        for fd in open where fd != own { close(fd) }
    }

    private static func waitForChild(_ pid: pid_t, readFD: Int32) -> Never {
        var byte: UInt8 = 0
        var n: Int
        repeat { n = read(readFD, &byte, 1) } while n < 0 && errno == EINTR
        if n == 1 { exit(0) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let signal = status & 0x7f
        if signal == 0 { exit((status >> 8) & 0xff) }
        let line = "jigdofs: the mount daemon was killed by signal \(signal) before the mount was ready\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
        exit(1)
    }

    /// Called in the child once mounted: detaches from the terminal's session, moves off the
    /// working directory (so it can be unmounted), points stdin/stdout at /dev/null and stderr at
    /// `logFile` (or /dev/null), then releases the waiting parent.
    public func ready(logFile: String?) throws {
        var logFD: Int32 = -1
        if let logFile {
            logFD = LogFile.open(logFile)
            if logFD < 0 { throw JigdoError(.io, path: logFile, "cannot open log file", errno: SystemErrno(errno)) }
        }
        _ = setsid()
        _ = chdir("/")
        let null = open("/dev/null", O_RDWR)
        if null >= 0 {
            dup2(null, 0)
            dup2(null, 1)
            dup2(logFD >= 0 ? logFD : null, 2)
            if null > 2 { close(null) }
        }
        if logFD >= 0 { close(logFD) }
        var byte: UInt8 = 1
        _ = write(readyFD, &byte, 1)
        close(readyFD)
        readyFD = -1
    }
}

/// The `--log-file`: appended to, and created 0600 (its lines name mirrors and paths, which are
/// the user's business); an existing file keeps its mode (logrotate's `create` sets one).
public enum LogFile {
    public static func open(_ path: String) -> Int32 {
        Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
    }
}
