#if canImport(Glibc)
import Glibc
#endif
import JigdoFormat

/// The effective user: a cache file must be its own. Read once (`geteuid` is a system call,
/// and the cache's checks asked it four times a part downloaded); the daemon never changes
/// its user.
let thisUser: uid_t = geteuid()

/// Whether a file or directory of the cache may be believed: it is this user's own (root's for
/// root), neither group nor others can write it, and it is not a symbolic link (looked at with
/// lstat, never followed). Anything else may have been put there by someone else (a cache dir
/// shared by mistake, a `/tmp/jigdofs-UID` made first by another user, a planted `sources/`
/// entry or a link in place of `checksums.sqlite`) and is refused with one line naming it.
public enum CacheTrust {
    /// Marks a refusal among an error's causes (`isRefusal`): the line names the cache path,
    /// which callers keep (it is what the user has to fix).
    public struct Refused: Error, CustomStringConvertible {
        public var description: String { "not trusted" }
    }

    /// Why the entry at `path` cannot be trusted as a directory (`directory`) or a regular
    /// file; nil when it can. A missing entry is "missing".
    public static func problem(_ path: String, directory: Bool) -> String? {
        var st = stat()
        guard RawNames.withFileSystemPath(path, { Syscalls.lstat($0, &st) }) == 0 else {
            return errno == ENOENT ? "missing" : "cannot be examined: \(errnoText(errno))"
        }
        return problem(st, directory: directory)
    }

    /// Why a status is not that of a trusted cache entry; nil when it is.
    static func problem(_ st: stat, directory: Bool) -> String? {
        let type = st.st_mode & S_IFMT
        if type == S_IFLNK { return "a symbolic link" }
        if type != (directory ? S_IFDIR : S_IFREG) { return directory ? "not a directory" : "not a regular file" }
        if st.st_uid != thisUser { return "owned by uid \(st.st_uid), not by this user (uid \(thisUser))" }
        if st.st_mode & (S_IWGRP | S_IWOTH) != 0 {
            return "writable by group or others (mode \(String(st.st_mode & 0o7777, radix: 8)))"
        }
        return nil
    }

    /// The one line of a refusal: the path (raw bytes escaped) and why.
    public static func refusal(_ path: String, _ why: String) -> JigdoError {
        JigdoError(.io, path: RawNames.display(path), "not trusted as part of the cache: \(why)",
                   underlying: Refused())
    }

    /// Whether an error is (or was caused by) a refusal of a cache entry.
    public static func isRefusal(_ error: any Error) -> Bool {
        (error as? JigdoError)?.causes.contains { $0 is Refused } ?? false
    }

    /// Whether the cache root `path` is a link the user made to put the cache elsewhere
    /// (`~/.cache/jigdofs -> /data/jigdofs`): the link is this user's own, in a directory no
    /// one else can write (so no one else can swap it), and what it points to is a trusted
    /// directory. Only the root may be such a link; everything below it is never followed.
    static func isUsersOwnLinkToTrustedDirectory(_ path: String) -> Bool {
        var link = stat(), parent = stat(), target = stat()
        guard RawNames.withFileSystemPath(path, { Syscalls.lstat($0, &link) }) == 0,
              link.st_mode & S_IFMT == S_IFLNK, link.st_uid == thisUser else { return false }
        let slash = path.lastIndex(of: "/")
        let parentPath = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        guard RawNames.withFileSystemPath(parentPath, { Syscalls.lstat($0, &parent) }) == 0,
              parent.st_mode & S_IFMT == S_IFDIR, parent.st_uid == thisUser || parent.st_uid == 0,
              parent.st_mode & (S_IWGRP | S_IWOTH) == 0,
              RawNames.withFileSystemPath(path, { stat($0, &target) }) == 0 else { return false }
        return problem(target, directory: true) == nil
    }

    /// Throws the refusal of a file that exists and is not trusted; an absent file is fine.
    public static func checkFileIfPresent(_ path: String) throws {
        var st = stat()
        guard RawNames.withFileSystemPath(path, { Syscalls.lstat($0, &st) }) == 0 else { return }
        if let why = problem(st, directory: false) { throw refusal(path, why) }
    }

    /// `root` made if needed (`mkdir -p`, 0700) and checked, then each of `subdirectories`
    /// (relative to it, parents first) made 0700 or checked. Throws the refusal of the first
    /// that is not trusted, or the `JigdoError(.io)` with the errno of a mkdir that failed.
    public static func makeTrustedDirectories(_ root: String, _ subdirectories: [String] = []) throws {
        try makeDirectories(root)
        if let why = problem(root, directory: true), !isUsersOwnLinkToTrustedDirectory(root) {
            throw refusal(root, why)
        }
        for sub in subdirectories {
            var current = root
            for component in sub.split(separator: "/") {
                current += "/" + component
                if Syscalls.mkdir(current, 0o700) != 0 && errno != EEXIST {
                    let e = SystemErrno.current
                    throw JigdoError(.io, path: current, "cannot create directory", errno: e)
                }
                if let why = problem(current, directory: true) { throw refusal(current, why) }
            }
        }
    }
}
