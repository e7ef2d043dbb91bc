import Foundation
@testable import JigdoFormat
import Testing

/// `Checksum` as an inline value: its bytes, order, hashing, and what builds one from untrusted
/// input (jigdo Base64, a cache's blob) refuses.
@Suite struct ChecksumValueTests {
    static func bytes(_ n: Int, seed: UInt8) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37) ^ seed } }

    @Test("16 and 32 bytes round-trip through bytes, withUnsafeBytes, Base64 and hex")
    func roundTrip() {
        for n in [16, 32] {
            let b = Self.bytes(n, seed: 0xA5)
            let c = Checksum(b)
            #expect(c.bytes == b)
            #expect(c.byteCount == n)
            #expect(c.withUnsafeBytes { Array($0) } == b)
            #expect(c.kind == (n == 16 ? .md5 : .sha256))
            #expect(JigdoBase64.decodeChecksum(c.base64) == c)
            #expect(c.hex == b.map { String(format: "%02x", $0) }.joined())
        }
    }

    @Test("no checksum of another length is made from untrusted bytes or text")
    func otherLengthsRefused() {
        for n in [0, 1, 15, 17, 20, 31, 33, 64] {
            let b = Self.bytes(n, seed: 1)
            #expect(b.withUnsafeBytes { Checksum(validating: $0) } == nil, "\(n) bytes")
            #expect(JigdoBase64.decodeChecksum(JigdoBase64.encode(b)) == nil, "\(n) bytes as Base64")
        }
        #expect(JigdoBase64.decodeChecksum(String(repeating: "A", count: 21) + "!") == nil, "outside the alphabet")
        #expect(JigdoBase64.decodeChecksum(String(repeating: "A", count: 22)) == Checksum([UInt8](repeating: 0, count: 16)))
    }

    @Test("== and hashing see every used byte and the length; < is the bytes' lexicographic order")
    func equalityHashingOrder() {
        let a = Self.bytes(32, seed: 7)
        var sums = [Checksum(a), Checksum(Array(a.prefix(16)))]
        for i in [0, 7, 8, 15, 16, 24, 31] {
            var b = a
            b[i] ^= 0x80
            sums.append(Checksum(b))
        }
        #expect(Set(sums).count == sums.count, "each differs from the others")
        #expect(Set(sums + sums.map { Checksum($0.bytes) }).count == sums.count, "equal values hash equal")
        // Shorter first, then memcmp order.
        let sorted = sums.sorted()
        for (x, y) in zip(sorted, sorted.dropFirst()) {
            #expect(x.byteCount < y.byteCount || (x.byteCount == y.byteCount && x.bytes.lexicographicallyPrecedes(y.bytes)))
        }
        #expect(MemoryLayout<Checksum>.size <= 40, "inline: four words and a length")
    }

    @Test("TemplateParts groups: first occurrence of each checksum, parts of length 0 left out, one entry per distinct checksum in order")
    func groups() {
        let s = (0..<4).map { Checksum(Self.bytes(16, seed: UInt8(9 - $0))) }
        let parts: [TemplatePart] = [
            .init(length: 5, checksum: s[0]), .init(length: 0, checksum: s[1]), .init(length: 5, checksum: s[1]),
            .init(length: 5, checksum: s[0]), .init(length: 7, checksum: s[2]), .init(length: 5, checksum: s[1]),
            .init(length: 0, checksum: s[3]),
        ]
        let g = TemplateParts(parts, checksumKind: .md5).checksumGroups()
        #expect(g.first == [0, -1, 2, 0, 4, 2, -1])
        #expect(g.distinct.count == 3)
        #expect(Set(g.distinct) == [0, 2, 4])
        #expect(g.distinct.map { parts[Int($0)].checksum } == g.distinct.map { parts[Int($0)].checksum }.sorted())
        #expect(TemplateParts(parts, checksumKind: .md5).distinctCount == g.distinct.count)
    }
}
