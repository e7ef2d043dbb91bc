#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import JigdoFormat

/// A regular file found while scanning a directory tree.
public struct ScannedFile: Sendable, Hashable {
    public var path: String
    public var size: Int64
    /// Modification time in nanoseconds since the epoch.
    public var modificationTimeNs: Int64
    public var inode: UInt64
}

/// Recursive directory listing with stat, following symlinks to files (rsync'd mirrors use them)
/// but never descending into a directory twice (symlink loops).
public enum DirectoryWalker {
    public static func walk(_ root: String, _ visit: (ScannedFile) -> Void) throws {
        var st = stat()
        guard Syscalls.stat(root, &st) == 0 else {
            throw JigdoError(.io, path: root, "cannot scan", errno: SystemErrno(errno))
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            throw JigdoError(.usage, path: root, "--scan needs a directory")
        }
        var seen = Set<[UInt64]>()
        var stack = [root.hasSuffix("/") ? String(root.dropLast()) : root]
        seen.insert([UInt64(st.st_dev), UInt64(st.st_ino)])
        while let dir = stack.popLast() {
            // A directory below the root that cannot be read (no permission, removed meanwhile)
            // is skipped, and so is an entry that cannot be stat'ed (a dangling link): what is
            // lost is only candidates, and one unreadable corner (lost+found) must not fail a
            // scan of a whole tree. The root itself failing is an error (above).
            guard let handle = RawNames.withFileSystemPath(dir, { opendir($0) }) else { continue }
            defer { closedir(handle) }
            while let entry = readdir(handle) {
                // Names that are not UTF-8 (Latin-1 media) keep their bytes (RawNames).
                let name = RawNames.name(of: entry)
                if name == "." || name == ".." { continue }
                let path = dir + "/" + name
                var s = stat()
                guard RawNames.withFileSystemPath(path, { Syscalls.stat($0, &s) }) == 0 else { continue }
                switch s.st_mode & S_IFMT {
                case S_IFDIR:
                    if seen.insert([UInt64(s.st_dev), UInt64(s.st_ino)]).inserted { stack.append(path) }
                case S_IFREG:
                    visit(ScannedFile(path: path, size: Int64(s.st_size), modificationTimeNs: Int64(s.st_mtim.tv_sec) * 1_000_000_000 + Int64(s.st_mtim.tv_nsec), inode: UInt64(s.st_ino)))
                default:
                    continue
                }
            }
        }
    }
}
