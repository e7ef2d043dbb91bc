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
