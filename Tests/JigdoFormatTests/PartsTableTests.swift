@testable import JigdoFormat
import TestSupport
import Testing

/// `JigdoPartsTable`: the `[Parts]` section held compactly, answering as the dictionary did.
@Suite struct PartsTableTests {
    @Test("locations per key in file order, interleaved keys, shared bases, non-checksum and non-canonical keys kept apart")
    func answersAsTheDictionaryDid() throws {
        let a = Checksum((0..<32).map { UInt8($0) }), b = Checksum((0..<16).map { UInt8(200 - $0) })
        // The same 32 bytes with other bits in the last character's unused bits: not a's key.
        var odd = Array(a.base64.utf8)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        odd[odd.count - 1] = alphabet[Int(JigdoBase64.value(of: odd[odd.count - 1])! ^ 1)]
        let oddKey = String(decoding: odd, as: UTF8.self)
        #expect(JigdoBase64.decodeChecksum(oddKey) == a, "decodes to a, but is not its canonical text")
        let dict: [String: [JigdoLocation]] = [
            a.base64: [JigdoLocation(value: "L:pool/a", base: "/srv/", weight: 3), JigdoLocation(value: "http://h/ä b", base: "http://x/", weight: -2)],
            b.base64: [JigdoLocation(value: "L:pool/b", base: "/srv/")],
            "not a checksum": [JigdoLocation(value: "x", base: "/srv/")],
            oddKey: [JigdoLocation(value: "odd", base: "/srv/")],
        ]
        var t = JigdoPartsTable()
        // Interleaved, as includes and repeated sections give them.
        try t.append(dict[a.base64]![0], for: a.base64)
        try t.append(dict[b.base64]![0], for: b.base64)
        try t.append(dict["not a checksum"]![0], for: "not a checksum")
        try t.append(dict[oddKey]![0], for: oddKey)
        try t.append(dict[a.base64]![1], for: a.base64)
        #expect(t.count == 4)
        for (k, v) in dict { #expect(t[k] == v, "\(k)") }
        #expect(t.locations(for: a) == dict[a.base64])
        #expect(t.locations(for: b) == dict[b.base64])
        #expect(t.valueCount(for: a.base64) == 2 && t.valueCount(for: "nothing") == 0)
        #expect(t["nothing"] == nil && t.locations(for: Checksum([UInt8](repeating: 7, count: 16))) == nil)
        #expect(Set(t.keys) == Set(dict.keys))
        #expect(t.mapValues { $0.map(\.value) } == dict.mapValues { $0.map(\.value) })
        #expect(JigdoPartsTable(dict).mapValues { $0 } == dict)
    }

    @Test("checksums that share their first 8 bytes are told apart")
    func sharedPrefix() throws {
        let sums = (0..<5).map { i in Checksum((0..<32).map { $0 < 8 ? 0xEE : UInt8(i * 7 + $0) }) }
        var t = JigdoPartsTable()
        for round in 0..<2 {
            for (i, s) in sums.enumerated() { try t.append(JigdoLocation(value: "L:\(i)/\(round)", base: "/"), for: s.base64) }
        }
        t.shrink()
        #expect(t.count == 5)
        for (i, s) in sums.enumerated() {
            #expect(t.locations(for: s)?.map(\.value) == ["L:\(i)/0", "L:\(i)/1"])
            #expect(t[s.base64]?.count == 2)
        }
        #expect(Set(t.keys) == Set(sums.map(\.base64)))
    }
    @Test("20,000 keys: every one found with its locations in file order before and after shrink, absent ones not found, append after shrink")
    func manyKeys() throws {
        var g = SeededRandom(seed: 21)
        let sums = (0..<20_000).map { _ in Checksum((0..<32).map { _ in UInt8.random(in: 0...255, using: &g) }) }
        var t = JigdoPartsTable()
        // Every 7th key has a second location, given after all first ones (as an [Include]).
        for (i, s) in sums.enumerated() { try t.append(JigdoLocation(value: "Debian:pool/\(i)", base: "/a/", weight: i % 3), for: s.base64) }
        for (i, s) in sums.enumerated() where i % 7 == 0 { try t.append(JigdoLocation(value: "Other:\(i)", base: "/b/"), for: s.base64) }
        func check(_ t: JigdoPartsTable, _ when: String) {
            #expect(t.count == sums.count, "\(when)")
            var wrong = 0
            for (i, s) in sums.enumerated() {
                var expected = [JigdoLocation(value: "Debian:pool/\(i)", base: "/a/", weight: i % 3)]
                if i % 7 == 0 { expected.append(JigdoLocation(value: "Other:\(i)", base: "/b/")) }
                if t.locations(for: s) != expected || t[s.base64] != expected || t.valueCount(for: s.base64) != expected.count { wrong += 1 }
            }
            #expect(wrong == 0, "\(when): \(wrong) keys answered wrongly")
            let absent = (0..<2_000).map { _ in Checksum((0..<32).map { _ in UInt8.random(in: 0...255, using: &g) }) }
            #expect(absent.allSatisfy { t.locations(for: $0) == nil }, "\(when)")
            #expect(Set(t.keys) == Set(sums.map(\.base64)), "\(when)")
        }
        check(t, "growing")
        t.shrink()
        check(t, "shrunk")
        try t.append(JigdoLocation(value: "late", base: "/c/"), for: sums[1].base64)
        #expect(t.locations(for: sums[1])?.map(\.value) == ["Debian:pool/1", "late"])
        #expect(t.locations(for: sums[0])?.map(\.value) == ["Debian:pool/0", "Other:0"])
        t.shrink()
        #expect(t.locations(for: sums[1])?.map(\.value) == ["Debian:pool/1", "late"])
        #expect(t.locations(for: sums[19_998])?.map(\.value) == ["Debian:pool/19998"])
    }

    @Test("MD5 and SHA256 keys in one file: each found, a SHA256 whose first 16 bytes are an MD5 key is another key")
    func mixedLengths() throws {
        let md5 = (0..<100).map { i in Checksum((0..<16).map { UInt8(truncatingIfNeeded: i * 31 + $0) }) }
        // Its first 16 bytes are md5[i]'s, the rest zeros: only the length tells them apart.
        let sha = md5.map { Checksum($0.bytes + [UInt8](repeating: 0, count: 16)) }
        var t = JigdoPartsTable()
        for (i, s) in md5.enumerated() where i < 50 { try t.append(JigdoLocation(value: "m\(i)", base: "/"), for: s.base64) }
        #expect(t.locations(for: sha[0]) == nil, "no SHA256 key yet")
        for (i, s) in sha.enumerated() where i % 2 == 0 { try t.append(JigdoLocation(value: "s\(i)", base: "/"), for: s.base64) }
        for (i, s) in md5.enumerated() where i >= 50 { try t.append(JigdoLocation(value: "m\(i)", base: "/"), for: s.base64) }
        try t.append(JigdoLocation(value: "x", base: "/"), for: "not a checksum")
        for round in ["growing", "shrunk"] {
            if round == "shrunk" { t.shrink() }
            #expect(t.count == 151, "\(round)")
            for i in md5.indices {
                #expect(t.locations(for: md5[i])?.map(\.value) == ["m\(i)"], "\(round) \(i)")
                #expect(t.locations(for: sha[i])?.map(\.value) == (i % 2 == 0 ? ["s\(i)"] : nil), "\(round) \(i)")
            }
            #expect(t["not a checksum"]?.map(\.value) == ["x"])
            #expect(Set(t.keys) == Set(md5.map(\.base64) + sha.enumerated().filter { $0.offset % 2 == 0 }.map(\.element.base64) + ["not a checksum"]))
        }
    }

    @Test("adopting the template's part list: lookups answer as before (duplicate parts, parts without locations, keys the template lacks, other keys), a copy made before is unchanged, append after")
    func adoptTemplateParts() throws {
        var g = SeededRandom(seed: 99)
        let sums = (0..<3_000).map { _ in Checksum((0..<32).map { _ in UInt8.random(in: 0...255, using: &g) }) }
        // Parts 0..<2000 have [Parts] keys, 2000..<2500 none; 2500..<3000 are keys the template
        // lacks; part i + 2000 repeats part i's checksum for i < 100 (the same file twice).
        var partList = (0..<2_500).map { TemplatePart(length: Int64($0 + 1), checksum: sums[$0]) }
        for i in 0..<100 { partList.append(TemplatePart(length: Int64(i + 1), checksum: sums[i])) }
        let parts = TemplateParts(partList, checksumKind: .sha256)
        var t = JigdoPartsTable()
        for i in 0..<2_000 { try t.append(JigdoLocation(value: "D:\(i)", base: "/a/"), for: sums[i].base64) }
        for i in 2_500..<3_000 { try t.append(JigdoLocation(value: "X:\(i)", base: "/a/"), for: sums[i].base64) }
        for i in stride(from: 0, to: 3_000, by: 10) where i < 2_000 || i >= 2_500 {
            try t.append(JigdoLocation(value: "second:\(i)", base: "/b/", weight: -1), for: sums[i].base64)
        }
        try t.append(JigdoLocation(value: "x", base: "/"), for: "not a checksum")
        // A key whose first 8 bytes are a template part's: only the whole checksum counts.
        let twin = Checksum(Array(sums[5].bytes.prefix(8)) + [UInt8](repeating: 1, count: 24))
        try t.append(JigdoLocation(value: "twin", base: "/"), for: twin.base64)
        t.shrink()
        let before = t
        let answers = sums.map { t.locations(for: $0) }
        let bytesBefore = t.heldBytes
        t.adopt(parts)
        #expect(t.heldBytes < bytesBefore - 2_000 * 24, "\(bytesBefore) -> \(t.heldBytes) bytes")
        for (which, table) in [("adopted", t), ("copy made before", before)] {
            #expect(sums.indices.filter { table.locations(for: sums[$0]) != answers[$0] }.isEmpty, "\(which)")
            #expect((0..<parts.count).allSatisfy { table.locations(for: parts.checksum($0)) == answers[$0 < 2_500 ? $0 : $0 - 2_500] }, "\(which): by part number")
            #expect(table.locations(for: sums[2_100]) == nil && table.locations(for: sums[2_601])?.map(\.value) == ["X:2601"], "\(which)")
            #expect(table.locations(for: sums[20])?.map(\.value) == ["D:20", "second:20"], "\(which)")
            #expect(table.locations(for: twin)?.map(\.value) == ["twin"] && table["not a checksum"]?.map(\.value) == ["x"], "\(which)")
            #expect(table.count == 2_502 && Set(table.keys).count == 2_502, "\(which)")
        }
        try t.append(JigdoLocation(value: "late", base: "/c/"), for: sums[7].base64)
        try t.append(JigdoLocation(value: "new", base: "/c/"), for: sums[2_200].base64)
        #expect(t.locations(for: sums[7])?.map(\.value) == ["D:7", "late"])
        #expect(t.locations(for: sums[2_200])?.map(\.value) == ["new"])
        #expect(t.locations(for: sums[2_999])?.map(\.value) == ["X:2999"])
        t.shrink()
        t.adopt(parts)
        #expect(t.locations(for: sums[2_200])?.map(\.value) == ["new"] && t.locations(for: twin)?.map(\.value) == ["twin"])
        #expect(before.locations(for: sums[7])?.map(\.value) == ["D:7"], "the copy made before is its own")
    }

    @Test("a part costs about 70 bytes once the table is complete, about 42 once it took the template's checksums (SHA256, one location of 17 bytes)")
    func bytesPerPart() throws {
        var g = SeededRandom(seed: 7)
        var t = JigdoPartsTable()
        let sums = (0..<50_000).map { _ in Checksum((0..<32).map { _ in UInt8.random(in: 0...255, using: &g) }) }
        for (i, sum) in sums.enumerated() {
            let n = String(i)
            try t.append(JigdoLocation(value: "Scale:1/000/" + String(repeating: "0", count: 5 - n.count) + n, base: "/srv/"), for: sum.base64)
        }
        t.shrink()
        // 32 checksum + 4 index / (3/4) + 4 slot start + 12 location + 17 text.
        let perPart = Double(t.heldBytes) / 50_000
        #expect(perPart < 72, "\(perPart) bytes a part (was ~121: a prefix dictionary, a [Checksum] copy, linked entries)")
        t.adopt(TemplateParts(sums.map { TemplatePart(length: 1, checksum: $0) }, checksumKind: .sha256))
        let adopted = Double(t.heldBytes) / 50_000
        #expect(adopted < 44, "\(adopted) bytes a part: a 4-byte reference instead of the checksum")
    }
}

/// `LocationResolver.mayHaveLocalLocation`: the mount's cheap question for every part agrees
/// with the expansion wherever it says no.
@Suite struct LocalLocationPrecheckTests {
    @Test("no only where every location is remote; --map, file: labels and unlabelled values say maybe")
    func agreesWithExpansion() throws {
        let b = try #require(JigdoBase64.decodeChecksum(md5B)), a = try #require(JigdoBase64.decodeChecksum(md5A))
        let text = imageSection + """
        [Servers]
        Remote=http://mirror/debian/
        Chain=Remote:sub/
        Local=file:/srv/pool/
        Rel=sub/
        MD5Sum=http://by-sum/
        [Parts]
        \(md5A)=Remote:pool/a
        \(md5A)=Chain:pool/a2
        \(md5B)=Rel:b
        """
        let d = try parse(text)
        var r = LocationResolver(descriptor: d)
        func check(_ sum: Checksum) -> Bool {
            let hasLocal = r.locations(forPart: sum).contains { if case .local = $0 { true } else { false } }
            let maybe = r.mayHaveLocalLocation(forPart: sum)
            #expect(maybe || !hasLocal, "\(sum): says no but expands to a local path")
            return maybe
        }
        #expect(check(a) == false, "remote labels only, through a chain")
        #expect(check(b) == true, "a label of a relative value: a local path")
        #expect(check(Checksum([UInt8](repeating: 3, count: 16))) == false, "no [Parts] entry: the remote MD5Sum label")
        r.prepend = ["Remote": [JigdoLocation(value: "/srv/mirror/", base: "/")]]
        #expect(check(a) == true, "--map makes the label local")
        var local = LocationResolver(descriptor: try parse(imageSection + "[Parts]\n\(md5A)=Local:a\n\(md5B)=relative/b\n"))
        local.allowLocalFromJigdo = true
        r = local
        #expect(check(a) == true)
        #expect(check(b) == true)
    }
}
