#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import JigdoFormat

/// `ls`-style presentation of entries (used by `jigdofs ls`; kept here so it is testable).
public enum ISOListing {
    /// `drwxr-xr-x`-style mode string, including setuid/setgid/sticky.
    public static func modeString(_ entry: ISOEntry) -> String {
        let m = entry.mode
        let t: Character
        switch entry.type {
        case .regular: t = "-"
        case .directory: t = "d"
        case .symlink: t = "l"
        case .characterDevice: t = "c"
        case .blockDevice: t = "b"
        case .fifo: t = "p"
        case .socket: t = "s"
        }
        var s = [t]
        let special: [(UInt32, Character, Character)] = [(0o4000, "s", "S"), (0o2000, "s", "S"), (0o1000, "t", "T")]
        for (i, shift) in [6, 3, 0].enumerated() {
            let bits = (m >> UInt32(shift)) & 7
            s.append(bits & 4 != 0 ? "r" : "-")
            s.append(bits & 2 != 0 ? "w" : "-")
            let x = bits & 1 != 0
            let (flag, lower, upper) = special[i]
            if m & flag != 0 { s.append(x ? lower : upper) } else { s.append(x ? "x" : "-") }
        }
        return String(s)
    }

    /// Local time as `YYYY-MM-DD HH:MM` (ls --time-style=long-iso).
    public static func timeString(_ seconds: Int64) -> String {
        var t = time_t(seconds)
        var parts = tm()
        guard localtime_r(&t, &parts) != nil else { return "?" }
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday)) \(two(parts.tm_hour)):\(two(parts.tm_min))"
    }

    /// Entries sorted by name (byte order, as `LC_ALL=C ls`).
    public static func sorted(_ entries: [ISOEntry]) -> [ISOEntry] {
        entries.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
    }

    /// One line per entry: the name, or with `long` the `ls -l` columns aligned like ls does.
    /// Names and symlink targets are shown as `ls -b` shows them (`RawNames.printableName`:
    /// control characters as `\xHH`, a backslash as `\\`).
    public static func lines(_ entries: [ISOEntry], long: Bool) -> [String] {
        guard long else { return entries.map { RawNames.printableName($0.name) } }
        let links = entries.map { String($0.links) }
        let uids = entries.map { String($0.uid) }
        let gids = entries.map { String($0.gid) }
        let sizes = entries.map { e -> String in
            if let d = e.device, e.type == .characterDevice || e.type == .blockDevice {
                return "\(d.major), \(d.minor)"
            }
            return String(e.size)
        }
        func w(_ a: [String]) -> Int { a.map(\.count).max() ?? 0 }
        func pad(_ s: String, _ width: Int, right: Bool = true) -> String {
            let fill = String(repeating: " ", count: max(0, width - s.count))
            return right ? fill + s : s + fill
        }
        let (wl, wu, wg, ws) = (w(links), w(uids), w(gids), w(sizes))
        return entries.indices.map { i in
            let e = entries[i]
            var line = "\(modeString(e)) \(pad(links[i], wl)) \(pad(uids[i], wu, right: false)) \(pad(gids[i], wg, right: false)) \(pad(sizes[i], ws)) \(timeString(e.mtime)) \(RawNames.printableName(e.name))"
            if let t = e.symlinkTarget { line += " -> \(RawNames.printableName(t))" }
            return line
        }
    }

    /// Walks the tree under `start` (at `path`) depth-first in name order, like `ls -R`:
    /// `visit(path, directory, children)` for every directory. A directory met twice or a tree
    /// deeper than `maxDepth` is an error, so damaged images cannot make this run forever.
    public static func walk(_ volume: ISO9660Volume, from start: ISOEntry, path: String, maxDepth: Int = 256,
                            _ visit: (String, ISOEntry, [ISOEntry]) throws -> Void) throws {
        var seen = Set<Int64>()
        var stack: [(String, ISOEntry, Int)] = [(path, start, 0)]
        while let (p, dir, depth) = stack.popLast() {
            guard seen.insert(dir.id).inserted else {
                throw ISO9660Error(.damaged, image: volume.name, path: p, "directory visited twice: directory records form a loop")
            }
            guard depth <= maxDepth else {
                throw ISO9660Error(.damaged, image: volume.name, path: p, "directory tree deeper than \(maxDepth) levels")
            }
            let children = sorted(try volume.list(dir))
            try visit(p, dir, children)
            for c in children.reversed() where c.isDirectory {
                stack.append((p == "/" ? "/" + c.name : p + "/" + c.name, c, depth + 1))
            }
        }
    }
}
