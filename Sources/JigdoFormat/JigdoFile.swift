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
    /// Checksum (jigdo Base64 text) -> alternative locations, in file order (a compact table:
    /// `JigdoPartsTable`).
    public var parts: JigdoPartsTable
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
    /// At most this much text (after gzip) is read for one .jigdo with all its includes: some
    /// ten times the largest real file (Debian's Blu-ray sets), and a bound on the work of
    /// parsing any input (a gzip bomb stops here too).
    public static let maxContentSize = 64 << 20
    /// Lines longer than this are not read whole (a `[Parts]`/`[Servers]` value of that
    /// length is ignored as over-long; elsewhere such a line is an error).
    public static let maxLineLength = 1 << 20
    /// At most this many `[Include]`s are read for one .jigdo.
    public static let maxIncludes = 64
    /// At most this many values are kept for one `[Servers]` label or one `[Parts]` checksum
    /// (real files have a handful); more are ignored with one warning, so a hostile file of a
    /// million `Base=...` lines costs neither memory nor expansion work.
    public static let maxValuesPerKey = 256

    /// Fetches an `[Include]`d URL: its bytes (at most `maxFileSize`), or an error.
    public typealias IncludeFetcher = (String) throws -> [UInt8]

    /// Reads a .jigdo file (plain or gzip), following local `[Include]` directives, and remote
    /// ones through `fetch` (without it, a remote include is skipped with a warning). With a
    /// `budget`, the `[Parts]` and `[Servers]` locations kept are charged to it as they are read.
    public static func load(path: String, fetch: IncludeFetcher? = nil, budget: MetadataBudget? = nil) throws -> JigdoDescriptor {
        var parser = JigdoParser()
        parser.fetch = fetch
        parser.budget = budget
        return try parser.run(mainPath: path) { try $0.parseFile(path: path, stack: []) }
    }

    /// Reads a local copy of a .jigdo that was fetched from `baseURL` (a URL ending in `/`):
    /// relative locations, includes and the template resolve against the URL, not the local
    /// directory, and local includes are refused.
    public static func load(path: String, baseURL: String, fetch: IncludeFetcher? = nil, budget: MetadataBudget? = nil) throws -> JigdoDescriptor {
        var parser = JigdoParser()
        parser.remoteBase = baseURL
        parser.fetch = fetch
        parser.budget = budget
        return try parser.run(mainPath: path) { try $0.parseFile(path: path, stack: []) }
    }

    /// Parses .jigdo text that lives in directory `base` (used by tests and by `load`).
    public static func parse(text: String, path: String, base: String, fetch: IncludeFetcher? = nil,
                             budget: MetadataBudget? = nil) throws -> JigdoDescriptor {
        var parser = JigdoParser()
        parser.fetch = fetch
        parser.budget = budget
        if !base.hasPrefix("/") { parser.remoteBase = base }
        return try parser.run(mainPath: path) { try $0.parseText(text, path: path, base: base, stack: [path]) }
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
    var parts = JigdoPartsTable()
    var servers: [String: [JigdoLocation]] = [:]
    var files: [String] = []
    var warnings: [String] = []
    /// Unknown value options seen (first occurrence: where), reported as one warning.
    var unknownOptions: [String: String] = [:]
    var unknownOptionOrder: [String] = []
    var longValues = 0
    /// Keys whose values passed `maxValuesPerKey` (warned once each).
    var overfullParts = Set<String>()
    var overfullServers = Set<String>()
    /// The key (as bytes) whose values were last found full.
    var lastFullKey: (bytes: [UInt8], inParts: Bool) = ([], false)
    var includesRead = 0
    /// Set for a .jigdo fetched from a server: the URL directory it came from.
    var remoteBase: String?
    var fetch: JigdoDescriptor.IncludeFetcher?
    /// Charged for the locations kept, a batch at a time (`MetadataBudget.bytesPerPartsEntry`
    /// or `bytesPerServersEntry` each).
    var budget: MetadataBudget?
    var keptLocations = 0
    var unchargedLocations = 0
    /// What the locations kept cost, and the part of it not charged yet.
    var keptBytes: Int64 = 0
    var unchargedBytes: Int64 = 0
    static let chargeBatch = 4096

    /// Text read so far, main file and includes (bounded by `maxContentSize`).
    private let contentRead = Counter()
    private final class Counter { var value = 0 }

    mutating func parseFile(path: String, stack: [String]) throws {
        let canonical = canonicalPath(path)
        if stack.contains(canonical) {
            let chain = (stack + [canonical]).joined(separator: " -> ")
            throw JigdoError(.syntax, path: path, "[Include] loop: \(chain)")
        }
        let file = try ReadOnlyFile(path: path)
        // The largest real .jigdo files (Debian Blu-ray sets) are a few MB; refusing anything huge
        // keeps a mistaken SOURCE (an ISO, a disk) from being read whole.
        guard file.size <= JigdoDescriptor.maxFileSize else {
            if let kind = Self.recognizedNonJigdo(try file.read(at: 0, count: 34 << 10)) {
                throw JigdoError(.syntax, path: path, "not a .jigdo file: this is \(kind)")
            }
            throw JigdoError(.syntax, path: path, "not a .jigdo file (\(file.size) bytes; .jigdo files are at most \(JigdoDescriptor.maxFileSize >> 20) MiB)")
        }
        let head = try file.read(at: 0, count: Int(min(file.size, 34 << 10)))
        if let kind = Self.recognizedNonJigdo(head) {
            throw JigdoError(.syntax, path: path, "not a .jigdo file: this is \(kind)")
        }
        // Read in pieces while parsing: the file is never held whole.
        var offset: Int64 = 0
        let stream = ConcatenatedGzipStream { buffer in
            let n = Int(min(Int64(buffer.count), file.size - offset))
            guard n > 0 else { return 0 }
            try file.read(at: offset, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n]))
            offset += Int64(n)
            return n
        }
        try parseContent(stream, path: path, base: remoteBase ?? directoryOf(absolutePath(path)), stack: stack + [canonical])
    }

    mutating func parseBytes(_ raw: [UInt8], path: String, base: String, stack: [String]) throws {
        if let kind = Self.recognizedNonJigdo(raw) {
            throw JigdoError(.syntax, path: path, "not a .jigdo file: this is \(kind)")
        }
        let stream = ConcatenatedGzipStream(bytes: raw)
        try parseContent(stream, path: path, base: base, stack: stack)
    }

    /// Parses the (plain or gzip) content of one file as it is decompressed.
    private mutating func parseContent(_ stream: ConcatenatedGzipStream, path: String, base: String, stack: [String]) throws {
        let lines = LineReader(maxLineLength: JigdoDescriptor.maxLineLength) { [contentRead] buffer in
            let n: Int
            do {
                n = try stream.read(into: buffer)
            } catch let e as DecompressionFailure {
                throw JigdoError(.syntax, path: path, "not a readable .jigdo file: \(e)", underlying: e)
            }
            contentRead.value += n
            if contentRead.value > JigdoDescriptor.maxContentSize {
                throw JigdoError(.syntax, path: path, "not a .jigdo file: more than \(JigdoDescriptor.maxContentSize >> 20) MiB of text (a .jigdo with its includes is at most that)")
            }
            return n
        }
        // A NUL never occurs in a text file; binary data is not read as (raw-byte) text. The
        // rest is still decompressed (not kept), so a gzip bomb is named as one.
        if try lines.peek(1 << 16).contains(0) {
            try lines.discardRest()
            throw JigdoError(.syntax, path: path, "not a .jigdo file (binary data, not text)")
        }
        try parseLines(lines, path: path, base: base, stack: stack)
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
        let bytes = Array(text.utf8)
        var offset = 0
        let lines = LineReader(maxLineLength: JigdoDescriptor.maxLineLength) { [contentRead] buffer in
            let n = min(buffer.count, bytes.count - offset)
            guard n > 0 else { return 0 }
            bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
            offset += n
            contentRead.value += n
            if contentRead.value > JigdoDescriptor.maxContentSize {
                throw JigdoError(.syntax, path: path, "not a .jigdo file: more than \(JigdoDescriptor.maxContentSize >> 20) MiB of text (a .jigdo with its includes is at most that)")
            }
            return n
        }
        try parseLines(lines, path: path, base: base, stack: stack)
    }

    /// What parsing one file keeps between its lines.
    private struct FileState {
        let path: String
        let base: String
        let stack: [String]
        var section = Section.none
        var collectingImage = false
        var pendingImage: [String: (value: String, line: Int)] = [:]
        var lineNumber = 0
    }

    /// Parses the lines of one file. Lines are bytes (split, trimmed and searched for `[`, `=`
    /// and `]` as bytes, as jigdo-file does); text is made only of what is kept.
    private mutating func parseLines(_ lines: LineReader, path: String, base: String, stack: [String]) throws {
        files.append(path)
        var state = FileState(path: path, base: base, stack: stack)
        while let line = try lines.next() {
            state.lineNumber += 1
            try parseLine(line, &state)
        }
        try flushImage(&state)
    }

    private mutating func flushImage(_ state: inout FileState) throws {
        guard state.collectingImage else { return }
        state.collectingImage = false
        images.append(try makeImageSection(state.pendingImage, path: state.path, base: state.base))
    }

    private static func isBlank(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 }

    /// `bytes[range]` without the blanks at both ends.
    private static func trimmed(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Range<Int> {
        var lo = range.lowerBound, hi = range.upperBound
        while lo < hi && isBlank(bytes[lo]) { lo += 1 }
        while hi > lo && isBlank(bytes[hi - 1]) { hi -= 1 }
        return lo..<hi
    }

    private static func equals(_ bytes: Slice<UnsafeBufferPointer<UInt8>>, _ text: StaticString) -> Bool {
        bytes.count == text.utf8CodeUnitCount && memcmp(bytes.base.baseAddress! + bytes.startIndex, text.utf8Start, bytes.count) == 0
    }

    /// Whether the bytes are a checksum in jigdo's Base64 (`JigdoBase64.decodeChecksum`
    /// accepts them), without decoding it.
    private static func isChecksumText(_ bytes: Slice<UnsafeBufferPointer<UInt8>>) -> Bool {
        guard bytes.count == 22 || bytes.count == 43 else { return false }
        return bytes.allSatisfy { b in
            (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x2D || b == 0x5F
        }
    }

    /// The first 80 characters of a line, for a message.
    private static func shown(_ bytes: Slice<UnsafeBufferPointer<UInt8>>) -> String {
        RawNames.display(String(RawNames.text(bytes.prefix(4 << 10)).prefix(80)))
    }

    private mutating func parseLine(_ line: LineReader.Line, _ state: inout FileState) throws {
        let bytes = line.bytes
        let lineNumber = state.lineNumber
        let path = state.path
        var end = bytes.count
        if !line.isOverlong && end > 0 && bytes[end - 1] == 0x0D { end -= 1 }
        let t = Self.trimmed(bytes, 0..<end)
        let first = t.isEmpty ? nil : bytes[t.lowerBound]
        if state.section == .comment && first != UInt8(ascii: "[") { return }
        guard let first, first != UInt8(ascii: "#") else { return }
        if first == UInt8(ascii: "[") {
            if line.isOverlong {
                throw JigdoError(.syntax, path: path, "line \(lineNumber): longer than \(JigdoDescriptor.maxLineLength >> 20) MiB")
            }
            guard let close = bytes[t].lastIndex(of: UInt8(ascii: "]")) else {
                throw JigdoError(.syntax, path: path, "line \(lineNumber): section line without ']'")
            }
            let name = bytes[Self.trimmed(bytes, (t.lowerBound + 1)..<close)]
            try flushImage(&state)
            if name.starts(with: "Include".utf8) && (name.count == 7 || Self.isBlank(name[name.startIndex + 7])) {
                let target = bytes[Self.trimmed(bytes, (name.startIndex + 7)..<name.endIndex)]
                if target.isEmpty {
                    throw JigdoError(.syntax, path: path, "line \(lineNumber): [Include] without a file name")
                }
                try include(RawNames.text(target), from: path, base: state.base, stack: state.stack, line: lineNumber)
                state.section = .none
                return
            }
            if Self.equals(name, "Jigdo") {
                state.section = .jigdo
            } else if Self.equals(name, "Image") {
                state.section = .image
                state.collectingImage = true
                state.pendingImage = [:]
            } else if Self.equals(name, "Parts") {
                state.section = .parts
            } else if Self.equals(name, "Servers") {
                state.section = .servers
            } else if Self.equals(name, "Comment") || Self.equals(name, "comment") {
                state.section = .comment
            } else {
                state.section = .other
            }
            return
        }
        if state.section == .none || state.section == .other { return }
        guard let eq = bytes[t].firstIndex(of: UInt8(ascii: "=")) else {
            throw JigdoError(.syntax, path: path, "line \(lineNumber): expected 'Label=Value', got '\(Self.shown(bytes[t]))'")
        }
        let label = bytes[Self.trimmed(bytes, t.lowerBound..<eq)]
        let value = bytes[Self.trimmed(bytes, (eq + 1)..<t.upperBound)]
        switch state.section {
        case .jigdo, .image:
            if line.isOverlong {
                throw JigdoError(.syntax, path: path, "line \(lineNumber): longer than \(JigdoDescriptor.maxLineLength >> 20) MiB")
            }
            if state.section == .image {
                let key = RawNames.text(label)
                if state.pendingImage[key] == nil {
                    state.pendingImage[key] = (RawNames.text(value), lineNumber)
                }
                return
            }
            let words = try split(value, path: path, line: lineNumber)
            if Self.equals(label, "Version"), version == nil {
                version = words.joined
                try checkVersion(words.joined, path: path, line: lineNumber)
            } else if Self.equals(label, "Generator"), generator == nil {
                generator = words.joined
            }
        case .parts:
            guard Self.isChecksumText(label) else {
                throw JigdoError(.syntax, path: path, "line \(lineNumber): '\(Self.shown(label))' is not an MD5 or SHA256 checksum in jigdo's Base64")
            }
            if try isOfLastFullKey(label, value, inParts: true, state: state) { return }
            try keepValue(value, for: String(decoding: label, as: UTF8.self), inParts: true, line: line, state: state)
        case .servers:
            if try isOfLastFullKey(label, value, inParts: false, state: state) { return }
            try keepValue(value, for: RawNames.text(label), inParts: false, line: line, state: state)
        case .none, .other, .comment:
            return
        }
    }

    /// Whether the line is one more value of the key that was last found full (checked, not
    /// kept): a run of a million lines of one key makes no text and no lookups.
    private mutating func isOfLastFullKey(_ label: Slice<UnsafeBufferPointer<UInt8>>, _ value: Slice<UnsafeBufferPointer<UInt8>>, inParts: Bool, state: FileState) throws -> Bool {
        guard lastFullKey.inParts == inParts, !label.isEmpty, label.elementsEqual(lastFullKey.bytes) else { return false }
        let words: Int
        do {
            words = try ValueWords.countWords(bytes: value)
        } catch {
            throw splitError(error, path: state.path, line: state.lineNumber)
        }
        return words > 0
    }

    /// A `[Parts]` or `[Servers]` value: checked, and kept unless its key is full (then only
    /// counted: a key's values beyond `maxValuesPerKey` cost no memory).
    private mutating func keepValue(_ value: Slice<UnsafeBufferPointer<UInt8>>, for key: String, inParts: Bool, line: LineReader.Line, state: FileState) throws {
        let lineNumber = state.lineNumber
        let path = state.path
        func noLocation() -> JigdoError {
            JigdoError(.syntax, path: path, inParts
                ? "line \(lineNumber): part \(key) has no location"
                : "line \(lineNumber): server entry needs 'Label=location'")
        }
        if line.isOverlong {
            // The value holds at least maxLineLength minus the label's bytes.
            guard !key.isEmpty else { throw noLocation() }
            noteLongValue(bytes: line.length - (value.startIndex - line.bytes.startIndex), path: path, line: lineNumber)
            return
        }
        let count = inParts ? parts.valueCount(for: key) : servers[key]?.count ?? 0
        if count >= JigdoDescriptor.maxValuesPerKey {
            // Checked as any value is, not kept.
            let words: Int
            do {
                words = try ValueWords.countWords(bytes: value)
            } catch {
                throw splitError(error, path: path, line: lineNumber)
            }
            guard !key.isEmpty, words > 0 else { throw noLocation() }
            lastFullKey = (Array(key.utf8), inParts)
            let section = inParts ? "[Parts] checksum" : "[Servers] label"
            if (inParts ? overfullParts.insert(key) : overfullServers.insert(key)).inserted {
                warnings.append("\(path): line \(lineNumber): \(section) \(RawNames.display(String(key.prefix(80)))) has more than \(JigdoDescriptor.maxValuesPerKey) values; the rest are ignored")
            }
            return
        }
        let words = try split(value, path: path, line: lineNumber)
        guard !key.isEmpty, !words.words.isEmpty else { throw noLocation() }
        if let loc = location(words, base: state.base, path: path, line: lineNumber) {
            if inParts { try parts.append(loc, for: key) } else { servers[key, default: []].append(loc) }
            keptLocations += 1
            unchargedLocations += 1
            let cost = inParts ? MetadataBudget.bytesPerPartsEntry : MetadataBudget.bytesPerServersEntry
            keptBytes += cost
            unchargedBytes += cost
            if unchargedLocations >= Self.chargeBatch { try chargeLocations(path: path) }
        }
    }

    /// Parses with `body`, then finishes; what was charged for a file that fails is given back.
    mutating func run(mainPath: String, _ body: (inout JigdoParser) throws -> Void) throws -> JigdoDescriptor {
        do {
            try body(&self)
            return try finish(mainPath: mainPath)
        } catch {
            budget?.release(keptBytes - unchargedBytes)
            throw error
        }
    }

    /// Charges the locations kept since the last charge; a refusal names all kept so far.
    private mutating func chargeLocations(path: String) throws {
        guard let budget, unchargedLocations > 0 else { return }
        try budget.charge(unchargedBytes, for: "\(keptLocations) [Parts] and [Servers] locations",
                          path: path, chargedBefore: keptBytes - unchargedBytes)
        unchargedLocations = 0
        unchargedBytes = 0
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
            noteLongValue(bytes: l.value.utf8.count, path: path, line: line)
            return nil
        }
        return JigdoLocation(value: l.value, base: base, weight: l.weight)
    }

    private mutating func noteLongValue(bytes: Int, path: String, line: Int) {
        if longValues == 0 {
            warnings.append("\(path): line \(line): ignoring a location of \(bytes) bytes (at most \(JigdoDescriptor.maxValueLength) are read)")
        }
        longValues += 1
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

    private func split<Bytes: RandomAccessCollection>(_ value: Bytes, path: String, line: Int) throws -> ValueWords
    where Bytes.Element == UInt8, Bytes.Index == Int {
        do {
            return try ValueWords.split(bytes: value)
        } catch {
            throw splitError(error, path: path, line: line)
        }
    }

    private func splitError(_ failure: ValueWords.Failure, path: String, line: Int) -> JigdoError {
        switch failure {
        case .unterminatedQuote(let q): JigdoError(.syntax, path: path, "line \(line): unterminated \(q) quote")
        case .danglingBackslash: JigdoError(.syntax, path: path, "line \(line): backslash at end of line")
        }
    }

    private func makeImageSection(_ entries: [String: (value: String, line: Int)], path: String, base: String) throws -> JigdoImageSection {
        func words(_ key: String) throws -> String? {
            guard let e = entries[key] else { return nil }
            return try split(Array(e.value.utf8), path: path, line: e.line).joined
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
            shortInfo: entries["ShortInfo"]?.value,
            info: entries["Info"]?.value
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

    mutating func finish(mainPath: String) throws -> JigdoDescriptor {
        try chargeLocations(path: mainPath)
        guard let first = images.first else {
            throw JigdoError(.syntax, path: mainPath, "no [Image] section: is this a .jigdo file?")
        }
        parts.shrink()
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
        // Byte-wise: `contains("%")` here is Foundation's substring search (a CFString search
        // for every location of every part a read-ahead starts).
        guard utf8.contains(UInt8(ascii: "%")) else { return self }
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
