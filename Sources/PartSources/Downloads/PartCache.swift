#if canImport(Glibc)
import Glibc
#endif
import JigdoFormat

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

    /// Creates the directory layout if needed.
    public init(directory: String) throws {
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

    /// Whether the verified part is in the cache (its size is checked; its bytes were checked
    /// before it was renamed in).
    public func contains(_ sum: Checksum, length: Int64) -> Bool {
        fileSize(path(for: sum)) == length
    }

    /// Moves a verified partial file into the cache.
    public func commit(partial: String, as sum: Checksum) throws {
        let target = path(for: sum)
        try makeDirectories(directoryOf(target))
        if rename(partial, target) != 0 {
            throw JigdoError(.io, path: target, "cannot move the downloaded part into the cache: \(errnoText(errno))")
        }
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
