import Dispatch
import Foundation
import ImageAssembly
import JigdoFormat
import Synchronization
import Testing
import TestSupport

/// Issue 9: random reads inside a huge template chunk cost about one restart spacing, not
/// everything before them (figures: bench/template-chunk.sh).
@Suite("Random reads inside a huge template chunk")
struct HugeChunkTests {
    @Test("16 threads of random 4 KiB reads in a chunk of 1 GiB (zlib) and 256 MiB (bzip2): right bytes, bounded work",
          arguments: [false, true])
    func randomReads(_ bzip2: Bool) throws {
        let fixture = try HugeChunkImage.shared(bzip2: bzip2)
        let size = fixture.size
        let file = try ReadOnlyFile(path: fixture.template)
        let info = try TemplateInfo.read(file)
        try #require(info.chunks.count == 1 && info.chunks[0].uncompressedLength == Int(size))
        let reader = TemplateDataReader(file: file, info: info)

        // One read at the very end: a stream from the start passes every place once (and
        // records restart points on the way).
        try expectRead(reader, at: size - 4096)
        let afterFirst = reader.streamedDecompressedBytes
        #expect(afterFirst >= Int(size) - (1 << 20))
        #expect(reader.restartPoints.count >= (bzip2 ? 3 : 8), "restart points: \(reader.restartPoints)")
        #expect(reader.restartPoints.bytes < 1 << 20, "points of a zero chunk are small: \(reader.restartPoints)")

        // Then 16 threads, random places (behind every stream), each read checked.
        let offsets = HugeChunkImage.randomReads(16 * 12, size: size, seed: bzip2 ? 2 : 1)
        let failures = Mutex<[String]>([])
        let slowest = Mutex<Double>(0)
        DispatchQueue.concurrentPerform(iterations: 16) { t in
            for i in stride(from: t, to: offsets.count, by: 16) {
                let start = DispatchTime.now().uptimeNanoseconds
                do {
                    try expectRead(reader, at: offsets[i])
                } catch {
                    failures.withLock { $0.append("\(offsets[i]): \(error)") }
                }
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                slowest.withLock { $0 = max($0, seconds) }
            }
        }
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0.prefix(5) })")
        // The work per read: restart spacing plus a window or so (a bzip2 block of zeros holds
        // up to ~45 MB); without restart points, half the chunk on average.
        let perRead = (reader.streamedDecompressedBytes - afterFirst) / offsets.count
        #expect(perRead < (bzip2 ? 48 : 8) << 20, "decompressed \(perRead >> 10) KiB per random read")
        // A generous bound (the bench has the figures).
        #expect(slowest.withLock { $0 } < 20, "slowest read: \(slowest.withLock { $0 }) s")
    }

    func expectRead(_ reader: TemplateDataReader, at offset: Int64) throws {
        var buffer = [UInt8](repeating: 0xEE, count: 4096)
        try buffer.withUnsafeMutableBytes { try reader.read(at: offset, into: $0) }
        for (i, b) in buffer.enumerated() where b != HugeChunkImage.byte(at: offset + Int64(i)) {
            throw FixtureError("byte \(offset + Int64(i)) is \(b), expected \(HugeChunkImage.byte(at: offset + Int64(i)))")
        }
    }
}
