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
    /// jigdo's RsyncSum64 of the first `blockLength` bytes (unused by readers).
    public var rsyncSum: UInt64?

    public init(length: Int64, checksum: Checksum, rsyncSum: UInt64? = nil) {
        self.length = length
        self.checksum = checksum
        self.rsyncSum = rsyncSum
    }
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

/// A parsed .template file: chunk index, image layout, image checksum.
///
/// Parsing reads the header, the DESC part and the chunk headers only; no data is decompressed.
public struct TemplateInfo: Sendable {
    public var path: String
    public var formatVersion: String
    public var creator: String
    public var checksumKind: ChecksumKind
    public var imageLength: Int64
    public var imageChecksum: Checksum
    public var rsyncBlockLength: UInt32
    public var chunks: [TemplateChunk]
    public var parts: [TemplatePart]
    /// Ordered, non-overlapping, contiguous areas covering the image; zero-length areas omitted.
    public var layout: [LayoutEntry]
    /// Total uncompressed size of the raw data (= bytes of the image held in the template).
    public var templateDataLength: Int64

    public static func read(_ file: ReadOnlyFile) throws -> TemplateInfo {
        try TemplateParser(file: file).parse()
    }

    public static func read(path: String) throws -> TemplateInfo {
        try read(ReadOnlyFile(path: path))
    }

    /// Index of the layout entry containing `offset` (binary search), nil outside the image.
    public func layoutIndex(containing offset: Int64) -> Int? {
        guard offset >= 0, offset < imageLength, !layout.isEmpty else { return nil }
        var lo = 0
        var hi = layout.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if layout[mid].imageOffset <= offset { lo = mid } else { hi = mid - 1 }
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

private struct TemplateParser {
    let file: ReadOnlyFile
    var path: String { file.path }

    func corrupt(_ message: String) -> JigdoError {
        JigdoError(.corruptTemplate, path: path, "not a valid jigdo template: \(message)")
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
        let desc = try file.read(at: descStart, count: Int(descLength))
        guard desc.starts(with: Array("DESC".utf8)), Int64(le48(desc, 4)) == descLength else {
            throw corrupt("no DESC part at offset \(descStart) (file truncated or corrupt)")
        }

        // Entries.
        var pos = 10
        let end = desc.count - 6
        var imageInfo: (length: Int64, sum: Checksum, block: UInt32, kind: ChecksumKind)?
        var parts: [TemplatePart] = []
        var layout: [LayoutEntry] = []
        var imageOffset: Int64 = 0
        var dataOffset: Int64 = 0
        func need(_ n: Int, _ what: String) throws {
            if pos + n > end { throw corrupt("DESC entry '\(what)' at DESC offset \(pos - 1) runs past the end of the DESC part") }
        }
        // Each length is below 2^48; stopping at 2^50 keeps the sums far from overflowing Int64
        // however many entries a corrupt DESC holds.
        func checkTotal() throws {
            if imageOffset > 1 << 50 { throw corrupt("DESC areas add up to more than 2^50 bytes") }
        }
        while pos < end {
            let type = desc[pos]
            pos += 1
            switch type {
            case 2:
                try need(6, "unmatched data")
                let len = Int64(le48(desc, pos)); pos += 6
                if len > 0 { layout.append(LayoutEntry(imageOffset: imageOffset, length: len, source: .templateData(dataOffset: dataOffset))) }
                imageOffset += len
                dataOffset += len
                try checkTotal()
            case 3, 6, 7, 9, 10:
                let sumLength = (type == 9 || type == 10) ? 32 : 16
                let hasRsync = type != 3
                try need(6 + (hasRsync ? 8 : 0) + sumLength, "matched file")
                let len = Int64(le48(desc, pos)); pos += 6
                var rsync: UInt64?
                if hasRsync {
                    rsync = UInt64(le48(desc, pos)) | (UInt64(desc[pos + 6]) << 48) | (UInt64(desc[pos + 7]) << 56)
                    pos += 8
                }
                let sum = Checksum(Array(desc[pos..<pos + sumLength])); pos += sumLength
                if len > 0 {
                    layout.append(LayoutEntry(imageOffset: imageOffset, length: len, source: .part(parts.count)))
                }
                parts.append(TemplatePart(length: len, checksum: sum, rsyncSum: rsync))
                imageOffset += len
                try checkTotal()
            case 1, 5, 8:
                let sumLength = type == 8 ? 32 : 16
                let hasBlock = type != 1
                try need(6 + sumLength + (hasBlock ? 4 : 0), "image info")
                let len = Int64(le48(desc, pos)); pos += 6
                let sum = Checksum(Array(desc[pos..<pos + sumLength])); pos += sumLength
                var block: UInt32 = 0
                if hasBlock {
                    block = UInt32(desc[pos]) | UInt32(desc[pos + 1]) << 8 | UInt32(desc[pos + 2]) << 16 | UInt32(desc[pos + 3]) << 24
                    pos += 4
                }
                if imageInfo != nil { throw corrupt("DESC holds more than one image information entry") }
                imageInfo = (len, sum, block, type == 8 ? .sha256 : .md5)
            default:
                throw corrupt("unknown DESC entry type \(type) at DESC offset \(pos - 1)")
            }
        }
        guard let imageInfo else { throw corrupt("DESC has no image information entry (type 5 or 8)") }
        guard imageOffset == imageInfo.length else {
            throw corrupt("DESC areas add up to \(imageOffset) bytes but the image is \(imageInfo.length) bytes")
        }
        for p in parts where p.checksum.kind != imageInfo.kind {
            throw corrupt("part checksum kind \(p.checksum.kind?.rawValue ?? "?") differs from the image's \(imageInfo.kind.rawValue)")
        }

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
        guard chunkDataOffset == dataOffset else {
            throw corrupt("data parts hold \(chunkDataOffset) bytes but DESC lists \(dataOffset) bytes of unmatched data")
        }
        return TemplateInfo(
            path: path, formatVersion: version, creator: creator, checksumKind: imageInfo.kind,
            imageLength: imageInfo.length, imageChecksum: imageInfo.sum, rsyncBlockLength: imageInfo.block,
            chunks: chunks, parts: parts, layout: layout, templateDataLength: dataOffset)
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
