/// Where a part (or the template) can be fetched from, after label expansion.
public enum ResolvedLocation: Hashable, Sendable, CustomStringConvertible {
    /// An absolute local path (from a `file:` URI, a relative path of a local .jigdo, or `--map`).
    case local(String)
    /// An http, https or ftp URL.
    case remote(String)

    public var description: String {
        switch self {
        case .local(let p): return p
        case .remote(let u): return u
        }
    }
}

/// Expands `[Parts]` and `[Servers]` entries into concrete locations: label chains,
/// alternatives in order, `MD5Sum:`/`SHA256Sum:` fallback labels, and the user's overrides.
public struct LocationResolver: Sendable {
    public let descriptor: JigdoDescriptor
    /// Label -> locations tried before the jigdo's own (`--map LABEL=DIR`).
    public var prepend: [String: [JigdoLocation]] = [:]
    /// Label -> locations used instead of the jigdo's own (`--server LABEL=URL`).
    public var replace: [String: [JigdoLocation]] = [:]
    /// Label -> locations tried after the jigdo's own (`--mirror LABEL=URL`).
    public var append: [String: [JigdoLocation]] = [:]
    /// Whether `file:` and relative local locations written in the jigdo are honoured; false
    /// for a .jigdo fetched from a server, which must not make us read local files.
    public var allowLocalFromJigdo = true

    /// Label chains deeper than this are treated as loops.
    static let maxDepth = 16

    public init(descriptor: JigdoDescriptor) {
        self.descriptor = descriptor
    }

    /// Server values for a label, with overrides applied, in the order they are tried.
    public func serverEntries(for label: String) -> [JigdoLocation] {
        (prepend[label] ?? []) + (replace[label] ?? descriptor.servers[label] ?? []) + (append[label] ?? [])
    }

    private func hasLabel(_ label: String) -> Bool {
        prepend[label] != nil || replace[label] != nil || append[label] != nil || descriptor.servers[label] != nil
    }

    /// Every location of a part, in the order to try them, duplicates removed.
    public func locations(forPart checksum: Checksum) -> [ResolvedLocation] {
        let key = checksum.base64
        var out: [ResolvedLocation] = []
        if let entries = descriptor.parts[key] {
            for e in entries { out += resolve(e) }
        }
        if let kind = checksum.kind {
            let fallbackLabel = kind.labelPrefix
            if hasLabel(fallbackLabel) || out.isEmpty {
                out += resolve(JigdoLocation(value: "\(fallbackLabel):\(key)", base: descriptor.image.template.base))
            }
        }
        var seen = Set<ResolvedLocation>()
        return out.filter { seen.insert($0).inserted }
    }

    /// Expands one location value.
    public func resolve(_ location: JigdoLocation) -> [ResolvedLocation] {
        expand(location.value, base: location.base, fromJigdo: true, depth: 0)
    }

    private func expand(_ value: String, base: String, fromJigdo: Bool, depth: Int) -> [ResolvedLocation] {
        if depth > Self.maxDepth { return [] }
        if let colon = value.firstIndex(of: ":") {
            let label = String(value[..<colon])
            let rest = String(value[value.index(after: colon)...])
            if !label.isEmpty, !label.contains("/"), hasLabel(label) {
                var out: [ResolvedLocation] = []
                let user = Set((prepend[label] ?? []) + (replace[label] ?? []) + (append[label] ?? []))
                for server in serverEntries(for: label) {
                    // No local location leaves its label's directory (see Paths.swift).
                    out += confinedToDirectory(expand(server.value + rest, base: server.base, fromJigdo: !user.contains(server), depth: depth + 1), rest: rest)
                }
                return out
            }
        }
        let localAllowed = !fromJigdo || allowLocalFromJigdo
        switch uriScheme(of: value) {
        case "file"?:
            guard localAllowed else { return [] }
            var path = String(value.dropFirst(5))
            if path.hasPrefix("//") {
                // file://host/path: only the local host is meaningful.
                let afterHost = path.dropFirst(2)
                path = afterHost.firstIndex(of: "/").map { String(afterHost[$0...]) } ?? "/"
            }
            if path.hasPrefix("/") { return [.local(normalizePath(path))] }
            if base.hasPrefix("/") { return [.local(normalizePath(base + path))] }
            return []
        case nil:
            // A value that is neither a known label nor a URI: relative to the file it came from.
            if uriLooksLikeUndefinedLabel(value) { return [] }
            if base.hasPrefix("/") {
                guard localAllowed else { return [] }
                return [.local(normalizePath(value.hasPrefix("/") ? value : base + value))]
            }
            return [.remote(joinURL(base: base, relative: value))]
        default:
            return [.remote(value)]
        }
    }

    /// `Label:path` with a label nobody defined: no location (jigdo-lite also skips it).
    private func uriLooksLikeUndefinedLabel(_ value: String) -> Bool {
        guard let colon = value.firstIndex(of: ":") else { return false }
        let label = value[..<colon]
        return !label.isEmpty && !label.contains("/")
    }
}

/// Resolves `relative` against a URL `base` that ends in `/`.
public func joinURL(base: String, relative: String) -> String {
    if uriScheme(of: relative) != nil { return relative }
    if relative.hasPrefix("/") {
        // Keep scheme://host of the base.
        if let schemeEnd = base.range(of: "://") {
            let afterScheme = base[schemeEnd.upperBound...]
            let hostEnd = afterScheme.firstIndex(of: "/") ?? afterScheme.endIndex
            return String(base[..<hostEnd]) + relative
        }
        return relative
    }
    var b = base
    if !b.hasSuffix("/") { b = directoryOf(b) }
    var r = Substring(relative)
    while r.hasPrefix("./") { r = r.dropFirst(2) }
    while r.hasPrefix("../") {
        r = r.dropFirst(3)
        var trimmed = b.dropLast()
        if let slash = trimmed.lastIndex(of: "/"), !trimmed[..<slash].hasSuffix("/") {
            trimmed = trimmed[...slash]
            b = String(trimmed)
        }
    }
    return b + r
}
