import Foundation
import JigdoFormat

/// An output file written under a temporary name in the same directory and renamed into place
/// only by `commit()`: an interrupted or failed run leaves nothing at the final path.
final class PartialOutputFile {
    let finalPath: String
    let tempPath: String
    private var fd: Int32
    private var committed = false

    init(finalPath: String) throws {
        self.finalPath = finalPath
        let dir = directoryOf(absolutePath(finalPath))
        let prefix = ".\(baseName(finalPath)).jigdofs-partial-"
        Self.removeStale(in: dir, prefix: prefix)
        tempPath = dir + prefix + "\(getpid())"
        fd = Syscalls.open(tempPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 {
            throw JigdoError(.io, path: finalPath, "cannot create", errno: SystemErrno(errno))
        }
        SignalCleanup.register(tempPath)
    }

    /// Temporary files of earlier runs for the same output that were killed (SIGKILL cannot be
    /// caught): their process is gone, so nobody will finish or remove them.
    static func removeStale(in dir: String, prefix: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
        for name in names where name.hasPrefix(prefix) {
            guard let pid = Int32(name.dropFirst(prefix.count)), pid > 0, pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { Syscalls.unlink(dir + name) }
        }
    }

    func write(_ data: UnsafeRawBufferPointer) throws {
        if let e = writeFully(fd, data) { throw JigdoError(.io, path: finalPath, "write failed", errno: e) }
    }

    func commit() throws {
        if Syscalls.fsync(fd) != 0 { throw JigdoError(.io, path: finalPath, "fsync failed", errno: SystemErrno(errno)) }
        Syscalls.close(fd)
        fd = -1
        if Syscalls.rename(tempPath, finalPath) != 0 {
            throw JigdoError(.io, path: finalPath, "cannot rename into place", errno: SystemErrno(errno))
        }
        committed = true
        SignalCleanup.unregister()
    }

    func discard() {
        if fd >= 0 { Syscalls.close(fd); fd = -1 }
        if !committed { Syscalls.unlink(tempPath) }
        SignalCleanup.unregister()
    }
}
