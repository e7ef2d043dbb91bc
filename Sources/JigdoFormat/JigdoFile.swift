/// A location as written in a .jigdo file, with the directory (local path ending in `/`, or URL
/// ending in `/`) of the file it was written in: relative values resolve against that file,
/// also when it was pulled in by `[Include]`.
public struct JigdoLocation: Sendable, Equatable, Hashable {
    public var value: String
    public var base: String

    public init(value: String, base: String) {
        self.value = value
        self.base = base
    }
}

/// The `[Image]` section (only the first one of a file counts).
public struct JigdoImageSection: Sendable, Equatable {
    public var filename: String
    public var template: JigdoLocation
    public var templateChecksums: [ChecksumKind: Checksum]
    public var shortInfo: String?
    public var info: String?
}

/// A parsed .jigdo file: image metadata, parts and servers, includes already merged.
public struct JigdoDescriptor: Sendable {
    /// The path of the main .jigdo file, as given.
    public var path: String
    /// `[Jigdo] Version`, e.g. "1.2" or "2.0".
    public var version: String
    public var generator: String?
    public var image: JigdoImageSection
    /// Checksum (jigdo Base64 text) -> alternative locations, in file order.
    public var parts: [String: [JigdoLocation]]
    /// Label -> alternative server values, in file order.
    public var servers: [String: [JigdoLocation]]
    /// Every file read, main file first.
    public var files: [String]

    /// The checksum algorithm implied by the format version (1.x: MD5, 2.x: SHA256).
    public var checksumKind: ChecksumKind {
        version.hasPrefix("2") ? .sha256 : .md5
    }

    /// Files larger than this are not read as .jigdo files.
    public static let maxFileSize: Int64 = 64 << 20

    /// Reads a .jigdo file (plain or gzip), following local `[Include]` directives.
    public static func load(path: String) throws -> JigdoDescriptor {
        var parser = JigdoParser()
        try parser.parseFile(path: path, stack: [])
        return try parser.finish(mainPath: path)
    }

    /// Reads a local copy of a .jigdo that was fetched from `baseURL` (a URL ending in `/`):
    /// relative locations and the template resolve against the URL, not the local directory.
    public static func load(path: String, baseURL: String) throws -> JigdoDescriptor {
        var parser = JigdoParser()
        parser.remoteBase = baseURL
        try parser.parseFile(path: path, stack: [])
        return try parser.finish(mainPath: path)
    }

    /// Parses .jigdo text that lives in directory `base` (used by tests and by `load`).
    public static func parse(text: String, path: String, base: String) throws -> JigdoDescriptor {
        var parser = JigdoParser()
        try parser.parseText(text, path: path, base: base, stack: [path])
        return try parser.finish(mainPath: path)
    }
}

struct JigdoParser {
    private enum Section { case none, jigdo, image, parts, servers, comment, other }

    var version: String?
    var generator: String?
    var image: JigdoImageSection?
    var imageSectionsSeen = 0
    var parts: [String: [JigdoLocation]] = [:]
    var servers: [String: [JigdoLocation]] = [:]
    var files: [String] = []
    /// Set for a .jigdo fetched from a server: the URL directory it came from.
    var remoteBase: String?

    mutating func parseFile(path: String, stack: [String]) throws {
        let canonical = canonicalPath(path)
        if stack.contains(canonical) {
            let chain = (stack + [canonical]).joined(separator: " -> ")
            throw JigdoError(.syntax, path: path, "[Include] loop: \(chain)")
        }
        let file = try ReadOnlyFile(path: path)
        // The largest real .jigdo files (Debian Blu-ray sets) are a few MB; refusing anything huge
        // keeps a mistaken SOURCE (an ISO, a disk) from being read whole into memory.
        guard file.size <= JigdoDescriptor.maxFileSize else {
            throw JigdoError(.syntax, path: path, "not a .jigdo file (\(file.size) bytes; .jigdo files are at most \(JigdoDescriptor.maxFileSize >> 20) MiB)")
        }
        let raw = try file.readAll()
        let bytes: [UInt8]
        do {
            bytes = try Decompression.gunzipConcatenated(raw, limit: Int(JigdoDescriptor.maxFileSize) * 4)
        } catch {
            throw JigdoError(.syntax, path: path, "not a readable .jigdo file: \(error)")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw JigdoError(.syntax, path: path, "not a .jigdo file (not UTF-8 text)")
        }
        try parseText(text, path: path, base: remoteBase ?? directoryOf(absolutePath(path)), stack: stack + [canonical])
    }

    mutating func parseText(_ text: String, path: String, base: String, stack: [String]) throws {
        files.append(path)
        var section = Section.none
        // Only the first [Image] section of all files counts; its entries are collected here.
        var collectingImage = false
        var pendingImage: [String: (value: Substring, line: Int)] = [:]

        func flushImage() throws {
            guard collectingImage else { return }
            collectingImage = false
            image = try makeImageSection(pendingImage, path: path, base: base)
        }

        var lineNumber = 0
        // "\r\n" is a single Character in Swift, so CRLF line ends need their own separator.
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNumber += 1
            var line = rawLine
            if line.last == "\r" { line = line.dropLast() }
            let trimmed = line.trimmingBlanks()
            if section == .comment && !trimmed.hasPrefix("[") { continue }
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            if trimmed.hasPrefix("[") {
                guard let close = trimmed.lastIndex(of: "]") else {
                    throw JigdoError(.syntax, path: path, "line \(lineNumber): section line without ']'")
                }
                let name = trimmed[trimmed.index(after: trimmed.startIndex)..<close].trimmingBlanks()
                try flushImage()
                if name.hasPrefix("Include") && (name.count == 7 || name.dropFirst(7).first == " " || name.dropFirst(7).first == "\t") {
                    let target = name.dropFirst(7).trimmingBlanks()
                    if target.isEmpty {
                        throw JigdoError(.syntax, path: path, "line \(lineNumber): [Include] without a file name")
                    }
                    try include(String(target), from: path, base: base, stack: stack, line: lineNumber)
                    section = .none
                    continue
                }
                switch name {
                case "Jigdo": section = .jigdo
                case "Image":
                    section = .image
                    imageSectionsSeen += 1
                    collectingImage = imageSectionsSeen == 1
                    pendingImage = [:]
                case "Parts": section = .parts
                case "Servers": section = .servers
                case "Comment", "comment": section = .comment
                default: section = .other
                }
                continue
            }
            guard let eq = trimmed.firstIndex(of: "=") else {
                if section == .none || section == .other { continue }
                throw JigdoError(.syntax, path: path, "line \(lineNumber): expected 'Label=Value', got '\(trimmed.prefix(80))'")
            }
            let label = trimmed[..<eq].trimmingBlanks()
            let value = trimmed[trimmed.index(after: eq)...].trimmingBlanks()
            switch section {
            case .jigdo:
                let words = try split(value, path: path, line: lineNumber)
                if label == "Version", version == nil {
                    version = words.joined
                    try checkVersion(words.joined, path: path, line: lineNumber)
                } else if label == "Generator", generator == nil {
                    generator = words.joined
                }
            case .image:
                if collectingImage && pendingImage[String(label)] == nil {
                    pendingImage[String(label)] = (value, lineNumber)
                }
            case .parts:
                let words = try split(value, path: path, line: lineNumber)
                guard JigdoBase64.decodeChecksum(label) != nil else {
                    throw JigdoError(.syntax, path: path, "line \(lineNumber): '\(label)' is not an MD5 or SHA256 checksum in jigdo's Base64")
                }
                guard !words.words.isEmpty else {
                    throw JigdoError(.syntax, path: path, "line \(lineNumber): part \(label) has no location")
                }
                parts[String(label), default: []].append(JigdoLocation(value: words.joined, base: base))
            case .servers:
                let words = try split(value, path: path, line: lineNumber)
                guard !label.isEmpty, !words.words.isEmpty else {
                    throw JigdoError(.syntax, path: path, "line \(lineNumber): server entry needs 'Label=location'")
                }
                servers[String(label), default: []].append(JigdoLocation(value: words.joined, base: base))
            case .none, .other, .comment:
                continue
            }
        }
        try flushImage()
    }

    private func checkVersion(_ version: String, path: String, line: Int) throws {
        let major = version.split(separator: ".").first.flatMap { Int($0) }
        guard let major else {
            throw JigdoError(.syntax, path: path, "line \(line): [Jigdo] Version '\(version)' is not of the form MAJOR.MINOR")
        }
        guard major == 1 || major == 2 else {
            throw JigdoError(.unsupportedVersion, path: path, "jigdo format version \(version) is not supported (this program reads 1.x with MD5 and 2.x with SHA256)")
        }
    }

    private func split(_ value: Substring, path: String, line: Int) throws -> ValueWords {
        do {
            return try ValueWords.split(value)
        } catch .unterminatedQuote(let q) {
            throw JigdoError(.syntax, path: path, "line \(line): unterminated \(q) quote")
        } catch {
            throw JigdoError(.syntax, path: path, "line \(line): backslash at end of line")
        }
    }

    private func makeImageSection(_ entries: [String: (value: Substring, line: Int)], path: String, base: String) throws -> JigdoImageSection {
        func words(_ key: String) throws -> String? {
            guard let e = entries[key] else { return nil }
            return try split(e.value, path: path, line: e.line).joined
        }
        guard let filename = try words("Filename"), !filename.isEmpty else {
            throw JigdoError(.syntax, path: path, "[Image] has no Filename entry")
        }
        guard let template = try words("Template"), !template.isEmpty else {
            throw JigdoError(.syntax, path: path, "[Image] has no Template entry")
        }
        var sums: [ChecksumKind: Checksum] = [:]
        for kind in ChecksumKind.allCases {
            let key = "Template-\(kind.labelPrefix)"
            guard let text = try words(key) else { continue }
            guard let sum = JigdoBase64.decodeChecksum(text), sum.kind == kind else {
                throw JigdoError(.syntax, path: path, "line \(entries[key]!.line): \(key) '\(text)' is not a valid \(kind.rawValue) checksum")
            }
            sums[kind] = sum
        }
        return JigdoImageSection(
            filename: filename,
            template: JigdoLocation(value: template, base: base),
            templateChecksums: sums,
            shortInfo: entries["ShortInfo"].map { String($0.value) },
            info: entries["Info"].map { String($0.value) }
        )
    }

    private mutating func include(_ target: String, from path: String, base: String, stack: [String], line: Int) throws {
        if remoteBase != nil {
            // A remote .jigdo must not make us read local files.
            throw JigdoError(.syntax, path: path, "line \(line): [Include \(target)] in a .jigdo fetched from a server is not supported yet")
        }
        if let scheme = uriScheme(of: target), scheme != "file" {
            throw JigdoError(.syntax, path: path, "line \(line): [Include \(target)]: including remote files is not supported yet; download it and include the local copy")
        }
        var local = target
        if local.hasPrefix("file://") { local = String(local.dropFirst(7)) } else if local.hasPrefix("file:") { local = String(local.dropFirst(5)) }
        local = local.replacingPercentEscapes()
        let resolved = local.hasPrefix("/") ? local : base + local
        if !fileExists(resolved) {
            throw JigdoError(.syntax, path: path, "line \(line): [Include] file not found: \(resolved)")
        }
        try parseFile(path: resolved, stack: stack)
    }

    func finish(mainPath: String) throws -> JigdoDescriptor {
        guard let image else {
            throw JigdoError(.syntax, path: mainPath, "no [Image] section: is this a .jigdo file?")
        }
        return JigdoDescriptor(
            path: mainPath, version: version ?? "1.0", generator: generator, image: image,
            parts: parts, servers: servers, files: files
        )
    }
}

extension Substring {
    func trimmingBlanks() -> Substring {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return s
    }
}

extension String {
    /// Decodes `%XX` escapes (jigdo-file(1) asks for `%20` and `%5D` in `[Include]` names).
    func replacingPercentEscapes() -> String {
        guard contains("%") else { return self }
        var out = [UInt8]()
        let bytes = Array(utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "%"), i + 2 < bytes.count,
               let v = UInt8(String(decoding: bytes[(i + 1)...(i + 2)], as: UTF8.self), radix: 16) {
                out.append(v)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
