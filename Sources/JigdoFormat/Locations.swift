/// Where a part (or the template) can be fetched from, after label expansion.
public enum ResolvedLocation: Hashable, Sendable, CustomStringConvertible {
    /// An absolute local path (from a `file:` URI, a relative path of a local .jigdo, or `--map`).
    case local(String)
    /// An http, https or ftp URL.
    case remote(String)

    public var description: String {
        switch self {
        case .local(let p): return RawNames.display(p)
        case .remote(let u): return u
        }
    }
}

/// Expands `[Parts]` and `[Servers]` entries into concrete locations: label chains,
/// alternatives, `MD5Sum:`/`SHA256Sum:` fallback labels, and the user's overrides, ordered as
/// jigdo's url-mapping orders them: by descending total weight (`--try-first`/`--try-last`
/// summed along the chain), file order among equals.
///
/// Expansion is bounded for any input: label loops and chains deeper than `maxDepth` are found
/// when the resolver is made (`labelProblem`; a .jigdo with one is refused when loaded), every
/// label and every part expands to at most `maxLocationsPerPart` locations, and the work of
/// expanding all labels is bounded by `maxExpansions` entries and `maxExpansionBytes` bytes
/// (what is cut is the lowest-weighted, and `truncated` says so).
public struct LocationResolver: Sendable {
    public let descriptor: JigdoDescriptor
    /// Label -> locations tried before the jigdo's own of the same weight (`--map LABEL=DIR`).
    public var prepend: [String: [JigdoLocation]] = [:] { didSet { rebuild() } }
    /// Label -> locations used instead of the jigdo's own (`--server LABEL=URL`).
    public var replace: [String: [JigdoLocation]] = [:] { didSet { rebuild() } }
    /// Label -> locations tried after the jigdo's own of the same weight (`--mirror LABEL=URL`).
    public var append: [String: [JigdoLocation]] = [:] { didSet { rebuild() } }
    /// Whether `file:` and relative local locations written in the jigdo are honoured; false
    /// for a .jigdo fetched from a server, which must not make us read local files.
    public var allowLocalFromJigdo = true { didSet { rebuild() } }

    /// Label chains deeper than this are refused.
    public static let maxDepth = 16
    /// No part (and no label) expands to more locations than this.
    public static let maxLocationsPerPart = 64
    /// At most this many `[Parts]` entries of one checksum are expanded.
    public static let maxEntriesPerPart = 64
    /// Bounds of the work of expanding every label once.
    public static let maxExpansions = 100_000
    public static let maxExpansionBytes = 8 << 20

    /// A label's expansion: a value with no label left at its front, to which the rest of a
    /// `Label:rest` value is appended.
    struct Prefix: Sendable, Hashable {
        var value: String
        var base: String
        var weight: Int
        var fromJigdo: Bool
        /// For a local expansion, the directory of the server value the chain started from
        /// (with its trailing slash): every location made from it must lie under it. Checking
        /// each `rest` alone is not enough, because the pieces are joined as text: `Dot=Map:.`
        /// and `Dot:./etc` each stay inside, and together spell `Map/../etc`.
        var root: String?
    }

    private var table: [String: [Prefix]] = [:]
    /// Labels every expansion of which is a URL of a remote scheme (so `Label:rest` is remote
    /// whatever `rest` is): what lets `mayHaveLocalLocation` answer without expanding.
    private var remoteOnlyLabels: Set<String> = []
    /// A label loop or a too deep chain, as a one-line message naming the labels; nil if none.
    public private(set) var labelProblem: String?
    /// Whether some label's expansion was cut by the work bound.
    public private(set) var truncated = false

    public init(descriptor: JigdoDescriptor) {
        self.descriptor = descriptor
        rebuild()
    }

    /// Server values for a label, with overrides applied, in file order (before weights).
    public func serverEntries(for label: String) -> [JigdoLocation] {
        entries(for: label).map(\.location)
    }

    private func entries(for label: String) -> [(location: JigdoLocation, fromJigdo: Bool)] {
        var out: [(JigdoLocation, Bool)] = (prepend[label] ?? []).map { ($0, false) }
        if let r = replace[label] { out += r.map { ($0, false) } } else { out += (descriptor.servers[label] ?? []).map { ($0, true) } }
        out += (append[label] ?? []).map { ($0, false) }
        return out
    }

    private func hasLabel(_ label: String) -> Bool {
        prepend[label] != nil || replace[label] != nil || append[label] != nil || descriptor.servers[label] != nil
    }

    /// `Label:rest` with a defined label.
    private func labelReference(_ value: String) -> (label: String, rest: Substring)? {
        guard let colon = value.firstIndex(of: ":") else { return nil }
        let label = value[..<colon]
        guard !label.isEmpty, !label.contains("/") else { return nil }
        let name = String(label)
        guard hasLabel(name) else { return nil }
        return (name, value[value.index(after: colon)...])
    }

    // MARK: expanding every label once

    private mutating func rebuild() {
        table = [:]
        labelProblem = nil
        truncated = false
        var work = (entries: 0, bytes: 0)
        let labels = Set(descriptor.servers.keys).union(prepend.keys).union(replace.keys).union(append.keys).sorted()
        for label in labels {
            _ = expandLabel(label, stack: [], work: &work)
            if labelProblem != nil { break }
        }
        remoteOnlyLabels = Set(table.filter { $0.value.allSatisfy { isRemoteURL($0.value) } }.keys)
    }

    /// Whether `locations(forPart:)` may hold a local path: false only when each of the part's
    /// `[Parts]` values names a label whose expansions are all remote URLs, and so does the
    /// fallback label where it is used. Expands nothing (a mount asks it for every part).
    public func mayHaveLocalLocation(forPart checksum: Checksum) -> Bool {
        let entries = descriptor.parts.locations(for: checksum) ?? []
        for e in entries.prefix(Self.maxEntriesPerPart) {
            guard let (label, _) = labelReference(e.value), remoteOnlyLabels.contains(label) else { return true }
        }
        if let kind = checksum.kind {
            let fallbackLabel = kind.labelPrefix
            if hasLabel(fallbackLabel) || entries.isEmpty {
                // An undefined fallback label gives no location (see `expand`).
                return hasLabel(fallbackLabel) && !remoteOnlyLabels.contains(fallbackLabel)
            }
        }
        return false
    }

    private mutating func expandLabel(_ label: String, stack: [String], work: inout (entries: Int, bytes: Int)) -> [Prefix] {
        if let done = table[label] { return done }
        if labelProblem != nil { return [] }
        if let i = stack.firstIndex(of: label) {
            let chain = (stack[i...] + [label]).joined(separator: " -> ")
            labelProblem = i == stack.count - 1
                ? "[Servers] label \(RawNames.display(label)) refers to itself (\(RawNames.display(label))=\(RawNames.display(label)):...): label loops are not allowed"
                : "[Servers] label loop: \(RawNames.display(chain)): label loops are not allowed"
            return []
        }
        if stack.count >= Self.maxDepth {
            labelProblem = "[Servers] label chain deeper than \(Self.maxDepth): \((stack + [label]).joined(separator: " -> "))"
            return []
        }
        var out: [Prefix] = []
        for (entry, fromJigdo) in entries(for: label) {
            if let (sub, rest) = labelReference(entry.value) {
                let expanded = expandLabel(sub, stack: stack + [label], work: &work)
                if labelProblem != nil { return [] }
                // No local location leaves its label's directory (see Paths.swift).
                let confined = staysInsideDirectory(rest)
                for t in expanded where confined || !isLocal(t) {
                    let value = t.value + rest
                    work.entries += 1
                    work.bytes += value.utf8.count
                    guard work.entries <= Self.maxExpansions, work.bytes <= Self.maxExpansionBytes else {
                        truncated = true
                        break
                    }
                    out.append(Prefix(value: value, base: t.base, weight: clampWeight(entry.weight + t.weight), fromJigdo: t.fromJigdo, root: t.root))
                }
            } else if let r = terminal(entry.value, base: entry.base, fromJigdo: fromJigdo) {
                work.entries += 1
                work.bytes += entry.value.utf8.count
                var root: String?
                if case .local(let path) = r { root = directoryOf(path) }
                out.append(Prefix(value: entry.value, base: entry.base, weight: entry.weight, fromJigdo: fromJigdo, root: root))
            }
        }
        out = Self.ordered(out.map { ($0, $0.weight) })
        table[label] = out
        return out
    }

    /// Whether `location`, made from an expansion of `root`, names something under it (the
    /// directory itself only if `orIs`): the whole joined path, normalised as it will be opened.
    private func staysUnder(_ root: String?, _ location: ResolvedLocation, orIs: Bool) -> Bool {
        guard let root, case .local(let path) = location else { return true }
        if orIs, path == root || path + "/" == root { return true }
        return path.utf8.count > root.utf8.count && path.utf8.starts(with: root.utf8)
    }

    /// Whether a label's expansion names a local file (a `file:` or path value).
    private func isLocal(_ t: Prefix) -> Bool {
        if case .remote? = terminal(t.value, base: t.base, fromJigdo: t.fromJigdo) { return false }
        return true
    }

    private func clampWeight(_ w: Int) -> Int { max(-ValueWords.maxWeight * 32, min(ValueWords.maxWeight * 32, w)) }

    /// Stable by descending weight, duplicates removed, at most `maxLocationsPerPart`.
    private static func ordered<T: Hashable>(_ items: [(T, Int)]) -> [T] {
        let sorted = items.enumerated().sorted { a, b in
            a.element.1 != b.element.1 ? a.element.1 > b.element.1 : a.offset < b.offset
        }
        var seen = Set<T>()
        var out: [T] = []
        for (_, (item, _)) in sorted where seen.insert(item).inserted {
            out.append(item)
            if out.count == maxLocationsPerPart { break }
        }
        return out
    }

    // MARK: locations

    /// Every location of a part, in the order to try them, duplicates removed.
    public func locations(forPart checksum: Checksum) -> [ResolvedLocation] {
        weightedLocations(forPart: checksum).map(\.location)
    }

    /// `locations(forPart:)` with each location's total weight.
    public func weightedLocations(forPart checksum: Checksum) -> [(location: ResolvedLocation, weight: Int)] {
        let key = checksum.base64
        var out: [(ResolvedLocation, Int)] = []
        for e in (descriptor.parts.locations(for: checksum) ?? []).prefix(Self.maxEntriesPerPart) {
            expand(e, fromJigdo: true, into: &out)
        }
        if let kind = checksum.kind {
            let fallbackLabel = kind.labelPrefix
            if hasLabel(fallbackLabel) || out.isEmpty {
                expand(JigdoLocation(value: "\(fallbackLabel):\(key)", base: descriptor.image.template.base), fromJigdo: true, into: &out)
            }
        }
        return Self.orderedWeighted(out)
    }

    /// Expands one location value, in the order to try its expansions.
    public func resolve(_ location: JigdoLocation) -> [ResolvedLocation] {
        weightedResolve(location).map(\.location)
    }

    /// `resolve` with each location's total weight. `directory`: `location` names a directory
    /// (`Label:` for what a label stands for), which may then be a mapped directory itself.
    public func weightedResolve(_ location: JigdoLocation, directory: Bool = false) -> [(location: ResolvedLocation, weight: Int)] {
        var out: [(ResolvedLocation, Int)] = []
        expand(location, fromJigdo: true, directory: directory, into: &out)
        return Self.orderedWeighted(out)
    }

    private static func orderedWeighted(_ items: [(ResolvedLocation, Int)]) -> [(location: ResolvedLocation, weight: Int)] {
        // One location (a part at one mirror): nothing to order or merge.
        if items.count <= 1 { return items.map { ($0.0, $0.1) } }
        // The weight of the first (highest) occurrence of each location counts.
        var best: [ResolvedLocation: Int] = [:]
        for (l, w) in items where best[l] == nil || best[l]! < w { best[l] = w }
        return ordered(items).map { ($0, best[$0]!) }
    }

    private func expand(_ location: JigdoLocation, fromJigdo: Bool, directory: Bool = false, into out: inout [(ResolvedLocation, Int)]) {
        if let (label, rest) = labelReference(location.value) {
            // No local location leaves its label's directory (see Paths.swift).
            let confined = staysInsideDirectory(rest)
            for t in table[label] ?? [] where confined || !isLocal(t) {
                if let r = terminal(t.value + rest, base: t.base, fromJigdo: t.fromJigdo), staysUnder(t.root, r, orIs: directory) {
                    out.append((r, clampWeight(location.weight + t.weight)))
                }
            }
        } else if let r = terminal(location.value, base: location.base, fromJigdo: fromJigdo) {
            out.append((r, location.weight))
        }
    }

    /// A value with no defined label at its front, as a location (nil: none, e.g. a local
    /// path from a remote .jigdo, or an undefined label).
    private func terminal(_ value: String, base: String, fromJigdo: Bool) -> ResolvedLocation? {
        let localAllowed = !fromJigdo || allowLocalFromJigdo
        switch uriScheme(of: value) {
        case "file"?:
            guard localAllowed else { return nil }
            var path = String(value.dropFirst(5))
            if path.hasPrefix("//") {
                // file://host/path: only the local host is meaningful.
                let afterHost = path.dropFirst(2)
                path = afterHost.firstIndex(of: "/").map { String(afterHost[$0...]) } ?? "/"
            }
            path = path.replacingPercentEscapes()
            if path.hasPrefix("/") { return .local(normalizePath(path)) }
            if base.hasPrefix("/") { return .local(normalizePath(base + path)) }
            return nil
        case nil:
            // A value that is neither a known label nor a URI: relative to the file it came from.
            if uriLooksLikeUndefinedLabel(value) { return nil }
            if base.hasPrefix("/") {
                guard localAllowed else { return nil }
                let path = value.replacingPercentEscapes()
                return .local(normalizePath(path.hasPrefix("/") ? path : base + path))
            }
            return .remote(RawNames.urlEncoded(joinURL(base: base, relative: value)))
        default:
            return .remote(RawNames.urlEncoded(value))
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
