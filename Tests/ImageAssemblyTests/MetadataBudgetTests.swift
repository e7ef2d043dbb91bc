import Foundation
import ImageAssembly
import JigdoFormat
import PartSources
import Testing
import TestSupport

/// Issue 20: what a .jigdo and its template declare is held once per template and bounded per
/// mount or command (`MetadataBudget`, `SharedTemplates`).
@Suite("Metadata memory: one parse per template, a budget per mount")
struct MetadataBudgetTests {
    /// Every image of `jigdo` opened as the CLI does (through `PublishedFiles.openTemplate`)
    /// with one store of templates.
    func openAll(_ jigdo: String, templates: SharedTemplates) throws -> [JigdoImage] {
        let descriptor = try JigdoDescriptor.load(path: jigdo, budget: templates.budget)
        return try descriptor.perImage.map {
            try PublishedFiles.openTemplate(descriptor: $0, jigdoURL: nil, cache: nil, downloader: nil, templates: templates)
        }
    }

    @Test("eight [Image] sections on one template: one parse, one set of tables, one template's charge",
          arguments: ["jf-md5-gz", "jte-sha256-bz2"])
    func mergedImagesShareTheTemplate(_ name: String) throws {
        let tmp = try TemporaryDirectory()
        defer { tmp.remove() }
        let variant = try Fixtures.smallRelease().variant(name)
        let merged = try variant.mergedJigdo(sections: 8, into: tmp.path)
        let other = try TemporaryDirectory()
        defer { other.remove() }
        let single = try variant.mergedJigdo(sections: 1, into: other.path)

        let templates = SharedTemplates()
        let images = try openAll(merged, templates: templates)
        #expect(images.count == 8)
        #expect(Set(images.map(\.imageName)).count == 8)
        #expect(templates.parseCount == 1, "the template was parsed once, not once per image")
        for image in images.dropFirst() {
            #expect(image.template.sharesTables(with: images[0].template), "\(image.imageName) holds its own copy of the tables")
            #expect(image.templateFile === images[0].templateFile, "one open template file")
            #expect(image.templateCheck == images[0].templateCheck)
            #expect(templates.dataReader(of: image) === templates.dataReader(of: images[0]), "one decompression cache")
        }
        #expect(images[0].templateCheck != .notGiven, "the checksum was checked (once)")

        // Eight sections cost what one does (the merged file's few extra lines aside: none
        // are [Parts] or [Servers] locations).
        let one = SharedTemplates()
        _ = try openAll(single, templates: one)
        #expect(templates.budget.charged == one.budget.charged)
        #expect(templates.budget.charged > 0)

        // The shared image reads as the original does.
        let reader = ImageReader(template: templates.dataReader(of: images[7]),
                                 parts: try LocalParts(template: images[7].template, resolver: LocationResolver(descriptor: images[7].descriptor),
                                                       scanDirectories: [try Fixtures.smallRelease().tree]))
        #expect(try streamAndCompare(reader, with: variant.iso) == (true, true))
    }

    @Test("a template over the budget is refused with one line naming its DESC entries and the limit; at the limit it opens")
    func templateOverTheBudget() throws {
        let variant = try Fixtures.smallRelease().variant("jf-md5-gz")
        let file = try ReadOnlyFile(path: variant.template)
        let info = try TemplateInfo.read(file)
        let cost = TemplateInfo.tableCost(parts: info.parts.count, layoutEntries: info.layout.count, chunks: info.chunks.count, kind: info.checksumKind)
        #expect(cost > 0)

        let exact = MetadataBudget(limit: cost)
        let parsed = try TemplateInfo.read(file, budget: exact)
        #expect(exact.charged == cost)
        #expect(parsed.parts.count == info.parts.count)

        let short = MetadataBudget(limit: cost - 1)
        let error = try #require(throws: JigdoError.self) { try TemplateInfo.read(file, budget: short) }
        #expect(error.kind == .overLimit)
        let line = "\(error)"
        #expect(!line.contains("\n"))
        #expect(line.contains(variant.template))
        let dataAreas = info.layout.filter { if case .templateData = $0.source { true } else { false } }.count
        #expect(line.contains("\(info.parts.count + dataAreas) DESC entries need ~"))
        #expect(line.contains("limit (--max-metadata-memory)"))
        #expect(short.charged == 0, "nothing is kept of a refused template")
    }

    @Test("[Parts] locations over the budget are refused while the .jigdo is read, naming how many and what they need")
    func partsOverTheBudget() throws {
        var text = "[Jigdo]\nVersion=1.2\n[Image]\nFilename=x.iso\nTemplate=x.template\n[Parts]\n"
        for i in 0..<20_000 {
            // Distinct checksums: 22 characters of jigdo Base64.
            let digits = String(i, radix: 36)
            text += String(repeating: "A", count: 22 - digits.count) + digits + "=Base:pool/f\(i)\n"
        }
        text += "[Servers]\nBase=http://example.org/\n"
        let limit: Int64 = 1 << 20
        let budget = MetadataBudget(limit: limit)
        let error = try #require(throws: JigdoError.self) {
            try JigdoDescriptor.parse(text: text, path: "/x/hostile.jigdo", base: "/x/", budget: budget)
        }
        #expect(error.kind == .overLimit)
        let line = "\(error)"
        #expect(!line.contains("\n"))
        #expect(line.hasPrefix("/x/hostile.jigdo: "))
        #expect(line.contains("[Parts] and [Servers] locations need ~"))
        #expect(line.contains("more than the 1 MiB limit (--max-metadata-memory)"))
        #expect(budget.charged == 0, "a refused .jigdo gives back what it was charged")

        // The same file fits a budget of what it needs.
        let need = 20_000 * MetadataBudget.bytesPerPartsEntry + MetadataBudget.bytesPerServersEntry
        let roomy = MetadataBudget(limit: need)
        let d = try JigdoDescriptor.parse(text: text, path: "/x/hostile.jigdo", base: "/x/", budget: roomy)
        #expect(d.parts.count == 20_000)
        #expect(roomy.charged == need, "20,000 [Parts] locations and one [Servers] location")
        let tight = MetadataBudget(limit: need - 1)
        #expect(throws: JigdoError.self) { try JigdoDescriptor.parse(text: text, path: "/x/hostile.jigdo", base: "/x/", budget: tight) }
    }
}
