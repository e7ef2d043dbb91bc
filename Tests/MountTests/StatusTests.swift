import Foundation
import TestSupport
import Testing

/// `jigdofs status` and the hidden status file of a mount.
@Suite(.serialized, .enabled(if: Harness.canMount, "needs root, /dev/fuse and fusermount3"))
struct StatusTests {
    let release: FixtureRelease

    init() throws {
        release = try Fixtures.release()
    }

    @Test func statusCountsLocalAndMissingPartsAndStaysHidden() throws {
        // One image with every part local, one (a copy elsewhere) with none.
        let dir = try Harness.makeTempDir("status")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for f in ["release.jigdo", "release.template"] {
            try FileManager.default.copyItem(atPath: "\(release.root)/jf-sha256-gz/\(f)", toPath: "\(dir)/\(f)")
        }
        let text = try String(contentsOfFile: "\(dir)/release.jigdo", encoding: .utf8)
        try text.replacingOccurrences(of: "Filename=release.iso", with: "Filename=orphan.iso")
            .write(toFile: "\(dir)/release.jigdo", atomically: true, encoding: .utf8)
        let parts = try jigdoPartKeys(release.variant("jf-md5-gz").jigdo).count
        #expect(parts > 100)

        try Harness.withMount([release.variant("jf-md5-gz").jigdo, dir + "/release.jigdo"]) { mnt in
            // Listing tools do not see the status file.
            let listed = try Harness.check(["ls", "-a", mnt]).stdout.split(separator: "\n").map(String.init)
            #expect(!listed.contains(".jigdofs-status"))
            #expect(listed.contains("release.iso") && listed.contains("orphan.iso"))

            let report = try StatusReport.of(mnt)
            let byName = Dictionary(uniqueKeysWithValues: report.images.map { ($0.name, $0) })
            let full = try #require(byName["release.iso"])
            #expect(full.parts.partsTotal == parts)
            #expect(full.parts.partsLocal == parts)
            #expect(full.parts.partsMissing == 0)
            let orphan = try #require(byName["orphan.iso"])
            #expect(orphan.parts.partsTotal == parts)
            #expect(orphan.parts.partsLocal == 0)
            #expect(orphan.parts.partsMissing == parts)
            let isoSize = try FileManager.default.attributesOfItem(atPath: release.variant("jf-md5-gz").iso)[.size] as? Int64
            #expect(full.size == isoSize)

            let human = try Harness.check([Harness.jigdofs, "status", mnt])
            #expect(human.stdout.contains("\(parts) total, \(parts) local, 0 cached, 0 missing"), "\(human.stdout)")
        }
    }

    @Test func statusOfSomethingElseIsAClearError() throws {
        let dir = try Harness.makeTempDir("not-a-mount")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try Harness.run([Harness.jigdofs, "status", dir])
        #expect(r.status != 0)
        #expect(r.stderr.hasPrefix("jigdofs: ") && r.stderr.contains("not a jigdofs mount"), "\(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1)
    }
}
