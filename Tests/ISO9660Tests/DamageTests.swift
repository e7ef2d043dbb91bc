import Foundation
import ISO9660
import JigdoFormat
import TestSupport
import Testing

/// Little-endian + big-endian 32-bit field (ECMA-119 "both-byte orders").
private func setBoth32(_ b: inout [UInt8], _ at: Int, _ v: UInt32) {
    for i in 0..<4 {
        b[at + i] = UInt8((v >> (8 * UInt32(i))) & 0xFF)
        b[at + 7 - i] = UInt8((v >> (8 * UInt32(i))) & 0xFF)
    }
}

private func le32(_ b: [UInt8], _ at: Int) -> Int {
    (0..<4).reduce(0) { $0 | Int(b[at + $1]) << (8 * $1) }
}

/// Offset of the record with ISO identifier `id` in the directory at byte `dir` (one sector).
private func recordOffset(_ b: [UInt8], dir: Int, _ id: String) -> Int? {
    var pos = dir
    while pos < dir + 2048, b[pos] != 0 {
        let len = Int(b[pos])
        let idLen = Int(b[pos + 32])
        let ident = String(decoding: b[(pos + 33)..<(pos + 33 + idLen)], as: UTF8.self)
        if ident == id || ident.hasPrefix(id + ";") { return pos }
        pos += len
    }
    return nil
}

private func rrBytes() throws -> [UInt8] {
    try ReadOnlyFile(path: rockRidgeFixture.get() + "/rr.iso").readAll()
}

private func expectDamaged(_ bytes: [UInt8], _ what: Comment, _ body: (ISO9660Volume) throws -> Void) {
    do {
        let v = try ISO9660Volume.open(MemoryImage(bytes), name: "bad.iso")
        try body(v)
        Issue.record("no error: \(what)")
    } catch let e as ISO9660Error {
        #expect(e.kind == .damaged, "\(what): \(e)")
        #expect(e.description.hasPrefix("bad.iso: "))
    } catch {
        Issue.record("\(what): unexpected error \(error)")
    }
}

private func walkAll(_ v: ISO9660Volume) throws {
    try ISOListing.walk(v, from: v.root, path: "/") { _, _, _ in }
}

@Suite struct DamagedImages {
    @Test func notAnISO() throws {
        for bytes in [[UInt8](repeating: 0, count: 100_000), [UInt8](repeating: 0, count: 100), Array("hello".utf8)] {
            do {
                _ = try ISO9660Volume.open(MemoryImage(bytes), name: "x.img")
                Issue.record("opened a non-ISO")
            } catch let e as ISO9660Error {
                #expect(e.kind == .notISO9660)
                #expect(e.description.contains("not an ISO 9660 image"))
            }
        }
    }

    @Test func directoryPointingAtItselfOrAnAncestor() throws {
        let good = try rrBytes()
        let rootLBA = le32(good, 32768 + 156 + 2)
        let root = rootLBA * 2048
        // /A -> the root's own extent.
        var selfLoop = good
        let a = try #require(recordOffset(good, dir: root, "A"))
        setBoth32(&selfLoop, a + 2, UInt32(rootLBA))
        expectDamaged(selfLoop, "root lists itself") { try walkAll($0) }
        // /A/B -> the root: a cycle of two.
        let aLBA = le32(good, a + 2)
        let b = try #require(recordOffset(good, dir: aLBA * 2048, "B"))
        var cycle = good
        setBoth32(&cycle, b + 2, UInt32(rootLBA))
        expectDamaged(cycle, "a/b is the root") { try walkAll($0) }
        expectDamaged(cycle, "a/b is the root (lookup)") { v in _ = try v.list(v.lookup("/a/b")) }
    }

    @Test func lengthsOutOfBounds() throws {
        let good = try rrBytes()
        let root = le32(good, 32768 + 156 + 2) * 2048
        let a = try #require(recordOffset(good, dir: root, "A"))
        var far = good
        setBoth32(&far, a + 2, 0x7FFF_FFFF)
        expectDamaged(far, "extent past the end") { v in _ = try v.list(v.lookup("a")) }
        var huge = good
        setBoth32(&huge, a + 10, 0xFFFF_FFFF)
        expectDamaged(huge, "4 GiB directory") { v in _ = try v.list(v.lookup("a")) }
        var shortRecord = good
        shortRecord[a] = 20
        expectDamaged(shortRecord, "record shorter than 34") { v in _ = try v.list(v.root) }
        var idTooLong = good
        idTooLong[a + 32] = 250
        expectDamaged(idTooLong, "identifier longer than the record") { v in _ = try v.list(v.root) }
        var blockSize = good
        blockSize[32768 + 128] = 0x37
        expectDamaged(blockSize, "block size") { _ in }
        let truncated = Array(good[0..<(root + 100)])
        expectDamaged(truncated, "image ends inside the root directory") { try walkAll($0) }
    }

    /// Random byte flips in the descriptors and directories: every outcome is a listing or an
    /// error, never a crash or a hang.
    @Test func randomFlipsNeverCrash() throws {
        let good = try rrBytes()
        var rng = SeededRandom(seed: 20261125) // fixed: a failure can be replayed
        let rootLBA = le32(good, 32768 + 156 + 2)
        let end = min(good.count, (rootLBA + 40) * 2048)
        var errors = 0
        for round in 0..<400 {
            var bad = good
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                let at = round % 4 == 0 ? Int.random(in: 32768..<(32768 + 3 * 2048), using: &rng)
                                        : Int.random(in: (rootLBA * 2048)..<end, using: &rng)
                bad[at] = UInt8.random(in: 0...255, using: &rng)
            }
            do {
                let v = try ISO9660Volume.open(MemoryImage(bad), name: "fuzz.iso")
                try ISOListing.walk(v, from: v.root, path: "/") { _, _, children in
                    for c in children where c.type == .regular { _ = try? v.contents(of: c, limit: 1 << 20) }
                }
            } catch is ISO9660Error {
                errors += 1
            } catch let e as JigdoError {
                Issue.record("byte source error \(e)")
            }
        }
        #expect(errors > 0)
    }
}
