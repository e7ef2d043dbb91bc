import Foundation
import ImageAssembly
import JigdoFormat
import PartSources
import Testing
import TestSupport

/// The persistent checksum cache of `--scan`: a second scan of an unchanged tree reads no file,
/// a changed file is hashed again, and the image stays correct either way.
@Suite struct ScanCacheTests {
    func scan(_ release: FixtureRelease, _ variant: FixtureVariant, tree: String, cache: ChecksumCache) throws -> LocalParts {
        let image = try JigdoImage.open(jigdoPath: variant.jigdo)
        // A resolver with no local locations: parts come from the scan alone.
        var descriptor = image.descriptor
        descriptor.servers = [:]
        return try LocalParts(template: image.template, resolver: LocationResolver(descriptor: descriptor),
                              scanDirectories: [tree], checksumCache: cache)
    }

    @Test(arguments: ["jf-md5-gz", "jte-sha256-bz2"])
    func secondScanReadsNothing(variantName: String) throws {
        let release = try Fixtures.smallRelease()
        let variant = release.variant(variantName)
        let tmp = try TemporaryDirectory()
        defer { tmp.remove() }
        let tree = tmp.file("tree")
        try copyTree(release.tree, to: tree)
        let cache = try ChecksumCache(directory: tmp.file("cache"))

        let first = try scan(release, variant, tree: tree, cache: cache)
        #expect(first.scanReport.hashedFiles > 0)
        #expect(first.scanReport.fromCache == 0)
        #expect(first.missingParts().isEmpty)

        // A new cache object on the same file, as a second mount would open it.
        let again = try ChecksumCache(directory: tmp.file("cache"))
        let second = try scan(release, variant, tree: tree, cache: again)
        #expect(second.scanReport.hashedFiles == 0)
        #expect(second.scanReport.fromCache == first.scanReport.candidates)
        #expect(second.missingParts().isEmpty)

        // Rewrite one part file (one that has no duplicate in the tree) with other content of
        // the same size: it must be hashed again and no longer count as that part.
        let image = try JigdoImage.open(jigdoPath: variant.jigdo)
        var pathsBySum: [Checksum: [String]] = [:]
        for path in regularFiles(under: tree) {
            pathsBySum[try ReadOnlyFile(path: path).checksum(variant.checksumKind), default: []].append(path)
        }
        let victimPart = try #require(image.template.parts.first { pathsBySum[$0.checksum]?.count == 1 })
        let victim = try #require(pathsBySum[victimPart.checksum]?.first)
        var bytes = try readBytes(victim)
        bytes[0] ^= 0xff
        try writeBytes(bytes, to: victim)
        let third = try scan(release, variant, tree: tree, cache: try ChecksumCache(directory: tmp.file("cache")))
        #expect(third.scanReport.hashedFiles == 1)
        let missing = third.missingParts().map { image.template.parts[$0].checksum }
        #expect(Set(missing) == [victimPart.checksum])
    }

    @Test func unusableCacheDirectoryIsAnError() throws {
        let tmp = try TemporaryDirectory()
        defer { tmp.remove() }
        try writeBytes([1], to: tmp.file("file"))
        #expect(throws: JigdoError.self) { try ChecksumCache(directory: tmp.file("file") + "/sub") }
    }
}
