import ImageAssembly
import JigdoFormat
import Testing
import TestSupport

/// TemplateDataReader's chunk cache: a template chunk is decompressed once for many reads.
@Suite("TemplateDataReader: each chunk decompressed once for many reads")
struct TemplateDataReaderTests {
    /// A template of several DATA (zlib) or BZIP (bzip2) chunks of some KB each, written with
    /// python's zlib/bz2 (not our code), in a temp dir; no parts.
    static let script = """
        import bz2, hashlib, sys, zlib
        out, kind = sys.argv[1], sys.argv[2]
        le = lambda v, n: v.to_bytes(n, "little")
        chunks, image = b"", b""
        for i, size in enumerate([5000, 12000, 700, 9000, 3000, 16000, 1, 8000]):
            data = bytes((j * 7 + i * 31 + (j >> 9)) & 255 for j in range(size))
            image += data
            packed = bz2.compress(data, 9) if kind == "bzip2" else zlib.compress(data, 6)
            chunks += (b"BZIP" if kind == "bzip2" else b"DATA") + le(16 + len(packed), 6) + le(size, 6) + packed
        header = b"JigsawDownload template 1.1 jigdo-file/0.8.0\\r\\nchunk cache fixture\\r\\n\\r\\n"
        entries = bytes([2]) + le(len(image), 6) + bytes([5]) + le(len(image), 6) + hashlib.md5(image).digest() + le(1024, 4)
        desc = b"DESC" + le(len(entries) + 16, 6) + entries + le(len(entries) + 16, 6)
        open(out + "/chunks.template", "wb").write(header + chunks + desc)
        open(out + "/image", "wb").write(image)
        """

    /// The template (file and parsed), and the raw data its chunks hold (made by python).
    func template(_ kind: String, in dir: TemporaryDirectory) throws -> (ReadOnlyFile, TemplateInfo, [UInt8]) {
        let r = try Subprocess.run("/usr/bin/python3", ["-c", Self.script, dir.path, kind])
        guard r.status == 0 else { throw FixtureError("chunk fixture: \(r.stderr)") }
        let file = try ReadOnlyFile(path: dir.file("chunks.template"))
        return (file, try TemplateInfo.read(file), try readBytes(dir.file("image")))
    }

    /// Reads `length` bytes at `offset` in pieces of `piece`.
    func readInPieces(_ reader: TemplateDataReader, offset: Int64, length: Int, piece: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        var done = 0
        while done < length {
            let n = min(piece, length - done)
            var buffer = [UInt8](repeating: 0, count: n)
            try buffer.withUnsafeMutableBytes { try reader.read(at: offset + Int64(done), into: $0) }
            out += buffer
            done += n
        }
        return out
    }

    @Test("many small reads of every chunk, twice over: each chunk decompressed exactly once (zlib and bzip2)",
          arguments: ["zlib", "bzip2"])
    func smallChunksOnce(_ kind: String) throws {
        let tmp = try TemporaryDirectory()
        let (file, info, raw) = try template(kind, in: tmp)
        let chunks = info.chunks.filter { $0.uncompressedLength > 0 }
        try #require(chunks.count == 8, "the fixture has \(chunks.count) chunks")
        let reader = TemplateDataReader(file: file, info: info)
        let length = Int(info.templateDataLength)
        try #require(length == raw.count)
        let first = try readInPieces(reader, offset: 0, length: length, piece: 97)
        #expect(first == raw)
        #expect(reader.wholeChunkDecompressions == chunks.count)
        // The same bytes again (other piece boundaries): all from the cache.
        let second = try readInPieces(reader, offset: 0, length: length, piece: 61)
        #expect(second == first)
        #expect(reader.wholeChunkDecompressions == chunks.count)
        #expect(reader.streamedDecompressedBytes == 0)
    }

    @Test("a cache too small for two chunks decompresses a chunk again once it was evicted")
    func evictedChunkIsDecompressedAgain() throws {
        let tmp = try TemporaryDirectory()
        let (file, info, _) = try template("zlib", in: tmp)
        let chunks = info.chunks.filter { $0.uncompressedLength > 0 }
        try #require(chunks.count == 8)
        let a = chunks[0], b = chunks[1]
        // Room for the larger of the two, not for both.
        let reader = TemplateDataReader(file: file, info: info, cacheBudget: max(a.uncompressedLength, b.uncompressedLength))
        var byte = [UInt8](repeating: 0, count: 1)
        for _ in 0..<3 { try byte.withUnsafeMutableBytes { try reader.read(at: a.dataOffset, into: $0) } }
        #expect(reader.wholeChunkDecompressions == 1)
        try byte.withUnsafeMutableBytes { try reader.read(at: b.dataOffset, into: $0) }
        #expect(reader.wholeChunkDecompressions == 2)
        try byte.withUnsafeMutableBytes { try reader.read(at: a.dataOffset, into: $0) }
        #expect(reader.wholeChunkDecompressions == 3)
    }

    @Test("chunks read front to back as streams, in small reads: every byte decompressed once (the stream is kept between reads)",
          arguments: ["zlib", "bzip2"])
    func streamedChunksOnce(_ kind: String) throws {
        let tmp = try TemporaryDirectory()
        let (file, info, expected) = try template(kind, in: tmp)
        let length = Int(info.templateDataLength)
        try #require(length == expected.count)
        // Every chunk streamed, in windows of 512 bytes; reads of 97 bytes straddle windows.
        let streamed = TemplateDataReader(file: file, info: info, largeChunkThreshold: 0, windowSize: 512)
        let got = try readInPieces(streamed, offset: 0, length: length, piece: 97)
        #expect(got == expected)
        #expect(streamed.streamedDecompressedBytes == length)
        #expect(streamed.wholeChunkDecompressions == 0)
    }
}
