@testable import JigdoFormat
import PartSources
import Testing

/// `PartMap`: the runs `status --map` gets, exact when few, bounded when many.
@Suite struct PartMapTests {
    /// An image of `parts` parts, each of `partLength` bytes followed by `padding` template
    /// bytes (as an ISO pads a file to its sector's end); part i has checksum i.
    static func template(parts: Int, partLength: Int64, padding: Int64) -> TemplateInfo {
        var layout: [LayoutEntry] = []
        var offset: Int64 = 0
        var data: Int64 = 0
        for i in 0..<parts {
            layout.append(LayoutEntry(imageOffset: offset, length: partLength, source: .part(i)))
            offset += partLength
            layout.append(LayoutEntry(imageOffset: offset, length: padding, source: .templateData(dataOffset: data)))
            offset += padding
            data += padding
        }
        let sums = (0..<parts).map { i in Checksum((0..<16).map { UInt8(truncatingIfNeeded: i >> ($0 % 4 * 8)) ^ UInt8($0) }) }
        return TemplateInfo(path: "t", formatVersion: "1.1", creator: "test", checksumKind: .md5, imageLength: offset,
                            imageChecksum: Checksum([UInt8](repeating: 0, count: 16)), rsyncBlockLength: 1024, chunks: [],
                            parts: TemplateParts(sums.map { TemplatePart(length: partLength, checksum: $0) }, checksumKind: .md5),
                            layout: TemplateLayout(layout),
                            templateDataLength: data)
    }

    static func checkCoverage(_ map: PartMap, size: Int64) {
        var next: Int64 = 0
        for (i, run) in map.runs.enumerated() {
            #expect(run.offset == next && run.length > 0)
            if i > 0 { #expect(run.state != map.runs[i - 1].state) }
            next = run.offset + run.length
        }
        #expect(next == size)
    }

    @Test("few runs: one per stretch of equal state, template padding between parts kept")
    func exact() {
        let t = Self.template(parts: 6, partLength: 5000, padding: 120)
        let states: [PartMap.State] = [.local, .local, .cached, .missing, .inFlight, .missing]
        let map = PartMap(template: t, states: states)
        #expect(map.bucketBytes == nil)
        #expect(map.runs.count == 12)
        #expect(map.runs.map(\.state) == [.local, .template, .local, .template, .cached, .template, .missing, .template, .inFlight, .template, .missing, .template])
        #expect(map.bytes == ["template": 720, "local": 10000, "cached": 5000, "missing": 10000, "inFlight": 5000])
        #expect(map.parts == ["local": 2, "cached": 1, "missing": 2, "inFlight": 1])
        Self.checkCoverage(map, size: t.imageLength)
    }

    @Test("50,000 parts in mixed states: at most 1,024 runs covering the image, figures still exact")
    func bounded() {
        let n = 50_000
        let t = Self.template(parts: n, partLength: 70_000, padding: 1_680)
        let cycle: [PartMap.State] = [.local, .cached, .missing, .local, .local, .inFlight, .cached]
        let states = (0..<n).map { i in i < n / 2 ? cycle[i % cycle.count] : .cached }
        let map = PartMap(template: t, states: states)
        #expect(map.runs.count <= PartMap.maxRuns)
        #expect(map.bucketBytes == (t.imageLength + Int64(PartMap.maxRuns) - 1) / Int64(PartMap.maxRuns))
        Self.checkCoverage(map, size: t.imageLength)
        // The first half has an in-flight part in every bucket; the second half is all cached
        // (its parts' padding loses to them).
        #expect(map.runs.first?.state == .inFlight)
        #expect(map.runs.last?.state == .cached)
        #expect(map.runs.count == 2 || map.runs.count == 3)
        #expect(map.bytes["template"] == Int64(n) * 1_680)
        #expect(map.parts["cached"] == n / 2 + (0..<(n / 2)).filter { cycle[$0 % cycle.count] == .cached }.count)
        #expect(map.parts.values.reduce(0, +) == n)
    }

    @Test("cells: the state of highest rank among the bytes of each cell; a cell narrower than a byte shows its byte")
    func cells() {
        let runs = [PartMap.Run(offset: 0, length: 10, state: .template), PartMap.Run(offset: 10, length: 1, state: .missing),
                    PartMap.Run(offset: 11, length: 9, state: .local)]
        #expect(PartMap.cells(runs, size: 20, count: 4) == [.template, .template, .missing, .local])
        #expect(PartMap.cells(runs, size: 20, count: 1) == [.missing])
        #expect(PartMap.cells(runs, size: 20, count: 40).filter { $0 == .missing }.count == 2)
        #expect(PartMap.cells([], size: 0, count: 3) == [.template, .template, .template])
    }

    /// A template whose part i has checksum `ids[i]` (equal ids: the same file twice).
    static func template(ids: [Int], partLength: Int64 = 100) -> TemplateInfo {
        var layout: [LayoutEntry] = []
        for i in ids.indices { layout.append(LayoutEntry(imageOffset: Int64(i) * partLength, length: partLength, source: .part(i))) }
        let parts = ids.map { id in TemplatePart(length: partLength, checksum: Checksum((0..<16).map { UInt8(truncatingIfNeeded: id &* 31 &+ $0) })) }
        return TemplateInfo(path: "t", formatVersion: "1.1", creator: "test", checksumKind: .md5, imageLength: Int64(ids.count) * partLength,
                            imageChecksum: Checksum([UInt8](repeating: 0, count: 16)), rsyncBlockLength: 1024, chunks: [],
                            parts: TemplateParts(parts, checksumKind: .md5), layout: TemplateLayout(layout), templateDataLength: 0)
    }

    @Test("a part an image holds twice counts once in the map's parts, both copies in its bytes")
    func duplicatesCountOnce() {
        let t = Self.template(ids: [1, 2, 1, 3, 2])
        let map = PartMap(template: t, states: [.cached, .missing, .cached, .local, .missing])
        #expect(map.parts == ["cached": 1, "missing": 1, "local": 1])
        #expect(map.bytes == ["cached": 200, "missing": 200, "local": 100])
    }

    @Test("a release set's total: each checksum once over the images, in its most available state; shared parts counted")
    func setTotal() {
        let a = Self.template(ids: [1, 2, 3, 1])
        let b = Self.template(ids: [3, 4, 2, 5])
        let c = Self.template(ids: [6, 2])
        func member(_ t: TemplateInfo, _ states: [PartMap.State]) -> PartSetTotal.Member {
            var s = PartStatistics()
            s.bytesDownloaded = 10
            // The mount's one book of mirrors: each image reports the same failures.
            s.failuresByMirror = ["http://a.test": 4]
            s.failuresByLocation = ["http://a.test/debian/": 4]
            return PartSetTotal.Member(template: t, states: states, statistics: s, map: PartMap(template: t, states: states))
        }
        let total = PartSetTotal([
            member(a, [.local, .missing, .inFlight, .local]),
            member(b, [.cached, .missing, .inFlight, .missing]),
            member(c, [.missing, .cached]),
        ])
        // 1 local; 2 missing/missing/cached -> cached; 3 inFlight/cached -> cached; 4 missing;
        // 5 missing; 6 missing.
        #expect(total.parts.partsTotal == 6)
        #expect(total.partsShared == 2)
        #expect(total.partsByState == ["local": 1, "cached": 2, "missing": 3])
        #expect(total.parts.partsLocal == 1 && total.parts.partsCached == 2 && total.parts.partsMissing == 3)
        #expect(total.parts.bytesDownloaded == 30)
        #expect(total.parts.failuresByMirror == ["http://a.test": 4], "counted once, not once per image")
        #expect(total.parts.failuresByLocation == ["http://a.test/debian/": 4])
        #expect(total.size == 1000)
        #expect(total.bytes == ["local": 200, "missing": 400, "inFlight": 200, "cached": 200])
    }
}
