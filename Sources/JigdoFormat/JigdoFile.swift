#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A location as written in a .jigdo file, with the directory (local path ending in `/`, or URL
/// ending in `/`) of the file it was written in: relative values resolve against that file,
/// also when it was pulled in by `[Include]`. `weight` is the sum of the value's
/// `--try-first[=W]` (+W) and `--try-last[=W]` (-W) options.
public struct JigdoLocation: Sendable, Equatable, Hashable {
    public var value: String
    public var base: String
    public var weight: Int

    public init(value: String, base: String, weight: Int = 0) {
        self.value = value
        self.base = base
        self.weight = weight
    }
}

/// One `[Image]` section.
public struct JigdoImageSection: Sendable, Equatable {
    public var filename: String
    public var template: JigdoLocation
    public var templateChecksums: [ChecksumKind: Checksum]
    public var shortInfo: String?
    public var info: String?

    /// The file name users see: the base name of `Filename`, without libjte's `stdio:` prefix
    /// (xorriso writes its output target name there).
    public var name: String {
        var name = filename
        if name.hasPrefix("stdio:") { name.removeFirst(6) }
        return baseName(name)
    }
}

/// A parsed .jigdo file: image metadata, parts and servers, includes already merged.
public struct JigdoDescriptor: Sendable {
    /// The path of the main .jigdo file, as given.
    public var path: String
    /// `[Jigdo] Version`, e.g. "1.2" or "2.0".
    public var version: String
    public var generator: String?
    /// The image this descriptor stands for: the first `[Image]` section, or the one chosen
    /// with `selecting(image:)`.
    public var image: JigdoImageSection
    /// Every `[Image]` section, in file order (`jigdo-file --merge` publishes several).
    public var images: [JigdoImageSection]
    /// Checksum (jigdo Base64 text) -> alternative locations, in file order.
    public var parts: [String: [JigdoLocation]]
    /// Label -> alternative server values, in file order.
    public var servers: [String: [JigdoLocation]]
    /// Every file read, main file first.
    public var files: [String]
    /// What was read but not used (unknown value options, includes that could not be had):
    /// one line each, for the CLI to show once.
    public var warnings: [String]

    /// The checksum algorithm implied by the format version (1.x: MD5, 2.x: SHA256).
    public var checksumKind: ChecksumKind {
        version.hasPrefix("2") ? .sha256 : .md5
    }

    /// Files larger than this are not read as .jigdo files.
    public static let maxFileSize: Int64 = 64 << 20
    /// Location values longer than this are ignored (real ones are paths and URLs); it bounds
    /// what label expansion can build.
    public static let maxValueLength = 16 << 10
    /// At most this many `[Include]`s are read for one .jigdo.
    public static let maxIncludes = 64
    /// At most this many values are kept for one `[Servers]` label or one `[Parts]` checksum
    /// (real files have a handful); more are ignored with one warning, so a hostile file of a
    /// million `Base=...` lines costs neither memory nor expansion work.
    public static let maxValuesPerKey = 256

    /// Fetches an `[Include]`d URL: its bytes (at most `maxFileSize`), or an error.
    public typealias IncludeFetcher = (String) throws -> [UInt8]

    /// Reads a .jigdo file (plain or gzip), following local `[Include]` directives, and remote
    /// ones through `fetch` (without it, a remote include is skipped with a warning).
    public static func load(path: String, fetch: IncludeFetcher? = nil) throws -> JigdoDescriptor {
        var parser = JigdoParser()
        parser.fetch = fetch
        try parser.parseFile(path: path, stack: [])
        return try parser.finish(mainPath: path)
    }

    /// Reads a local copy of a .jigdo that was fetched from `baseURL` (a URL ending in `/`):
    /// relative locations, includes and the template resolve against the URL, not the local
    /// directory, and local includes are refused.
    public static func load(path: String, baseURL: String, fetch: IncludeFetcher? = nil) throws -> JigdoDescriptor {
        var parser = JigdoParser()
        parser.remoteBase = baseURL
        parser.fetch = fetch
        try parser.parseFile(path: path, stack: [])
        return try parser.finish(mainPath: path)
    }

    /// Parses .jigdo text that lives in directory `base` (used by tests and by `load`).
    public static func parse(text: String, path: String, base: String, fetch: IncludeFetcher? = nil) throws -> JigdoDescriptor {
        var parser = JigdoParser()
        parser.fetch = fetch
        if !base.hasPrefix("/") { parser.remoteBase = base }
        try parser.parseText(text, path: path, base: base, stack: [path])
        return try parser.finish(mainPath: path)
    }

    /// The names of the images (`JigdoImageSection.name`), in file order.
    public var imageNames: [String] { images.map(\.name) }

    /// This descriptor standing for the image called `name` (its base name or its whole
    /// `Filename`); nil when there is none of that name.
    public func selecting(image name: String) -> JigdoDescriptor? {
        guard let section = images.first(where: { $0.name == name || $0.filename == name }) else { return nil }
        var d = self
        d.image = section
        return d
    }

    /// This descriptor once per image.
    public var perImage: [JigdoDescriptor] {
        images.map { section in
            var d = self
            d.image = section
            return d
        }
    }
}

struct JigdoParser {
    private enum Section { case none, jigdo, image, parts, servers, comment, other }

    var version: String?
    var generator: String?
    var images: [JigdoImageSection] = []
    var parts: [String: [JigdoLocation]] = [:]
    var servers: [String: [JigdoLocation]] = [:]
    var files: [String] = []
    var warnings: [String] = []
    /// Unknown value options seen (first occurrence: where), reported as one warning.
    var unknownOptions: [String: String] = [:]
    var unknownOptionOrder: [String] = []
    var longValues = 0
    /// Keys whose values passed `maxValuesPerKey` (warned once each).
    var overfullKeys = Set<String>()
    var includesRead = 0
    /// Set for a .jigdo fetched from a server: the URL directory it came from.
    var remoteBase: String?
    var fetch: JigdoDescriptor.IncludeFetcher?

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
            if let kind = Self.recognizedNonJigdo(try file.read(at: 0, count: 34 << 10)) {
                throw JigdoError(.syntax, path: path, "not a .jigdo file: this is \(kind)")
            }
            throw JigdoError(.syntax, path: path, "not a .jigdo file (\(file.size) bytes; .jigdo files are at most \(JigdoDescriptor.maxFileSize >> 20) MiB)")
        }
        let raw = try file.readAll()
        try parseBytes(raw, path: path, base: remoteBase ?? directoryOf(absolutePath(path)), stack: stack + [canonical])
    }

    mutating func parseBytes(_ raw: [UInt8], path: String, base: String, stack: [String]) throws {
        if let kind = Self.recognizedNonJigdo(raw) {
            throw JigdoError(.syntax, path: path, "not a .jigdo file: this is \(kind)")
        }
        let bytes: [UInt8]
        do {
            // Plain text (no gzip magic byte anywhere) needs no pass through the decompressor.
            let maybeGzip = raw.withUnsafeBufferPointer { b in b.baseAddress.map { memchr($0, 0x1f, b.count) != nil } ?? false }
            bytes = maybeGzip ? try Decompression.gunzipConcatenated(raw, limit: Int(JigdoDescriptor.maxFileSize) * 4) : raw
        } catch {
            throw JigdoError(.syntax, path: path, "not a readable .jigdo file: \(error)", underlying: error)
        }
        // A NUL never occurs in a text file; binary data is not read as (raw-byte) text.
        if bytes.prefix(1 << 16).contains(0) {
            throw JigdoError(.syntax, path: path, "not a .jigdo file (binary data, not text)")
        }
        // Not valid UTF-8 (jigdo-file writes file names as raw bytes): read byte for byte.
        let text = RawNames.decode(bytes).text
        try parseText(text, path: path, base: base, stack: stack)
    }

    /// What a file is when it is clearly not a .jigdo (an ISO, a template), by its magic.
    static func recognizedNonJigdo(_ raw: [UInt8]) -> String? {
        if ISO9660Signature.matches(head: raw) {
            return "an ISO 9660 image, not a .jigdo (give the .jigdo of the image, or use the ISO directly)"
        }
        if raw.starts(with: "JigsawDownload template".utf8) {
            return "a .template, not a .jigdo (give the .jigdo; the template is found next to it)"
        }
        return nil
    }

    mutating func parseText(_ text: String, path: String, base: String, stack: [String]) throws {
        files.append(path)
        var section = Section.none
        var collectingImage = false
        var pendingImage: [String: (value: Substring, line: Int)] = [:]

        func flushImage() throws {
            guard collectingImage else { return }
            collectingImage = false
            images.append(try makeImageSection(pendingImage, path: path, base: base))
        }

        var lineNumber = 0
        // Lines are split on the bytes (grapheme breaking of a whole file is slow); a CR
        // before the LF is dropped.
        for rawLine in text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            var line = Substring(rawLine)
            if line.utf8.last == UInt8(ascii: "\r") { line = Substring(line.utf8.dropLast()) }
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
                    collectingImage = true
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
                throw JigdoError(.syntax, path: path, "line \(lineNumber): expected 'Label=Value', got '\(RawNames.display(String(trimmed.prefix(80))))'")
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
                if pendingImage[String(label)] == nil {
                    pendingImage[String(label)] = (value, lineNumber)
                }
            case .parts:
                let words = try split(value, path: path, line: lineNumber)
                guard JigdoBase64.decodeChecksum(label) != nil else {
                    throw JigdoError(.syntax, path: path, "line \(lineNumber): '\(RawNames.display(String(label.prefix(80))))' is not an MD5 or SHA256 checksum in jigdo's Base64")
                }
                guard !words.words.isEmpty else {
                    throw JigdoError(.syntax, path: path, "line \(lineNumber): part \(label) has no location")
                }
                if let loc = location(words, base: base, path: path, line: lineNumber) {
                    keep(loc, for: String(label), inParts: true, path: path, line: lineNumber)
                }
            case .servers:
                let words = try split(value, path: path, line: lineNumber)
                guard !label.isEmpty, !words.words.isEmpty else {
                    throw JigdoError(.syntax, path: path, "line \(lineNumber): server entry needs 'Label=location'")
                }
                if let loc = location(words, base: base, path: path, line: lineNumber) {
                    keep(loc, for: String(label), inParts: false, path: path, line: lineNumber)
                }
            case .none, .other, .comment:
                continue
            }
        }
        try flushImage()
    }

    /// Adds a value of `key`, unless it already has `maxValuesPerKey` (then one warning per key).
    private mutating func keep(_ loc: JigdoLocation, for key: String, inParts: Bool, path: String, line: Int) {
        let section = inParts ? "[Parts] checksum" : "[Servers] label"
        guard ((inParts ? parts[key] : servers[key])?.count ?? 0) < JigdoDescriptor.maxValuesPerKey else {
            if overfullKeys.insert(section + key).inserted {
                warnings.append("\(path): line \(line): \(section) \(RawNames.display(String(key.prefix(80)))) has more than \(JigdoDescriptor.maxValuesPerKey) values; the rest are ignored")
            }
            return
        }
        if inParts { parts[key, default: []].append(loc) } else { servers[key, default: []].append(loc) }
    }

    /// The location of a `[Parts]`/`[Servers]` value, with its options; nil (and counted) for
    /// values too long to be a path or URL.
    private mutating func location(_ words: ValueWords, base: String, path: String, line: Int) -> JigdoLocation? {
        let l = words.location
        for option in l.unknownOptions where unknownOptions[option] == nil {
            unknownOptions[option] = "\(path) line \(line)"
            unknownOptionOrder.append(option)
        }
        guard l.value.utf8.count <= JigdoDescriptor.maxValueLength else {
            if longValues == 0 {
                warnings.append("\(path): line \(line): ignoring a location of \(l.value.utf8.count) bytes (at most \(JigdoDescriptor.maxValueLength) are read)")
            }
            longValues += 1
            return nil
        }
        return JigdoLocation(value: l.value, base: base, weight: l.weight)
    }

    private func checkVersion(_ version: String, path: String, line: Int) throws {
        let major = version.split(separator: ".").first.flatMap { Int($0) }
        guard let major else {
            throw JigdoError(.syntax, path: path, "line \(line): [Jigdo] Version '\(RawNames.display(String(version.prefix(40))))' is not of the form MAJOR.MINOR")
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
        let which = images.isEmpty ? "[Image]" : "[Image] section \(images.count + 1)"
        guard let filename = try words("Filename"), !filename.isEmpty else {
            throw JigdoError(.syntax, path: path, "\(which) has no Filename entry")
        }
        guard let template = try words("Template"), !template.isEmpty else {
            throw JigdoError(.syntax, path: path, "\(which) has no Template entry")
        }
        var sums: [ChecksumKind: Checksum] = [:]
        for kind in ChecksumKind.allCases {
            let key = "Template-\(kind.labelPrefix)"
            // Old debian-cd headers carry an empty `Template-MD5Sum=` (to be filled in later):
            // no checksum given.
            guard let text = try words(key), !text.isEmpty else { continue }
            guard let sum = JigdoBase64.decodeChecksum(text), sum.kind == kind else {
                throw JigdoError(.syntax, path: path, "line \(entries[key]!.line): \(key) '\(RawNames.display(String(text.prefix(80))))' is not a valid \(kind.rawValue) checksum")
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
        let here = "\(path): line \(line): [Include \(RawNames.display(target))]"
        includesRead += 1
        guard includesRead <= JigdoDescriptor.maxIncludes else {
            if includesRead == JigdoDescriptor.maxIncludes + 1 {
                warnings.append("\(here) not read: more than \(JigdoDescriptor.maxIncludes) includes")
            }
            return
        }
        let fromServer = !base.hasPrefix("/")
        let scheme = uriScheme(of: target)
        if (scheme != nil && scheme != "file") || (fromServer && scheme == nil && !target.hasPrefix("/")) {
            // A URL, or a name relative to a file that came from a server.
            let url = RawNames.urlEncoded(joinURL(base: base, relative: target))
            if stack.contains(url) {
                throw JigdoError(.syntax, path: path, "[Include] loop: \((stack + [url]).joined(separator: " -> "))")
            }
            guard let fetch else {
                warnings.append("\(here) not read: downloads are off")
                return
            }
            let bytes: [UInt8]
            do {
                bytes = try fetch(url)
            } catch {
                warnings.append("\(here) could not be fetched, going on without it: \(error)")
                return
            }
            guard bytes.count <= Int(JigdoDescriptor.maxFileSize) else {
                warnings.append("\(here) not read: larger than \(JigdoDescriptor.maxFileSize >> 20) MiB")
                return
            }
            try parseBytes(bytes, path: url, base: directoryOf(url), stack: stack + [url])
            return
        }
        if fromServer {
            // A remote .jigdo must not make us read local files.
            warnings.append("\(here) not read: a .jigdo from a server cannot include local files")
            return
        }
        var local = target
        if local.hasPrefix("file://") { local = String(local.dropFirst(7)) } else if local.hasPrefix("file:") { local = String(local.dropFirst(5)) }
        local = local.replacingPercentEscapes()
        let resolved = local.hasPrefix("/") ? local : base + local
        if !fileExists(resolved) {
            throw JigdoError(.syntax, path: path, "line \(line): [Include] file not found: \(RawNames.display(resolved))")
        }
        try parseFile(path: resolved, stack: stack)
    }

    func finish(mainPath: String) throws -> JigdoDescriptor {
        guard let first = images.first else {
            throw JigdoError(.syntax, path: mainPath, "no [Image] section: is this a .jigdo file?")
        }
        var warnings = self.warnings
        if !unknownOptionOrder.isEmpty {
            let shown = unknownOptionOrder.prefix(5).map { "\($0) (\(unknownOptions[$0]!))" }
            let more = unknownOptionOrder.count > 5 ? " and \(unknownOptionOrder.count - 5) more" : ""
            warnings.append("\(mainPath): ignoring unknown location option\(unknownOptionOrder.count > 1 ? "s" : "") \(shown.joined(separator: ", "))\(more)")
        }
        if longValues > 1 {
            warnings.append("\(mainPath): \(longValues) over-long locations ignored in all")
        }
        let descriptor = JigdoDescriptor(
            path: mainPath, version: version ?? "1.0", generator: generator, image: first, images: images,
            parts: parts, servers: servers, files: files, warnings: warnings
        )
        // jigdo refuses label loops; so do we, before any expansion could run away.
        if let problem = LocationResolver(descriptor: descriptor).labelProblem {
            throw JigdoError(.syntax, path: mainPath, problem)
        }
        return descriptor
    }
}

extension String {
    /// Decodes `%XX` escapes (jigdo-file(1) asks for `%20` and `%5D` in `[Include]` names;
    /// Fedora writes `%2b` for `+` in part paths). Bytes that are not UTF-8 become raw-byte
    /// scalars (`RawNames`).
    public func replacingPercentEscapes() -> String {
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
        return RawNames.decode(out).text
    }
}
