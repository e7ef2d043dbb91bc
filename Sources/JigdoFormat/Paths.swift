#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The URI scheme of `value` (`http`, `file`, ...) if it starts with one that is a known
/// download scheme; `Label:path` values are not URIs.
public func uriScheme(of value: String) -> String? {
    // Compared byte-wise, ASCII case folded: an array literal and a lowercased copy were made
    // for every location of every part.
    let u = value.utf8
    guard let colon = u.firstIndex(of: UInt8(ascii: ":")) else { return nil }
    let name = u[..<colon]
    func isScheme(_ scheme: StaticString) -> Bool {
        guard name.count == scheme.utf8CodeUnitCount else { return false }
        var i = 0
        for b in name {
            let lower: UInt8 = b >= 65 && b <= 90 ? b | 0x20 : b
            if lower != scheme.utf8Start[i] { return false }
            i += 1
        }
        return true
    }
    if isScheme("http") { return "http" }
    if isScheme("https") { return "https" }
    if isScheme("ftp") { return "ftp" }
    if isScheme("file") { return "file" }
    return nil
}

public func isRemoteURL(_ value: String) -> Bool {
    guard let s = uriScheme(of: value) else { return false }
    return s != "file"
}

/// Absolute form of a local path (relative to the working directory), without resolving links.
public func absolutePath(_ path: String) -> String {
    if path.hasPrefix("/") { return normalizePath(path) }
    var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    guard getcwd(&buf, buf.count) != nil else { return path }
    let cwd = String(cString: buf)
    return normalizePath(cwd + "/" + path)
}

/// Removes `.`, `..` and repeated slashes, lexically.
public func normalizePath(_ path: String) -> String {
    var parts: [Substring] = []
    for c in path.split(separator: "/", omittingEmptySubsequences: true) {
        if c == "." { continue }
        if c == ".." { if !parts.isEmpty { parts.removeLast() }; continue }
        parts.append(c)
    }
    let joined = parts.joined(separator: "/")
    let trailing = path.hasSuffix("/") && !parts.isEmpty ? "/" : ""
    return (path.hasPrefix("/") ? "/" : "") + joined + trailing
}

/// The directory containing `path`, with a trailing slash.
public func directoryOf(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "./" }
    return String(path[...slash])
}

/// The last component of a path or URL.
public func baseName(_ path: String) -> String {
    var p = Substring(path)
    while p.hasSuffix("/") { p = p.dropLast() }
    if let slash = p.lastIndex(of: "/") { return String(p[p.index(after: slash)...]) }
    return String(p)
}

/// The real path of a file (links resolved), or its absolute path if it does not exist.
public func canonicalPath(_ path: String) -> String {
    guard let r = realpath(path, nil) else { return absolutePath(path) }
    defer { free(r) }
    return String(cString: r)
}

public func fileExists(_ path: String) -> Bool {
    var st = stat()
    return RawNames.withFileSystemPath(path) { Syscalls.stat($0, &st) } == 0
}

public func isDirectory(_ path: String) -> Bool {
    var st = stat()
    return Syscalls.stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
}

// Confinement: a location `Label:path` whose label is a local directory (`--map`, a `file:`
// server) must stay inside that directory. Checked when the label is expanded: `path` itself
// (no `..` above its start, not absolute), before the lexical normalisation hides it, and the
// whole joined location, normalised, under the directory the chain started from (pieces that
// stay inside alone can spell `..` together: `Dot=Mirror:.` then `Dot:./x`; see
// `LocationResolver`); and, before a file is opened, the file's real path (links resolved)
// against the directory's real path (see `LocalParts`).

/// Whether `path`, appended to a directory, names something inside it: relative, no `..`
/// climbing above where it starts, no NUL.
public func staysInsideDirectory<Path: StringProtocol>(_ path: Path) -> Bool {
    // Local lookups decode %XX once (Fedora's %2b), so %2e%2e must count as "..": the decoded
    // path is checked too, once (what it decodes to is a name, not decoded again).
    if path.utf8.contains(UInt8(ascii: "%")) {
        let text = String(path)
        let decoded = text.replacingPercentEscapes()
        if decoded != text, !staysInsideLexically(decoded) { return false }
    }
    return staysInsideLexically(path)
}

/// `staysInsideDirectory` of the path as it is, %XX not decoded.
private func staysInsideLexically<Path: StringProtocol>(_ path: Path) -> Bool {
    if path.utf8.first == UInt8(ascii: "/") || path.utf8.contains(0) { return false }
    // Component by component over the bytes (splitting made an array a location).
    var depth = 0
    var length = 0, dots = 0
    func endComponent() -> Bool {
        defer { length = 0; dots = 0 }
        if length == 0 || (length == 1 && dots == 1) { return true }
        if length == 2 && dots == 2 {
            depth -= 1
            return depth >= 0
        }
        depth += 1
        return true
    }
    for b in path.utf8 {
        if b == UInt8(ascii: "/") {
            if !endComponent() { return false }
        } else {
            length += 1
            if b == UInt8(ascii: ".") { dots += 1 }
        }
    }
    return endComponent()
}

/// The local locations among `locations` are dropped when `rest` (the part of a location
/// after its label) would leave the label's directory; remote ones are kept (a server resolves
/// its own paths, and no local file is involved).
public func confinedToDirectory(_ locations: [ResolvedLocation], rest: String) -> [ResolvedLocation] {
    if staysInsideDirectory(rest) { return locations }
    return locations.filter { if case .remote = $0 { return true } else { return false } }
}

/// `path` with every link resolved, if that is inside `directory` (itself resolved too); nil
/// if it is outside or does not exist. Only lstat/readlink are used: nothing is opened.
public func realPath(_ path: String, inside directory: String) -> String? {
    // Names from a .jigdo may hold raw (non-UTF-8) bytes: the system sees those bytes.
    guard let real = RawNames.withFileSystemPath(path, { realpath($0, nil) }) else { return nil }
    defer { free(real) }
    guard let realDir = RawNames.withFileSystemPath(directory, { realpath($0, nil) }) else { return nil }
    defer { free(realDir) }
    func text(_ c: UnsafeMutablePointer<CChar>) -> String {
        RawNames.decode(UnsafeRawBufferPointer(start: c, count: strlen(c)).map { $0 }).text
    }
    let p = text(real)
    var d = text(realDir)
    if !d.hasSuffix("/") { d += "/" }
    return p.hasPrefix(d) ? p : nil
}

/// The directory a server value names locally (`file:/srv/mirror/`, or a relative value of a
/// local file with absolute `base`), with a trailing slash; nil for URLs and labels.
public func localDirectory(ofServerValue value: String, base: String) -> String? {
    var path: String
    switch uriScheme(of: value) {
    case "file"?:
        path = String(value.dropFirst(5))
        if path.hasPrefix("//") {
            let afterHost = path.dropFirst(2)
            path = afterHost.firstIndex(of: "/").map { String(afterHost[$0...]) } ?? "/"
        }
        // As `LocationResolver` reads a file: value: %XX decoded once.
        path = path.replacingPercentEscapes()
        if !path.hasPrefix("/") {
            guard base.hasPrefix("/") else { return nil }
            path = base + path
        }
    case nil:
        if let colon = value.firstIndex(of: ":"), colon != value.startIndex, !value[..<colon].contains("/") { return nil }
        guard base.hasPrefix("/") else { return nil }
        let decoded = value.replacingPercentEscapes()
        path = decoded.hasPrefix("/") ? decoded : base + decoded
    default:
        return nil
    }
    return directoryOf(normalizePath(path))
}

/// The `file:` server value of the local directory `path` (`--map`, a plain `--server`), as
/// `localDirectory(ofServerValue:)` and `LocationResolver` read it back: a `file:` value has
/// its %XX decoded once, so a % in the name is written %25.
public func fileServerValue(ofDirectory path: String) -> String {
    "file:" + path.split(separator: "%", omittingEmptySubsequences: false).joined(separator: "%25")
}
