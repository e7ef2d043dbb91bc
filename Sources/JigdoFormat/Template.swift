#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One compressed raw-data part of a template (`DATA` = zlib, `BZIP` = bzip2).
public struct TemplateChunk: Sendable, Equatable {
    public enum Compression: Sendable { case zlib, bzip2 }
    public var compression: Compression
    /// Offset of the compressed bytes in the template file.
    public var fileOffset: Int64
    public var compressedLength: Int
    /// Offset of this chunk's bytes in the concatenated uncompressed raw data.
    public var dataOffset: Int64
    public var uncompressedLength: Int
}

/// A part of the image that is a whole file (a package), identified by checksum.
public struct TemplatePart: Sendable, Equatable {
    public var length: Int64
    public var checksum: Checksum
    /// jigdo's RsyncSum64 of the first `blockLength` bytes. No reader uses it, so the parser
    /// does not keep it (nil in `TemplateInfo.parts`).
    public var rsyncSum: UInt64?

    public init(length: Int64, checksum: Checksum, rsyncSum: UInt64? = nil) {
        self.length = length
        self.checksum = checksum
        self.rsyncSum = rsyncSum
    }
}

/// The parts of a template, in DESC order: the checksums in one contiguous buffer, the lengths
/// in another, no heap object per part (8 bytes plus the checksum's 16 or 32 each). An element
/// is made when it is asked for.
public struct TemplateParts: RandomAccessCollection, Sendable {
    public let checksumKind: ChecksumKind
    fileprivate var sums: [UInt8] = []
    fileprivate var lengths: [Int64] = []

    fileprivate init(checksumKind: ChecksumKind, capacity: Int) {
        self.checksumKind = checksumKind
        sums.reserveCapacity(capacity * checksumKind.byteCount)
        lengths.reserveCapacity(capacity)
    }

    /// The table of `parts` (all of `checksumKind`), for a template made in code (tests).
    public init(_ parts: [TemplatePart], checksumKind: ChecksumKind) {
        self.init(checksumKind: checksumKind, capacity: parts.count)
        for p in parts {
            lengths.append(p.length)
            p.checksum.withUnsafeBytes { sums.append(contentsOf: $0) }
        }
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { lengths.count }
    public subscript(index: Int) -> TemplatePart {
        TemplatePart(length: lengths[index], checksum: checksum(index))
    }

    public func length(_ index: Int) -> Int64 { lengths[index] }

    public func checksum(_ index: Int) -> Checksum {
        let n = checksumKind.byteCount
        precondition(index >= 0 && index < lengths.count, "part index out of range")
        return sums.withUnsafeBytes { Checksum(unchecked: UnsafeRawBufferPointer(rebasing: $0[index * n..<(index + 1) * n])) }
    }

    /// Calls `body` with the checksums, `checksumKind.byteCount` bytes each, in part order.
    public func withChecksumBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try sums.withUnsafeBytes(body)
    }

    /// How many distinct checksums the parts of nonzero length have: the part indices sorted
    /// by checksum (4 bytes a part while it counts), no set of checksums.
    public var distinctCount: Int {
        let n = checksumKind.byteCount
        var order: [UInt32] = []
        order.reserveCapacity(lengths.count)
        for i in lengths.indices where lengths[i] > 0 { order.append(UInt32(i)) }
        if order.isEmpty { return 0 }
        return sums.withUnsafeBufferPointer { sums in
            let base = sums.baseAddress!
            func compare(_ a: UInt32, _ b: UInt32) -> Int32 {
                memcmp(base + Int(a) * n, base + Int(b) * n, n)
            }
            order.sort { compare($0, $1) < 0 }
            var distinct = 1
            for i in order.indices.dropFirst() where compare(order[i - 1], order[i]) != 0 { distinct += 1 }
            return distinct
        }
    }

    fileprivate mutating func append(length: Int64, checksum: ArraySlice<UInt8>) {
        lengths.append(length)
        sums.append(contentsOf: checksum)
    }

    /// Bytes held by the tables.
    var tableBytes: Int { sums.capacity + lengths.capacity * 8 }
}

/// One area of the image, in image order.
public struct LayoutEntry: Sendable, Equatable {
    public enum Source: Sendable, Equatable {
        /// Bytes held in the template: the raw data stream at this offset.
        case templateData(dataOffset: Int64)
        /// Bytes of a part: index into `TemplateInfo.parts`.
        case part(Int)
    }
    public var imageOffset: Int64
    public var length: Int64
    public var source: Source
}

/// The areas of the image in image order, as two contiguous arrays (16 bytes an area): where
/// each starts (the image's length after the last, so an area's length is the next start minus
/// its own), and its source (a part index, or `-1 - dataOffset` for template data).
public struct TemplateLayout: RandomAccessCollection, Sendable {
    fileprivate var starts: [Int64] = []
    fileprivate var sources: [Int64] = []

    fileprivate init(capacity: Int) {
        starts.reserveCapacity(capacity + 1)
        sources.reserveCapacity(capacity)
    }

    /// The table of contiguous `entries` in image order, for a template made in code (tests).
    public init(_ entries: [LayoutEntry]) {
        self.init(capacity: entries.count)
        for e in entries {
            switch e.source {
            case .part(let i): append(at: e.imageOffset, part: i)
            case .templateData(let d): append(at: e.imageOffset, dataOffset: d)
            }
        }
        starts.append(entries.last.map { $0.imageOffset + $0.length } ?? 0)
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { sources.count }
    public subscript(index: Int) -> LayoutEntry {
        let s = sources[index]
        return LayoutEntry(imageOffset: starts[index], length: starts[index + 1] - starts[index],
                           source: s >= 0 ? .part(Int(s)) : .templateData(dataOffset: -1 - s))
    }

    /// The start of area `index` (a binary search reads only this).
    public func imageOffset(_ index: Int) -> Int64 { starts[index] }

    fileprivate mutating func append(at imageOffset: Int64, part index: Int) {
        starts.append(imageOffset)
        sources.append(Int64(index))
    }

    fileprivate mutating func append(at imageOffset: Int64, dataOffset: Int64) {
        starts.append(imageOffset)
        sources.append(-1 - dataOffset)
    }

    var tableBytes: Int { (starts.capacity + sources.capacity) * 8 }
}

/// A parsed .template file: chunk index, image layout, image checksum.
///
/// Parsing reads the header, the DESC part and the chunk headers only; no data is decompressed.
/// The DESC part is read twice in 1 MiB pieces, never whole: once to check it and count its
/// entries (and charge them to a `MetadataBudget`), once to fill tables of exactly that size.
public struct TemplateInfo: Sendable {
    public var path: String
    public var formatVersion: String
    public var creator: String
    public var checksumKind: ChecksumKind
    public var imageLength: Int64
    public var imageChecksum: Checksum
    public var rsyncBlockLength: UInt32
    public var chunks: [TemplateChunk]
    public var parts: TemplateParts
    /// Ordered, non-overlapping, contiguous areas covering the image; zero-length areas omitted.
    public var layout: TemplateLayout
    /// Total uncompressed size of the raw data (= bytes of the image held in the template).
    public var templateDataLength: Int64

    /// Parses the template; with a `budget`, its tables are charged to it first (and the
    /// template is refused if they do not fit).
    public static func read(_ file: ReadOnlyFile, budget: MetadataBudget? = nil) throws -> TemplateInfo {
        try TemplateParser(file: file, budget: budget).parse()
    }

    public static func read(path: String, budget: MetadataBudget? = nil) throws -> TemplateInfo {
        try read(ReadOnlyFile(path: path), budget: budget)
    }

    /// What the parsed tables cost, estimated from entry counts before they are built (as
    /// charged to a `MetadataBudget`).
    public static func tableCost(parts: Int, layoutEntries: Int, chunks: Int, kind: ChecksumKind) -> Int64 {
        Int64(parts) * (MetadataBudget.bytesPerDescPart + Int64(kind.byteCount))
            + Int64(layoutEntries) * MetadataBudget.bytesPerLayoutEntry
            + Int64(chunks * MemoryLayout<TemplateChunk>.stride)
    }

    /// Bytes the tables hold.
    public var tableBytes: Int {
        parts.tableBytes + layout.tableBytes + chunks.capacity * MemoryLayout<TemplateChunk>.stride
    }

    /// Whether `other` holds the very same tables (not copies): what images that name one
    /// template share.
    public func sharesTables(with other: TemplateInfo) -> Bool {
        func same<T>(_ a: [T], _ b: [T]) -> Bool {
            a.withUnsafeBufferPointer { x in b.withUnsafeBufferPointer { y in x.baseAddress == y.baseAddress } }
        }
        return same(parts.sums, other.parts.sums) && same(parts.lengths, other.parts.lengths)
            && same(layout.starts, other.layout.starts) && same(layout.sources, other.layout.sources)
    }

    /// Index of the layout entry containing `offset` (binary search), nil outside the image.
    public func layoutIndex(containing offset: Int64) -> Int? {
        guard offset >= 0, offset < imageLength, !layout.isEmpty else { return nil }
        var lo = 0
        var hi = layout.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if layout.imageOffset(mid) <= offset { lo = mid } else { hi = mid - 1 }
        }
        return lo
    }

    /// Index of the chunk holding raw-data offset `dataOffset` (binary search).
    public func chunkIndex(containing dataOffset: Int64) -> Int? {
        guard dataOffset >= 0, dataOffset < templateDataLength, !chunks.isEmpty else { return nil }
        var lo = 0
        var hi = chunks.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if chunks[mid].dataOffset <= dataOffset { lo = mid } else { hi = mid - 1 }
        }
        return lo
    }
}

/// Reads the DESC entries from the file in pieces: `take(n)` makes the next `n` bytes
/// available in `window` (an entry is at most 47 bytes, a piece 1 MiB).
private struct DescCursor {
    static let pieceSize: Int64 = 1 << 20
    let file: ReadOnlyFile
    /// File offsets of the DESC part and of the end of its entries (its last 6 bytes repeat
    /// its length).
    let start: Int64
    let end: Int64
    private(set) var pos: Int64
    private(set) var window: [UInt8] = []
    private var windowStart: Int64 = 0

    init(file: ReadOnlyFile, start: Int64, end: Int64) {
        self.file = file
        self.start = start
        self.end = end
        pos = start + 10
    }

    /// Offset of the next byte in the DESC part (for messages).
    var descOffset: Int64 { pos - start }
    var atEnd: Bool { pos >= end }

    /// Index in `window` of the next `n` bytes, which are then passed; nil if the entries end
    /// before them.
    mutating func take(_ n: Int) throws -> Int? {
        guard pos + Int64(n) <= end else { return nil }
        if pos + Int64(n) > windowStart + Int64(window.count) {
            window = try file.read(at: pos, count: Int(min(Self.pieceSize, end - pos)))
            windowStart = pos
        }
        defer { pos += Int64(n) }
        return Int(pos - windowStart)
    }
}

private struct TemplateParser {
    let file: ReadOnlyFile
    let budget: MetadataBudget?
    var path: String { file.path }

    func corrupt(_ message: String) -> JigdoError {
        JigdoError(.corruptTemplate, path: path, "not a valid jigdo template: \(message)")
    }

    /// What one pass over the DESC entries found.
    struct DescSummary: Equatable {
        var image: (length: Int64, sum: Checksum, block: UInt32, kind: ChecksumKind)?
        var parts = 0
        var layoutEntries = 0
        /// Parts and areas of unmatched data (as a message counts them).
        var descEntries: Int { parts + dataAreas }
        var dataAreas = 0
        var dataLength: Int64 = 0
        var md5Parts = 0
        var sha256Parts = 0

        static func == (a: DescSummary, b: DescSummary) -> Bool {
            a.parts == b.parts && a.layoutEntries == b.layoutEntries && a.dataLength == b.dataLength
                && a.image?.length == b.image?.length && a.image?.sum == b.image?.sum
        }
    }

    /// One pass over the DESC entries: checks each and hands each unmatched-data area
    /// (`data(imageOffset, dataOffset, length)`) and each part (`part(imageOffset, length,
    /// checksum bytes)`) to the caller.
    func walk(_ cursor: inout DescCursor,
              data: (Int64, Int64, Int64) throws -> Void,
              part: (Int64, Int64, ArraySlice<UInt8>) throws -> Void) throws -> DescSummary {
        var summary = DescSummary()
        var imageOffset: Int64 = 0
        func need(_ n: Int, _ what: String) throws -> Int {
            guard let at = try cursor.take(n) else {
                throw corrupt("DESC entry '\(what)' at DESC offset \(cursor.descOffset - 1) runs past the end of the DESC part")
            }
            return at
        }
        // Each length is below 2^48; stopping at 2^50 keeps the sums far from overflowing Int64
        // however many entries a corrupt DESC holds.
        func checkTotal() throws {
            if imageOffset > 1 << 50 { throw corrupt("DESC areas add up to more than 2^50 bytes") }
        }
        while !cursor.atEnd {
            let typeAt = try need(1, "type")
            let type = cursor.window[typeAt]
            switch type {
            case 2:
                let at = try need(6, "unmatched data")
                let len = Int64(le48(cursor.window, at))
                if len > 0 {
                    try data(imageOffset, summary.dataLength, len)
                    summary.layoutEntries += 1
                    summary.dataAreas += 1
                }
                imageOffset += len
                summary.dataLength += len
                try checkTotal()
            case 3, 6, 7, 9, 10:
                let sumLength = (type == 9 || type == 10) ? 32 : 16
                let rsyncLength = type != 3 ? 8 : 0
                let at = try need(6 + rsyncLength + sumLength, "matched file")
                let len = Int64(le48(cursor.window, at))
                try part(imageOffset, len, cursor.window[(at + 6 + rsyncLength)..<(at + 6 + rsyncLength + sumLength)])
                if len > 0 { summary.layoutEntries += 1 }
                summary.parts += 1
                if sumLength == 32 { summary.sha256Parts += 1 } else { summary.md5Parts += 1 }
                imageOffset += len
                try checkTotal()
            case 1, 5, 8:
                let sumLength = type == 8 ? 32 : 16
                let hasBlock = type != 1
                let at = try need(6 + sumLength + (hasBlock ? 4 : 0), "image info")
                let w = cursor.window
                let len = Int64(le48(w, at))
                let sum = w.withUnsafeBytes { Checksum(unchecked: UnsafeRawBufferPointer(rebasing: $0[(at + 6)..<(at + 6 + sumLength)])) }
                var block: UInt32 = 0
                if hasBlock {
                    let b = at + 6 + sumLength
                    block = UInt32(w[b]) | UInt32(w[b + 1]) << 8 | UInt32(w[b + 2]) << 16 | UInt32(w[b + 3]) << 24
                }
                if summary.image != nil { throw corrupt("DESC holds more than one image information entry") }
                summary.image = (len, sum, block, type == 8 ? .sha256 : .md5)
            default:
                throw corrupt("unknown DESC entry type \(type) at DESC offset \(cursor.descOffset - 1)")
            }
        }
        guard let image = summary.image else { throw corrupt("DESC has no image information entry (type 5 or 8)") }
        guard imageOffset == image.length else {
            throw corrupt("DESC areas add up to \(imageOffset) bytes but the image is \(image.length) bytes")
        }
        let other: ChecksumKind = image.kind == .md5 ? .sha256 : .md5
        if (other == .md5 ? summary.md5Parts : summary.sha256Parts) > 0 {
            throw corrupt("part checksum kind \(other.rawValue) differs from the image's \(image.kind.rawValue)")
        }
        return summary
    }

    func parse() throws -> TemplateInfo {
        let size = file.size
        // Header: three CRLF-terminated lines.
        let headProbe = try file.read(at: 0, count: Int(min(size, 4096)))
        var lines: [ArraySlice<UInt8>] = []
        var start = 0
        var i = 0
        while lines.count < 3 && i + 1 < headProbe.count {
            if headProbe[i] == 13 && headProbe[i + 1] == 10 {
                lines.append(headProbe[start..<i])
                i += 2
                start = i
            } else {
                i += 1
            }
        }
        let magic = Array("JigsawDownload template ".utf8)
        guard lines.count == 3, lines[0].starts(with: magic), lines[2].isEmpty else {
            if headProbe.starts(with: magic) { throw corrupt("header is truncated or malformed") }
            throw corrupt("missing 'JigsawDownload template' header")
        }
        let headerEnd = Int64(start)
        let fields = String(decoding: lines[0].dropFirst(magic.count), as: UTF8.self).split(separator: " ")
        let version = fields.first.map(String.init) ?? ""
        let creator = fields.count > 1 ? String(fields[1]) : ""
        guard let major = version.split(separator: ".").first.flatMap({ Int($0) }) else {
            throw corrupt("template format version '\(version)' is not of the form MAJOR.MINOR")
        }
        guard major == 1 || major == 2 else {
            throw JigdoError(.unsupportedVersion, path: path, "template format version \(version) is not supported (1.x and 2.x are)")
        }

        // DESC: its length is repeated in the last 6 bytes.
        guard size >= headerEnd + 16 + 6 else { throw corrupt("file is too short (\(size) bytes) to hold a DESC part") }
        let tail = try file.read(at: size - 6, count: 6)
        let descLength = Int64(le48(tail, 0))
        guard descLength >= 16, descLength <= size - headerEnd else {
            throw corrupt("DESC length \(descLength) in the last 6 bytes points outside the file (size \(size)); truncated?")
        }
        let descStart = size - descLength
        guard descLength <= 64 << 20 + 16 else { throw corrupt("DESC part of \(descLength) bytes is implausibly large") }
        let descHead = try file.read(at: descStart, count: 10)
        guard descHead.starts(with: Array("DESC".utf8)), Int64(le48(descHead, 4)) == descLength else {
            throw corrupt("no DESC part at offset \(descStart) (file truncated or corrupt)")
        }

        // Entries: counted and checked, charged, then stored.
        var counting = DescCursor(file: file, start: descStart, end: size - 6)
        let counted = try walk(&counting, data: { _, _, _ in }, part: { _, _, _ in })
        let kind = counted.image!.kind

        // Raw data parts between header and DESC.
        var chunks: [TemplateChunk] = []
        var chunkPos = headerEnd
        var chunkDataOffset: Int64 = 0
        while chunkPos < descStart {
            guard chunkPos + 16 <= descStart else {
                throw corrupt("data part header at offset \(chunkPos) is cut off by the DESC part")
            }
            let head = try file.read(at: chunkPos, count: 16)
            let id = String(decoding: head[0..<4], as: UTF8.self)
            let compression: TemplateChunk.Compression
            switch id {
            case "DATA": compression = .zlib
            case "BZIP": compression = .bzip2
            default: throw corrupt("unknown part '\(printable(head[0..<4]))' at offset \(chunkPos) (expected DATA, BZIP or DESC)")
            }
            let partLength = Int64(le48(head, 4))
            let unc = Int64(le48(head, 10))
            guard partLength >= 16, chunkPos + partLength <= descStart else {
                throw corrupt("\(id) part at offset \(chunkPos) has length \(partLength), which runs past the DESC part at \(descStart)")
            }
            guard unc <= 1 << 30 else { throw corrupt("\(id) part at offset \(chunkPos) claims \(unc) uncompressed bytes") }
            if unc > 0 {
                chunks.append(TemplateChunk(
                    compression: compression, fileOffset: chunkPos + 16, compressedLength: Int(partLength - 16),
                    dataOffset: chunkDataOffset, uncompressedLength: Int(unc)))
            }
            chunkDataOffset += unc
            chunkPos += partLength
        }
        guard chunkDataOffset == counted.dataLength else {
            throw corrupt("data parts hold \(chunkDataOffset) bytes but DESC lists \(counted.dataLength) bytes of unmatched data")
        }

        let cost = TemplateInfo.tableCost(parts: counted.parts, layoutEntries: counted.layoutEntries, chunks: chunks.count, kind: kind)
        try budget?.charge(cost, for: "\(counted.descEntries) DESC entries", path: path)
        var parts = TemplateParts(checksumKind: kind, capacity: counted.parts)
        var layout = TemplateLayout(capacity: counted.layoutEntries)
        var storing = DescCursor(file: file, start: descStart, end: size - 6)
        let stored: DescSummary
        do {
            // The file may change between the passes: nothing beyond the counted entries is
            // stored, and a different second pass is an error.
            stored = try walk(&storing, data: { imageOffset, dataOffset, _ in
                guard layout.count < counted.layoutEntries else { throw corrupt("the file changed while it was read") }
                layout.append(at: imageOffset, dataOffset: dataOffset)
            }, part: { imageOffset, length, sum in
                guard parts.count < counted.parts else { throw corrupt("the file changed while it was read") }
                if length > 0 {
                    guard layout.count < counted.layoutEntries else { throw corrupt("the file changed while it was read") }
                    layout.append(at: imageOffset, part: parts.count)
                }
                parts.append(length: length, checksum: sum)
            })
        } catch {
            budget?.release(cost)
            throw error
        }
        guard stored == counted else {
            budget?.release(cost)
            throw corrupt("the file changed while it was read")
        }
        layout.starts.append(counted.image!.length)
        let image = counted.image!
        return TemplateInfo(
            path: path, formatVersion: version, creator: creator, checksumKind: kind,
            imageLength: image.length, imageChecksum: image.sum, rsyncBlockLength: image.block,
            chunks: chunks, parts: parts, layout: layout, templateDataLength: counted.dataLength)
    }
}

@inline(__always)
func le48(_ b: [UInt8], _ at: Int) -> UInt64 {
    var v: UInt64 = 0
    for i in (0..<6).reversed() { v = v << 8 | UInt64(b[at + i]) }
    return v
}

private func printable(_ bytes: ArraySlice<UInt8>) -> String {
    String(bytes.map { (32..<127).contains($0) ? Character(UnicodeScalar($0)) : "?" })
}
