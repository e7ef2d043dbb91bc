#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The URI scheme of `value` (`http`, `file`, ...) if it starts with one that is a known
/// download scheme; `Label:path` values are not URIs.
public func uriScheme(of value: String) -> String? {
    guard let colon = value.firstIndex(of: ":") else { return nil }
    let scheme = value[..<colon].lowercased()
    return ["http", "https", "ftp", "file"].contains(scheme) ? scheme : nil
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
    return stat(path, &st) == 0
}

public func isDirectory(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
}
