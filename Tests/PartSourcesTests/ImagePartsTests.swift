import Foundation
import ImageAssembly
import ISO9660
import JigdoFormat
import PartSources
import Synchronization
import TestSupport
import Testing

/// Release N+1 of the release fixture (TestSupport's `UpgradeRelease`), its new tree deleted
/// except `changed/`, so the new release's parts can come only from there or from the old ISO.
let upgradeFixture: Result<String, any Error> = Result {
    try UpgradeRelease.make(from: try releaseFixture.get(), in: fixtureRoot + "/upgrade", keepTree: false).dir
}

private let jigdofsBinary = CLI.binary

@Suite struct UpgradeFromOldImage {
    /// The new release's image, and its parts in the old ISO and in the changed files.
    private func sources() throws -> (release: String, dir: String, image: JigdoImage, fromISO: ISOImageParts, changed: LocalParts) {
        let release = try releaseFixture.get()
        let dir = try upgradeFixture.get()
        let image = try JigdoImage.open(jigdoPath: dir + "/new.jigdo")
        let fromISO = try ISOImageParts(template: image.template, images: [release + "/release.iso"])
        let changed = try LocalParts(template: image.template, resolver: LocationResolver(descriptor: image.descriptor),
                                     scanDirectories: [dir + "/changed"])
        return (release, dir, image, fromISO, changed)
    }

    /// The old ISO supplies exactly the parts a scan of the old tree would: matching by size
    /// and checksum through the ISO reader agrees with matching the files themselves.
    @Test func oldImageSuppliesTheUnchangedParts() throws {
        let (release, dir, image, fromISO, changed) = try sources()
        let fromTree = try LocalParts(template: image.template, resolver: LocationResolver(descriptor: image.descriptor),
                                      scanDirectories: [release + "/tree"])
        #expect(fromISO.missingParts() == fromTree.missingParts())
        #expect(!fromISO.missingParts().isEmpty)
        #expect(fromISO.missingParts().count < image.template.parts.count / 4)
        // What the old image lacks is exactly what changed.
        #expect(fromISO.missingParts().allSatisfy { changed.isLocallyAvailable($0) })

        // The whole new image, read from the changed files plus the old ISO, is new.iso.
        let counting = CountingParts(PartSourceChain([changed, fromISO], template: image.template))
        let reader = ImageReader(template: TemplateDataReader(file: image.templateFile, info: image.template), parts: counting)
        let expected = try ReadOnlyFile(path: dir + "/new.iso")
        #expect(reader.size == expected.size)
        var offset: Int64 = 0
        while offset < reader.size {
            let n = Int(min(1 << 20, reader.size - offset))
            #expect(try reader.read(at: offset, count: n) == (try expected.read(at: offset, count: n)), "at \(offset)")
            offset += Int64(n)
        }
        #expect(counting.partsRead.count == image.template.parts.count)
    }

    /// With a checksum cache, a second scan of the same old image hashes nothing and finds the
    /// same parts; a changed image (new mtime) is hashed again.
    @Test func checksumCacheSkipsHashing() throws {
        let release = try releaseFixture.get()
        let dir = try upgradeFixture.get()
        let image = try JigdoImage.open(jigdoPath: dir + "/new.jigdo")
        let old = fixtureRoot + "/cached-old-\(UUID().uuidString).iso"
        try Subprocess.shell("cp \(shellQuote(release))/release.iso \(shellQuote(old))")
        let cache = try ChecksumCache(directory: fixtureRoot + "/cache-\(UUID().uuidString)")
        func scan() throws -> (ISOImageParts, Int64) {
            let hashed = Mutex<Int64>(0)
            let parts = try ISOImageParts(template: image.template, images: [old], checksumCache: cache,
                                       progress: { done, _ in hashed.withLock { $0 = max($0, done) } })
            return (parts, hashed.withLock { $0 })
        }
        let (first, hashedFirst) = try scan()
        let (second, hashedSecond) = try scan()
        #expect(hashedFirst > 0)
        #expect(hashedSecond == 0)
        #expect(first.missingParts() == second.missingParts())
        #expect(Set(first.matches.keys) == Set(second.matches.keys))
        try Subprocess.shell("touch -d '2001-01-01' \(shellQuote(old))")
        let (_, hashedThird) = try scan()
        #expect(hashedThird == hashedFirst)
    }

    /// Each part of the old image is handed over as one range of the old ISO file (its
    /// extent), holding exactly what the ISO reader reads; through the chain, the changed
    /// files' parts come as whole files. A copied image changed since its scan hands over
    /// nothing (its parts are read through the ISO reader).
    @Test func checkedCopiesAreRangesOfTheOldImage() throws {
        let (release, dir, image, fromISO, changed) = try sources()
        let chain = PartSourceChain([changed, fromISO], template: image.template)
        var fromImage = 0
        for i in image.template.parts.indices where image.template.parts[i].length > 0 {
            let length = Int(image.template.parts[i].length)
            let copy = try #require(try chain.checkedCopy(i), "part \(i)")
            var expected = [UInt8](repeating: 0, count: length)
            try expected.withUnsafeMutableBytes { try chain.readPart(i, at: 0, into: $0) }
            #expect(try copy.file.read(at: copy.base, count: length) == expected, "part \(i)")
            #expect(copy.file.currentIdentity() == copy.identity)
            if fromISO.isLocallyAvailable(i) {
                #expect(copy.base > 0 && copy.file.path.hasSuffix("/release.iso"), "part \(i): \(copy.file.path) at \(copy.base)")
                fromImage += 1
            } else {
                #expect(copy.base == 0 && copy.file.path.hasPrefix(dir + "/changed"), "part \(i): \(copy.file.path)")
            }
        }
        #expect(fromImage > image.template.parts.count / 2)

        let old = fixtureRoot + "/copied-old-\(UUID().uuidString).iso"
        defer { try? FileManager.default.removeItem(atPath: old) }
        try Subprocess.shell("cp \(shellQuote(release))/release.iso \(shellQuote(old))")
        let copied = try ISOImageParts(template: image.template, images: [old])
        let part = try #require(image.template.parts.indices.first { copied.isLocallyAvailable($0) })
        #expect(try copied.checkedCopy(part) != nil)
        try Subprocess.shell("touch -d '2001-01-01' \(shellQuote(old))")
        #expect(try copied.checkedCopy(part) == nil, "an image changed since its scan")
    }

    /// An old image written to in place after its scan (`dd`, `rsync --inplace`): its files may
    /// no longer be the parts they were hashed as, and none is served from it.
    @Test func imageWrittenInPlaceServesNothing() throws {
        let (release, _, image, _, _) = try sources()
        let old = fixtureRoot + "/inplace-old-\(UUID().uuidString).iso"
        defer { try? FileManager.default.removeItem(atPath: old) }
        try Subprocess.shell("cp \(shellQuote(release))/release.iso \(shellQuote(old))")
        let parts = try ISOImageParts(template: image.template, images: [old])
        let part = try #require(image.template.parts.indices.first { parts.isLocallyAvailable($0) && image.template.parts[$0].length >= 16 })
        let base = try #require(try parts.checkedCopy(part)).base
        var before = [UInt8](repeating: 0, count: 16)
        try before.withUnsafeMutableBytes { try parts.readPart(part, at: 0, into: $0) }
        // Other bytes over the part's first 16, in place (same inode and size, a new mtime).
        try Subprocess.shell("""
            printf 'XXXXXXXXXXXXXXXX' | dd of=\(shellQuote(old)) bs=1 seek=\(base) conv=notrunc status=none
            touch -d '2001-01-01' \(shellQuote(old))
            """)
        var after = [UInt8](repeating: 0, count: 16)
        #expect(throws: JigdoError.self) {
            try after.withUnsafeMutableBytes { try parts.readPart(part, at: 0, into: $0) }
        }
        #expect(try parts.checkedCopy(part) == nil)
        #expect(before != Array("XXXXXXXXXXXXXXXX".utf8))
    }

    @Test func makeImageWithScanImage() throws {
        let release = try releaseFixture.get()
        let dir = try upgradeFixture.get()
        let out = fixtureRoot + "/upgrade-out-\(UUID().uuidString).iso"
        defer { try? FileManager.default.removeItem(atPath: out) }
        try Subprocess.shell("""
            \(shellQuote(jigdofsBinary)) make-image --no-scan-cache \(shellQuote(dir))/new.jigdo --scan-image \(shellQuote(release))/release.iso \
              --scan \(shellQuote(dir))/changed -o \(shellQuote(out)) >/dev/null
            cmp \(shellQuote(out)) \(shellQuote(dir))/new.iso
            rm \(shellQuote(out))
            """)
        // Without the changed files, make-image names what is missing: only changed parts.
        let missing = try Subprocess.shell("""
            \(shellQuote(jigdofsBinary)) make-image --no-scan-cache \(shellQuote(dir))/new.jigdo --scan-image \(shellQuote(release))/release.iso \
              -o \(shellQuote(out)) 2>&1 >/dev/null || echo "exit $?"
            """)
        let image = try JigdoImage.open(jigdoPath: dir + "/new.jigdo")
        let fromISO = try ISOImageParts(template: image.template, images: [release + "/release.iso"])
        let changedCount = Set(fromISO.missingParts().map { image.template.parts[$0].checksum }).count
        #expect(changedCount >= 3)
        #expect(missing.hasSuffix("exit 2\n"))
        #expect(missing.contains("\(changedCount) of "), "\(missing)")
        #expect(!FileManager.default.fileExists(atPath: out))
        // Not an ISO.
        let bad = try Subprocess.shell("\(shellQuote(jigdofsBinary)) verify \(shellQuote(dir))/new.jigdo --scan-image \(shellQuote(dir))/new.template 2>&1 || true")
        #expect(bad.contains("not an ISO 9660 image"), "\(bad)")
    }
}
