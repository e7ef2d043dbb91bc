import Foundation
import JigdoFormat
import TestSupport
import Testing

/// What `status --map --json` prints (the fields these tests check).
struct MapReport: Decodable {
    struct Run: Decodable, Equatable, CustomStringConvertible {
        var offset: Int64
        var length: Int64
        var state: String
        var description: String { "\(state)@\(offset)+\(length)" }
    }
    struct Map: Decodable {
        var runs: [Run]
        var bucketBytes: Int64?
        var bytes: [String: Int64]
        var parts: [String: Int]
    }
    struct Image: Decodable {
        var name: String
        var size: Int64
        var map: Map?
    }
    var images: [Image]

    static func of(_ mountpoint: String) throws -> MapReport {
        let r = try Harness.check([Harness.jigdofs, "status", "--map", "--json", mountpoint])
        return try JSONDecoder().decode(MapReport.self, from: r.stdoutData)
    }

    /// The state of the byte at `offset` of image `i`.
    func state(image i: Int = 0, at offset: Int64) -> String? {
        images[i].map?.runs.first { $0.offset <= offset && offset < $0.offset + $0.length }?.state
    }
}

/// What a fixture's image should look like: the state of every layout area, from the
/// template's layout and the parts the test made local or cached.
struct ExpectedMap {
    let template: TemplateInfo
    /// State of each part (index into `template.parts`).
    let partState: (Int) -> String

    static let rank = ["template": 0, "local": 1, "cached": 2, "missing": 3, "inFlight": 4]
    static let symbol: [String: Character] = ["template": ".", "local": "#", "cached": "=", "missing": "_", "inFlight": ">"]

    func state(of entry: LayoutEntry) -> String {
        if case .part(let p) = entry.source { return partState(p) }
        return "template"
    }

    /// Runs of equal state in image order.
    var runs: [MapReport.Run] {
        var out: [MapReport.Run] = []
        for e in template.layout where e.length > 0 {
            let s = state(of: e)
            if let last = out.last, last.state == s { out[out.count - 1].length += e.length } else {
                out.append(.init(offset: e.imageOffset, length: e.length, state: s))
            }
        }
        return out
    }

    var bytes: [String: Int64] {
        var out: [String: Int64] = [:]
        for e in template.layout where e.length > 0 { out[state(of: e), default: 0] += e.length }
        return out
    }

    /// Distinct parts (with bytes) per state.
    var parts: [String: Int] {
        var seen = Set<Checksum>()
        var out: [String: Int] = [:]
        for (i, p) in template.parts.enumerated() where p.length > 0 && seen.insert(p.checksum).inserted {
            out[partState(i), default: 0] += 1
        }
        return out
    }

    /// The cells line for `cells` cells: each cell the state of highest rank among the areas it
    /// overlaps.
    func line(cells: Int) -> String {
        let size = template.imageLength
        var out = ""
        for i in 0..<cells {
            let start = size * Int64(i) / Int64(cells)
            let end = max(size * Int64(i + 1) / Int64(cells), start + 1)
            var best = "template"
            for e in template.layout where e.length > 0 && e.imageOffset < end && e.imageOffset + e.length > start {
                let s = state(of: e)
                if Self.rank[s]! > Self.rank[best]! { best = s }
            }
            out.append(Self.symbol[best]!)
        }
        return out
    }
}

@Suite(.serialized, .enabled(if: Harness.canMount, "needs root, /dev/fuse and fusermount3"))
struct StatusMapTests {
    @Test("status --map on a mount whose parts are local (--scan), cached (read earlier from nginx) and missing: text, JSON and --watch frames")
    func mapOfAKnownMix() throws {
        let cold = try ColdRelease(variant: "jf-md5-gz")
        defer { cold.remove() }
        let template = try TemplateInfo.read(path: cold.dir + "/release.template")
        let kind = template.checksumKind
        let packages = cold.packages()
        #expect(packages.count > 30)

        // Local: every third package, copied into a --scan directory.
        let scan = cold.dir + "/scan"
        try FileManager.default.createDirectory(atPath: scan, withIntermediateDirectories: true)
        var localSums = Set<Checksum>()
        for (i, p) in packages.enumerated() where i % 3 == 0 {
            try copyTree(cold.release.tree + "/" + p, to: scan + "/\(i)")
            localSums.insert(try ReadOnlyFile(path: cold.release.tree + "/" + p).checksum(kind))
        }
        // Cached: a few other packages read once through `jigdofs cat` from nginx.
        let readEarlier = packages.enumerated().filter { $0.offset % 3 == 1 }.prefix(6).map(\.element)
        for p in readEarlier {
            try Harness.check([Harness.jigdofs, "cat", cold.jigdo, "/" + p, "--progress", "none"] + cold.options)
        }
        let cachedSums = Set(template.parts.map(\.checksum).filter { sum in
            let b64 = sum.base64
            return fileExists("\(cold.cacheDir)/parts/\(kind.rawValue.lowercased())/\(b64.prefix(2))/\(b64)")
        })
        for p in readEarlier {
            #expect(cachedSums.contains(try ReadOnlyFile(path: cold.release.tree + "/" + p).checksum(kind)))
        }
        let expected = ExpectedMap(template: template) { i in
            let sum = template.parts[i].checksum
            return localSums.contains(sum) ? "local" : cachedSums.contains(sum) ? "cached" : "missing"
        }
        let counts = expected.parts
        #expect(counts["local"] ?? 0 > 5 && counts["cached"] ?? 0 >= 6 && counts["missing"] ?? 0 > 5, "\(counts)")

        try Harness.withMount([cold.jigdo], options: cold.options + ["--scan", scan]) { mnt in
            // JSON: the runs cover the image exactly, neighbours differ, and they are the
            // fixture's, area by area.
            let report = try MapReport.of(mnt)
            let image = try #require(report.images.first)
            let map = try #require(image.map)
            #expect(image.size == template.imageLength)
            #expect(map.bucketBytes == nil)
            var next: Int64 = 0
            for (i, run) in map.runs.enumerated() {
                #expect(run.offset == next && run.length > 0, "run \(i): \(run)")
                if i > 0 { #expect(run.state != map.runs[i - 1].state, "run \(i): \(run)") }
                next = run.offset + run.length
            }
            #expect(next == image.size)
            #expect(map.runs == expected.runs)
            #expect(map.bytes == expected.bytes)
            #expect(map.parts == counts)
            for (i, part) in template.parts.enumerated() where part.length > 0 {
                let area = try #require(template.layout.first { $0.source == .part(i) })
                #expect(report.state(at: area.imageOffset + area.length / 2) == expected.partState(i))
            }

            // Text: the cells line for 80 columns, and each state's figures.
            let text = try Harness.check([Harness.jigdofs, "status", "--map", mnt], environment: ["COLUMNS": "80"]).stdout
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            #expect(lines.first?.hasPrefix("release.iso (") == true, "\(text)")
            #expect(lines.dropFirst().first == "  [" + expected.line(cells: 75) + "]", "\(text)")
            #expect(lines.contains { $0.hasPrefix("  # local ") && $0.hasSuffix("  \(counts["local"]!) parts") }, "\(text)")
            #expect(lines.contains { $0.hasPrefix("  = cached ") && $0.hasSuffix("  \(counts["cached"]!) parts") }, "\(text)")
            #expect(lines.contains { $0.hasPrefix("  _ missing ") && $0.hasSuffix("  \(counts["missing"]!) parts") }, "\(text)")
            #expect(lines.contains { $0.hasPrefix("  > in flight ") && $0.hasSuffix("  0 parts") }, "\(text)")
            #expect(lines.contains { $0.hasPrefix("  . template ") }, "\(text)")
            #expect(lines.dropFirst().first?.count == 79, "the cells line fills 80 columns but the last")
            // Another width, another line.
            let narrow = try Harness.check([Harness.jigdofs, "status", "--map", mnt], environment: ["COLUMNS": "40"]).stdout
            #expect(narrow.contains("\n  [" + expected.line(cells: 35) + "]\n"), "\(narrow)")

            // --watch: N frames, each the same map (nothing is read meanwhile).
            let watched = try Harness.check([Harness.jigdofs, "status", "--map", "--watch", "-n", "0.05", "--count", "3", mnt],
                                            environment: ["COLUMNS": "80"]).stdout
            let bars = watched.split(separator: "\n").filter { $0.hasPrefix("  [") }
            #expect(bars.count == 3, "\(watched)")
            #expect(bars.allSatisfy { $0 == "  [" + expected.line(cells: 75) + "]" })
            // On a terminal (60 columns): each report over the last (the cursor goes up over
            // its lines), every line cut to fit, the cells coloured.
            let tmp = try TemporaryDirectory()
            try Subprocess.check(["/usr/bin/python3", Fixtures.testsDirectory + "/Fixtures/pty-run.py", "60", tmp.file("pty.out"),
                                  Harness.jigdofs, "status", "--map", "--watch", "-n", "0.05", "--count", "3", mnt],
                                 environment: ["TERM": "xterm", "NO_COLOR": ""])
            let shown = String(decoding: FileManager.default.contents(atPath: tmp.file("pty.out")) ?? Data(), as: UTF8.self)
            let frameLines = text.split(separator: "\n").count
            #expect(shown.components(separatedBy: "\u{1B}[\(frameLines)A").count - 1 == 2, "\(shown.debugDescription)")
            #expect(shown.contains("\u{1B}[32m#"), "local cells in green: \(shown.debugDescription)")
            let plainShown = shown.replacingOccurrences(of: "\u{1B}\\[[0-9;]*[A-Za-z]", with: "", options: .regularExpression)
            #expect(plainShown.components(separatedBy: "  [" + expected.line(cells: 55) + "]").count - 1 == 3, "\(plainShown)")
            #expect(plainShown.split(separator: "\r\n").allSatisfy { $0.filter { $0 != "\r" }.count < 60 }, "\(plainShown)")
            let jsonFrames = try Harness.check([Harness.jigdofs, "status", "--map", "--json", "--watch", "-n", "0.05", "--count", "2", mnt]).stdout
            let frames = jsonFrames.split(separator: "\n")
            #expect(frames.count == 2, "\(jsonFrames)")
            for frame in frames {
                let r = try JSONDecoder().decode(MapReport.self, from: Data(frame.utf8))
                #expect(r.images.first?.map?.runs == expected.runs)
            }
            // Without --map the JSON carries no map.
            let plain = try JSONDecoder().decode(MapReport.self, from: try Harness.check([Harness.jigdofs, "status", "--json", mnt]).stdoutData)
            #expect(plain.images.first?.map == nil)
        }
    }

    @Test("status --map shows a part being downloaded from a stalling mirror as in flight")
    func inFlightPart() throws {
        let cold = try ColdRelease(variant: "jf-md5-gz")
        defer { cold.remove() }
        let fault = try FaultServer(root: cold.release.root)
        defer { fault.stop() }
        let template = try TemplateInfo.read(path: cold.dir + "/release.template")
        try Harness.withMount([cold.jigdo], options: ["--server", "Base=\(fault.url)stall/tree/", "--cache-dir", cold.cacheDir]) { mnt in
            let daemons = Harness.pids(withArgument: mnt)
            try #require(daemons.count == 1)
            // One 4 KiB read in the middle of the largest part: its download stalls.
            let area = try #require(template.layout.filter {
                if case .part = $0.source { return true } else { return false }
            }.max { $0.length < $1.length })
            let reads = OutstandingReads()
            reads.start(mnt + "/release.iso", offsets: [area.imageOffset + area.length / 2 / 4096 * 4096], length: 4096)
            try Harness.waitUntil("the part is in flight") {
                (try? MapReport.of(mnt).state(at: area.imageOffset)) == "inFlight"
            }
            let map = try #require(try MapReport.of(mnt).images.first?.map)
            // Only parts can be in flight, and only missing ones (nothing is local or cached).
            for run in map.runs where run.state == "inFlight" {
                #expect(!template.partsCovering(offset: run.offset, count: run.length).isEmpty)
            }
            #expect(Set(map.runs.map(\.state)).isSubset(of: ["template", "missing", "inFlight"]))
            #expect(map.parts["inFlight"] ?? 0 >= 1)
            let text = try Harness.check([Harness.jigdofs, "status", "--map", mnt], environment: ["COLUMNS": "80"]).stdout
            #expect(text.contains(">"), "\(text)")
            #expect(text.split(separator: "\n").contains { $0.hasPrefix("  > in flight ") && !$0.hasSuffix("  0 parts") }, "\(text)")

            kill(daemons[0], SIGTERM)
            try Harness.waitUntil("the daemon exits", seconds: 10) { kill(daemons[0], 0) != 0 || Harness.isZombie(daemons[0]) }
            #expect(reads.group.wait(timeout: .now() + 10) == .success, "the read is still blocked after the daemon exited")
        }
    }
}
