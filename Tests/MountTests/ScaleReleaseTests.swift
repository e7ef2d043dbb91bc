import Foundation
import TestSupport
import Testing

// The correctness checks of bench/scale.sh (issue 21) on a smaller release of the same kind:
// bench/make-scale-release.py writes thousands of sparse parts, a jigdo 2.0 / SHA256 .jigdo and
// template, and the expected image as a sparse file. jigdo-file, the reference, reads what the
// generator wrote (print-missing-all; make-image rebuilds the expected image from its template),
// and jigdofs, from a loopback nginx with an empty cache, serves the same bytes.

/// One release made by the scale generator in a temp dir.
struct ScaleRelease {
    let dir: String
    let parts: Int
    /// Image 1's size and SHA256 (hex), from the generator's release.txt.
    let size: Int64
    let sha256: String

    static var generator: String { Fixtures.packageRoot + "/bench/make-scale-release.py" }

    init(in dir: String, parts: Int, meanSize: Int, extra: [String] = ["--expected"]) throws {
        self.dir = dir
        self.parts = parts
        try Subprocess.check(["python3", Self.generator, dir, "--parts", "\(parts)", "--mean-size", "\(meanSize)"] + extra)
        let line = try String(contentsOfFile: dir + "/release.txt", encoding: .utf8).split(separator: " ")
        // image 1 parts N bytes B sha256 HEX
        guard line.count == 8, let size = Int64(line[5]) else { throw FixtureError("release.txt: \(line)") }
        self.size = size
        sha256 = String(line[7]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    var jigdo: String { dir + "/images/scale-1.jigdo" }
    var template: String { dir + "/images/scale-1.template" }
    var expected: String { dir + "/expected-1.iso" }
}

@Suite(.serialized)
struct ScaleReleaseGeneratorTests {
    @Test("jigdo-file make-image rebuilds the generator's expected image from its template and sparse parts")
    func jigdoFileRebuildsTheImage() throws {
        let dir = try Harness.makeTempDir("scale-mkimage")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try ScaleRelease(in: dir + "/a", parts: 300, meanSize: 8192)
        // jigdo-file needs each part's RsyncSum64: taken from a template jigdo-file makes of
        // the expected image (it must find all 300 parts in it, at the generator's offsets)
        try Subprocess.check(["jigdo-file", "make-template", "-r", "quiet", "--checksum-algorithm=sha256",
                              "-i", first.expected, "-j", dir + "/ref.jigdo", "-t", dir + "/ref.template",
                              first.dir + "/parts//"])
        let ls = try Subprocess.check(["jigdo-file", "ls", "--template", dir + "/ref.template"]).stdout
        let refParts = ls.split(separator: "\n").filter { $0.hasPrefix("need-file-sha256") }
        #expect(refParts.count == 300)
        let ours = try Subprocess.check(["jigdo-file", "ls", "--template", first.template]).stdout
            .split(separator: "\n").filter { $0.hasPrefix("need-file-sha256") }
        // same offsets, lengths and checksums (the rsync column differs: ours are 0)
        #expect(ours.map { $0.split(separator: " ").dropLast() } == refParts.map { $0.split(separator: " ").dropLast() })
        try ls.write(toFile: dir + "/ref.ls", atomically: true, encoding: .utf8)
        let second = try ScaleRelease(in: dir + "/b", parts: 300, meanSize: 8192, extra: ["--rsync-sums", dir + "/ref.ls"])
        #expect(second.sha256 == first.sha256)
        let out = dir + "/rebuilt.iso"
        let r = try Subprocess.run(["jigdo-file", "make-image", "-r", "quiet", "--image=" + out, "--jigdo=" + second.jigdo,
                                    "--template=" + second.template, second.dir + "/parts//"])
        #expect(r.status == 0, "\(r)")
        let cmp = try Subprocess.run(["cmp", out, first.expected])
        #expect(cmp.status == 0, "\(cmp)")
        let sum = try Subprocess.check(["sha256sum", out]).stdout.prefix(64)
        #expect(String(sum) == first.sha256)
    }
}

@Suite(.serialized, .enabled(if: Harness.canMount, "needs root, /dev/fuse and fusermount3"))
struct ScaleReleaseTests {
    @Test("3,000 sparse parts: info and jigdo-file agree on the parts, random reads and the whole image through a cold mount match")
    func scaleReleaseThroughTheMount() throws {
        let dir = try Harness.makeTempDir("scale")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let rel = try ScaleRelease(in: dir + "/rel", parts: 3000, meanSize: 32768)
        let expectedSize = (try FileManager.default.attributesOfItem(atPath: rel.expected)[.size] as? NSNumber)?.int64Value
        #expect(expectedSize == rel.size)

        // info reads the .jigdo and the template
        let info = try Harness.check([Harness.jigdofs, "info", "--json", rel.jigdo]).stdoutData
        let report = try #require(try JSONSerialization.jsonObject(with: info) as? [String: Any])
        #expect((report["parts"] as? NSNumber)?.intValue == 3000)
        #expect((report["uniqueParts"] as? NSNumber)?.intValue == 3000)
        #expect((report["partsListed"] as? NSNumber)?.intValue == 3000)
        #expect((report["size"] as? NSNumber)?.int64Value == rel.size)
        #expect(report["imageChecksumHex"] as? String == rel.sha256)

        // the reference tool reads the generator's .jigdo and template alike
        let missing = try Harness.check(["jigdo-file", "print-missing-all", "--jigdo", rel.jigdo, "--template", rel.template])
        #expect(missing.stdout.split(separator: "\n").filter { $0.hasPrefix("http://") }.count == 3000)

        let nginx = try Nginx(root: rel.dir + "/parts")
        defer { nginx.stop() }
        let options = ["--server", "Scale=\(nginx.url)", "--cache-dir", dir + "/cache"]
        try Harness.withMount([rel.jigdo], options: options) { mnt in
            let image = mnt + "/scale-1.iso"
            let a = open(image, O_RDONLY), b = open(rel.expected, O_RDONLY)
            defer { close(a); close(b) }
            try #require(a >= 0 && b >= 0)
            var rng = SeededRandom(seed: 21)
            var got = [UInt8](repeating: 0, count: 256 * 1024), want = got
            var differing: [Int64] = []
            for _ in 0..<300 {
                let off = Int64.random(in: 0..<rel.size, using: &rng)
                let n = min(Int.random(in: 1...got.count, using: &rng), Int(rel.size - off))
                let g = got.withUnsafeMutableBytes { pread(a, $0.baseAddress, n, off_t(off)) }
                let w = want.withUnsafeMutableBytes { pread(b, $0.baseAddress, n, off_t(off)) }
                if g != n || w != n || !bytesEqual(want[0..<n].map { $0 }, got[0..<n]) { differing.append(off) }
            }
            #expect(differing.isEmpty, "reads differing at \(differing.prefix(5))")
            let sum = try Harness.check(["sha256sum", image]).stdout.prefix(64)
            #expect(String(sum) == rel.sha256)
        }
        let requests = nginx.requests()
        #expect(requests.allSatisfy { $0.status == 200 })
        #expect(Set(requests.map(\.path)).count == 3000, "every part fetched")
    }
}
