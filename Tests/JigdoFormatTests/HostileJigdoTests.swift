import Foundation
@testable import JigdoFormat
import Testing
import TestSupport

/// Byte-level line reading and streaming decompression of .jigdo files (issue 9: a hostile
/// .jigdo of a million lines costs about a second and a few MiB). Figures: bench/hostile-jigdo.sh.
@Suite("Hostile .jigdo: streamed, byte-level parsing")
struct HostileJigdoTests {
    /// Every line of `bytes` through a LineReader fed `piece` bytes at a time.
    func lines(_ bytes: [UInt8], piece: Int, maxLine: Int = 1 << 20, capacity: Int = 16) throws -> [(String, Int)] {
        var offset = 0
        let reader = LineReader(maxLineLength: maxLine, overlongPrefix: 8, initialCapacity: capacity) { buffer in
            let n = min(piece, buffer.count, bytes.count - offset)
            guard n > 0 else { return 0 }
            bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
            offset += n
            return n
        }
        var out: [(String, Int)] = []
        while let line = try reader.next() { out.append((String(decoding: line.bytes, as: UTF8.self), line.length)) }
        return out
    }

    @Test("lines split at every LF, whatever the pieces the stream comes in")
    func lineSplitting() throws {
        let text = "a\r\n\nsecond line here\nlast without LF"
        let expected = text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        for piece in [1, 2, 3, 7, 64] {
            let got = try lines(Array(text.utf8), piece: piece)
            #expect(got.map(\.0) == expected, "piece \(piece)")
            #expect(got.map(\.1) == expected.map(\.utf8.count))
        }
        #expect(try lines(Array("x\n".utf8), piece: 1).map(\.0) == ["x", ""], "a final LF ends with an empty line")
        #expect(try lines([], piece: 1).map(\.0) == [""])
    }

    @Test("a line longer than the maximum comes as a prefix with its real length; the next lines are intact")
    func overlongLine() throws {
        let long = String(repeating: "0123456789", count: 10)
        let text = "short\n\(long)\nafter\n\(long)"
        for piece in [1, 5, 33] {
            let got = try lines(Array(text.utf8), piece: piece, maxLine: 32)
            #expect(got.map(\.0) == ["short", String(long.prefix(8)), "after", String(long.prefix(8))], "piece \(piece)")
            #expect(got.map(\.1) == [5, 100, 5, 100])
        }
    }

    /// `gunzipConcatenated`'s result through the stream with a tiny input buffer (every
    /// boundary case of the gzip magic and the members).
    func streamed(_ data: [UInt8], inputBuffer: Int, limit: Int = .max) throws -> [UInt8] {
        var offset = 0
        let stream = ConcatenatedGzipStream(limit: limit, inputBufferSize: inputBuffer) { buffer in
            let n = min(buffer.count, data.count - offset)
            guard n > 0 else { return 0 }
            data.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
            offset += n
            return n
        }
        var out: [UInt8] = []
        var piece = [UInt8](repeating: 0, count: 5)
        while true {
            let n = try piece.withUnsafeMutableBytes { try stream.read(into: $0) }
            if n == 0 { return out }
            out += piece[0..<n]
        }
    }

    @Test("plain text and gzip members in any order, streamed through tiny buffers")
    func concatenatedGzip() throws {
        let tmp = try TemporaryDirectory()
        let head = Array("[Jigdo]\nVersion=1.2\n\u{1f}not magic\n".utf8)
        let tail = Array(String(repeating: "Base=http://example.org/path/\n", count: 300).utf8)
        try writeBytes(head, to: tmp.file("head"))
        try writeBytes(tail, to: tmp.file("tail"))
        try Subprocess.shell("""
            { cat head; gzip -n -c tail; } > a
            { gzip -n -c head; cat tail; } > b
            { gzip -n -c head; gzip -n -c tail; cat head; printf '\\037'; } > c
            gzip -n -c tail > full; head -c $(( $(stat -c %s full) / 2 )) full > truncated
            """, cwd: tmp.path)
        let expected = ["a": head + tail, "b": head + tail, "c": head + tail + head + [0x1f]]
        for (file, content) in expected {
            let data = try readBytes(tmp.file(file))
            #expect(try Decompression.gunzipConcatenated(data) == content, "\(file)")
            for size in [2, 3, 17, 1 << 16] {
                #expect(try streamed(data, inputBuffer: size) == content, "\(file), buffer \(size)")
            }
        }
        let truncated = try readBytes(tmp.file("truncated"))
        for size in [2, 64, 1 << 16] {
            let e = try #require(throws: DecompressionFailure.self) { try streamed(truncated, inputBuffer: size) }
            #expect(e.description.contains("truncated"), "\(e)")
        }
        let big = try #require(throws: DecompressionFailure.self) { try streamed(try readBytes(tmp.file("a")), inputBuffer: 64, limit: 1 << 10) }
        #expect(big.description.contains("MiB"), "\(big)")
    }

    @Test("an over-long [Parts] value is ignored with a warning; an over-long [Image] line is an error; a long comment line is skipped")
    func overlongLines() throws {
        let tmp = try TemporaryDirectory()
        let huge = String(repeating: "x", count: JigdoDescriptor.maxLineLength + 10)
        let good = "[Jigdo]\nVersion=1.2\n[Image]\nFilename=x.iso\nTemplate=x.template\n"
        try (good + "[Comment]\n\(huge)\n[Parts]\n\(md5A)=Base:\(huge)\n\(md5A)=Base:kept\n[Servers]\nBase=http://a/\n")
            .write(toFile: tmp.file("parts.jigdo"), atomically: true, encoding: .utf8)
        let d = try JigdoDescriptor.load(path: tmp.file("parts.jigdo"))
        #expect(d.parts[md5A]?.map(\.value) == ["Base:kept"])
        #expect(d.warnings.contains { $0.contains("line 9") && $0.contains("ignoring a location of") }, "\(d.warnings)")

        try (good.replacingOccurrences(of: "Filename=x.iso", with: "Filename=\(huge)")).write(toFile: tmp.file("image.jigdo"), atomically: true, encoding: .utf8)
        let e = try #require(throws: JigdoError.self) { try JigdoDescriptor.load(path: tmp.file("image.jigdo")) }
        #expect(e.description.contains("line 4") && e.description.contains("longer than"), "\(e)")
    }

    @Test("more than maxContentSize of text (a gzip'd file, with its includes) is refused, naming the file")
    func contentBound() throws {
        let tmp = try TemporaryDirectory()
        // One [Comment] line of 70 MB: refused after 64 MiB, not held in memory.
        try Subprocess.shell("""
            { printf '[Comment]\\n'; head -c 70000000 /dev/zero | tr '\\0' x; } | gzip -1 > big.jigdo
            printf '[Jigdo]\\nVersion=1.2\\n[Image]\\nFilename=x.iso\\nTemplate=x.template\\n[Include big.jigdo]\\n' > main.jigdo
            """, cwd: tmp.path)
        for file in ["big.jigdo", "main.jigdo"] {
            let e = try #require(throws: JigdoError.self) { try JigdoDescriptor.load(path: tmp.file(file)) }
            #expect(e.description.contains("big.jigdo") && e.description.contains("\(JigdoDescriptor.maxContentSize >> 20) MiB"), "\(e)")
        }
    }

    @Test("200,000 lines of one [Servers] label: the loop is refused by name, and no more than maxValuesPerKey values are kept")
    func manyLines() throws {
        let tmp = try TemporaryDirectory()
        let head = "[Jigdo]\nVersion=1.2\n[Image]\nFilename=x.iso\nTemplate=x.template\n[Servers]\nBase=http://real/\n"
        try (head + String(repeating: "Base=Base:\n", count: 200_000)).write(toFile: tmp.file("loop.jigdo"), atomically: true, encoding: .utf8)
        let clock = ContinuousClock()
        let start = clock.now
        let e = try #require(throws: JigdoError.self) { try JigdoDescriptor.load(path: tmp.file("loop.jigdo")) }
        // A generous bound for a debug build on a loaded machine; a million lines take well
        // under a second in release (bench/hostile-jigdo.sh).
        #expect(clock.now - start < .seconds(30))
        #expect(e.description.contains("Base") && e.description.contains("refers to itself"), "\(e)")

        try (head + String(repeating: "Base=http://other/\n", count: 200_000)).write(toFile: tmp.file("many.jigdo"), atomically: true, encoding: .utf8)
        let d = try JigdoDescriptor.load(path: tmp.file("many.jigdo"))
        #expect(d.servers["Base"]?.count == JigdoDescriptor.maxValuesPerKey)
        #expect(d.warnings.filter { $0.contains("has more than") }.count == 1, "\(d.warnings)")
    }
}
