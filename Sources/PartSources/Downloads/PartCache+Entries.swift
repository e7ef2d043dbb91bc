#if canImport(Glibc)
import Glibc
#endif
import JigdoFormat

extension PartCache {
    // MARK: what the cache holds: listing (`cache` command, --cache-size) and eviction

    /// A file in the cache, as `entries()` and `partialEntries()` list it.
    public struct Entry: Sendable {
        public var path: String
        public var size: Int64
        /// When it was last used (a part: last served, `touch`; a partial file: last written),
        /// as its mtime in nanoseconds since the epoch.
        public var lastUseNs: Int64
    }

    /// Every verified part in the cache (none in a refused one).
    public func entries() -> [Entry] { listEntries(under: "parts", inPrefixDirectories: true) }

    /// Partial (resumable) downloads.
    public func partialEntries() -> [Entry] { listEntries(under: "partial", inPrefixDirectories: false) }

    /// The regular files of `area/<kind>/` (in its prefix directories: `parts/`).
    private func listEntries(under area: String, inPrefixDirectories: Bool) -> [Entry] {
        var out: [Entry] = []
        guard refusal == nil else { return out }
        for kind in ChecksumKind.allCases {
            let base = directory + "/" + area + "/" + kind.rawValue.lowercased()
            let folders = inPrefixDirectories ? listDirectory(base).map { base + "/" + $0 } : [base]
            for folder in folders {
                for name in listDirectory(folder) {
                    if let e = Self.entry(folder + "/" + name) { out.append(e) }
                }
            }
        }
        return out
    }

    /// A regular file (not followed through a symlink) as an entry.
    private static func entry(_ path: String) -> Entry? {
        var st = stat()
        guard Syscalls.lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return Entry(path: path, size: Int64(st.st_size), lastUseNs: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec))
    }

    /// Removes verified parts, least recently used first, until at most `target` bytes of them
    /// are left. A part that cannot be removed still counts as kept. A part being read stays
    /// readable: readers hold it open.
    @discardableResult
    public func evictLeastRecentlyUsed(downTo target: Int64) -> (removed: Int, freed: Int64, kept: Int64) {
        Self.evict(entries(), downTo: target)
    }

    private static func evict(_ parts: [Entry], downTo target: Int64) -> (removed: Int, freed: Int64, kept: Int64) {
        var kept = parts.reduce(Int64(0)) { $0 + $1.size }
        guard kept > target else { return (0, 0, kept) }
        let list = parts.sorted { $0.lastUseNs < $1.lastUseNs }
        var removed = 0
        var freed: Int64 = 0
        for e in list where kept > target {
            if Syscalls.unlink(e.path) == 0 {
                removed += 1
                freed += e.size
                kept -= e.size
            }
        }
        return (removed, freed, kept)
    }
}

/// Names in a directory (without . and ..); empty if it cannot be read.
func listDirectory(_ path: String) -> [String] {
    guard let d = opendir(path) else { return [] }
    defer { closedir(d) }
    var out: [String] = []
    while let e = readdir(d) {
        let name = RawNames.name(of: e)
        if name != "." && name != ".." { out.append(name) }
    }
    return out
}
