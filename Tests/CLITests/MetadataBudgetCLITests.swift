import Foundation
import JigdoFormat
import Testing
import TestSupport

/// Issue 20: `--max-metadata-memory` bounds what the .jigdo files and templates of one command
/// may make it hold; images that name one template are charged once.
@Suite("jigdofs --max-metadata-memory")
struct MetadataBudgetCLITests {
    /// What the .jigdo at `jigdo` and one parse of `template` are charged.
    func cost(jigdo: String, template: String) throws -> Int64 {
        let budget = MetadataBudget(limit: .max)
        _ = try JigdoDescriptor.load(path: jigdo, budget: budget)
        _ = try TemplateInfo.read(path: template, budget: budget)
        return budget.charged
    }

    @Test("info of eight images on one template fits the budget of one template; a byte less is refused with one line")
    func mergedImagesFitOneTemplatesBudget() throws {
        let tmp = try TemporaryDirectory()
        defer { tmp.remove() }
        let variant = try Fixtures.smallRelease().variant("jf-sha256-bz2")
        let merged = try variant.mergedJigdo(sections: 8, into: tmp.path)
        let need = try cost(jigdo: merged, template: tmp.file("release.template"))

        let fits = try CLI.run(["info", merged, "--offline", "--max-metadata-memory", String(need)])
        #expect(fits.status == 0, "\(fits)")
        #expect(fits.stdout.contains("Images:       8"), "\(fits)")
        #expect(fits.stdout.components(separatedBy: "(checksum SHA256 matched)").count == 9, "every image has its template: \(fits)")

        let refused = try CLI.run(["info", merged, "--offline", "--max-metadata-memory", String(need - 1)])
        #expect(refused.status != 0 && refused.status < 128, "refused, not crashed: \(refused)")
        let lines = refused.stderrLines.filter { $0.contains("--max-metadata-memory") }
        #expect(lines.count == 1, "\(refused)")
        #expect(lines.first?.contains("release.template: ") == true, "\(refused)")
        #expect(lines.first?.contains("DESC entries need ~") == true, "\(refused)")
        #expect(!refused.stdout.contains("Images:"), "no report of a refused template: \(refused)")
    }

    @Test("make-image of a .jigdo over the limit is refused before anything is written")
    func makeImageRefused() throws {
        let tmp = try TemporaryDirectory()
        defer { tmp.remove() }
        let variant = try Fixtures.smallRelease().variant("jf-md5-gz")
        let merged = try variant.mergedJigdo(sections: 2, into: tmp.path)
        let out = tmp.file("out.iso")
        let r = try CLI.run(["make-image", merged, "--image", "copy2.iso", "-o", out, "--offline", "--max-metadata-memory", "1K"])
        #expect(r.status != 0 && r.status < 128, "\(r)")
        #expect(r.stderrLines.filter { $0.contains("need ~") && $0.contains("1 KiB limit (--max-metadata-memory)") }.count == 1, "\(r)")
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(!FileManager.default.fileExists(atPath: out + ".tmp"))
    }
}
