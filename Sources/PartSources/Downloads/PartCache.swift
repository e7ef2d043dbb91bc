#if canImport(Glibc)
import Glibc
#endif
import JigdoFormat
import Synchronization

/// The content-addressed store of downloaded parts under a cache directory:
///
///     <dir>/parts/<kind>/<first 2 chars of b64>/<b64>   verified parts (renamed in when complete)
///     <dir>/partial/<kind>/<b64>                         downloads in progress, resumable
///     <dir>/sources/...                                  fetched .jigdo and .template files
///
/// A file appears under `parts/` only by `rename` after its checksum matched, so a crash never
/// leaves a corrupt part there. The cache may be shared by several processes.
public final class PartCache: Sendable {
    public let directory: String
    /// Upper bound of the bytes under `parts/` (`--cache-size`); nil: unbounded.
    public let sizeLimit: Int64?
    /// Bytes under `parts/` as far as this process knows (nil until first counted).
    private let knownSize = Mutex<Int64?>(nil)

    /// Creates the directory layout if needed.
    public init(directory: String, sizeLimit: Int64? = nil) throws {
        self.sizeLimit = sizeLimit
        var dir = absolutePath(directory)
        if dir.hasSuffix("/") && dir.count > 1 { dir.removeLast() }
        self.directory = dir
        for kind in ChecksumKind.allCases {
            try makeDirectories(dir + "/parts/" + kind.rawValue.lowercased())
            try makeDirectories(dir + "/partial/" + kind.rawValue.lowercased())
        }
    }

    /// The default cache directory: `$XDG_CACHE_HOME/jigdofs`, else `~/.cache/jigdofs`.
    public static func defaultDirectory(environment: [String: String]) -> String {
        if let x = environment["XDG_CACHE_HOME"], x.hasPrefix("/") { return x + "/jigdofs" }
        let home = environment["HOME"] ?? "/tmp"
        return home + "/.cache/jigdofs"
    }

    private func kindDirectory(_ sum: Checksum) -> String {
        (sum.kind ?? .md5).rawValue.lowercased()
    }

    /// Where the verified part with this checksum lives (whether or not it is there yet).
    public func path(for sum: Checksum) -> String {
        let b64 = sum.base64
        return "\(directory)/parts/\(kindDirectory(sum))/\(b64.prefix(2))/\(b64)"
    }

    /// The resumable download file of a part (named by checksum, so a restart finds it).
    public func partialPath(for sum: Checksum) -> String {
        "\(directory)/partial/\(kindDirectory(sum))/\(sum.base64)"
    }

    /// Takes the lock of a part's partial file (creating it if needed) for one whole download
    /// (transfers, check, rename), so processes sharing the cache never write the same partial
    /// file at once. Returns the descriptor holding the lock (close it to release), or nil when
    /// another process holds it.
    public func lockPartial(for sum: Checksum) throws -> Int32? {
        let path = partialPath(for: sum)
        let fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw JigdoError(.io, path: path, "cannot open: \(errnoText(errno))")
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            close(fd)
            return nil
        }
        return fd
    }

    /// Whether the verified part is in the cache (its size is checked; its bytes were checked
    /// before it was renamed in).
    public func contains(_ sum: Checksum, length: Int64) -> Bool {
        fileSize(path(for: sum)) == length
    }

    /// Moves a verified partial file into the cache.
    public func commit(partial: String, as sum: Checksum) throws {
        let target = path(for: sum)
        // Only the prefix directory is made here: a cache directory removed meanwhile is not
        // brought back.
        let prefixDir = String(directoryOf(target).dropLast())
        if mkdir(prefixDir, 0o755) != 0 && errno != EEXIST {
            throw JigdoError(.io, path: prefixDir, "cannot create directory: \(errnoText(errno))")
        }
        if rename(partial, target) != 0 {
            throw JigdoError(.io, path: target, "cannot move the downloaded part into the cache: \(errnoText(errno))")
        }
    }

    /// Marks a cached part as just used (its mtime orders least-recently-used eviction).
    public func touch(_ sum: Checksum) {
        _ = utimensat(AT_FDCWD, path(for: sum), nil, 0)
    }

    /// Every verified part in the cache: path, size, last use (ns since the epoch).
    public func entries() -> [(path: String, size: Int64, lastUse: Int64)] {
        var out: [(String, Int64, Int64)] = []
        for kind in ChecksumKind.allCases {
            let base = directory + "/parts/" + kind.rawValue.lowercased()
            for prefix in listDirectory(base) {
                for name in listDirectory(base + "/" + prefix) {
                    let p = base + "/" + prefix + "/" + name
                    var st = stat()
                    guard stat(p, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
                    out.append((p, Int64(st.st_size), Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)))
                }
            }
        }
        return out
    }

    /// Partial downloads: path, size, last write.
    public func partialEntries() -> [(path: String, size: Int64, lastUse: Int64)] {
        var out: [(String, Int64, Int64)] = []
        for kind in ChecksumKind.allCases {
            let base = directory + "/partial/" + kind.rawValue.lowercased()
            for name in listDirectory(base) {
                let p = base + "/" + name
                var st = stat()
                guard stat(p, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
                out.append((p, Int64(st.st_size), Int64(st.st_mtim.tv_sec)))
            }
        }
        return out
    }

    /// Accounts a part just added; when the cache is over its limit, removes the least recently
    /// used parts down to 90% of it. A part being read stays readable: readers hold it open.
    public func noteAdded(bytes: Int64) {
        guard let limit = sizeLimit else { return }
        let over = knownSize.withLock { known -> Bool in
            guard let k = known else { return true }
            known = k + bytes
            return k + bytes > limit
        }
        guard over else { return }
        var list = entries()
        var total = list.reduce(Int64(0)) { $0 + $1.size }
        if total > limit {
            list.sort { $0.lastUse < $1.lastUse }
            let target = limit / 10 * 9
            for e in list where total > target {
                if unlink(e.path) == 0 { total -= e.size }
            }
        }
        knownSize.withLock { $0 = total }
    }

    /// A directory for fetched .jigdo/.template files of one source URL.
    public func sourceDirectory(forURL url: String) throws -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in url.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        let name = String(h, radix: 16)
        let dir = "\(directory)/sources/\(name)"
        try makeDirectories(dir)
        return dir
    }
}

/// `mkdir -p`.
func makeDirectories(_ path: String) throws {
    var current = path.hasPrefix("/") ? "" : "."
    for component in path.split(separator: "/") {
        current += "/" + component
        if mkdir(current, 0o755) != 0 && errno != EEXIST {
            throw JigdoError(.io, path: current, "cannot create directory: \(errnoText(errno))")
        }
    }
    guard isDirectory(path) else {
        throw JigdoError(.io, path: path, "is not a directory")
    }
}

/// Names in a directory (without . and ..); empty if it cannot be read.
func listDirectory(_ path: String) -> [String] {
    guard let d = opendir(path) else { return [] }
    defer { closedir(d) }
    var out: [String] = []
    while let e = readdir(d) {
        let name = withUnsafePointer(to: e.pointee.d_name) {
            $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
        }
        if name != "." && name != ".." { out.append(name) }
    }
    return out
}
