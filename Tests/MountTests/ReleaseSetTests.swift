import Foundation
import JigdoFormat
import TestSupport
import Testing

/// Three images of one release that share packages, as Debian's DVD-1..N do: three trees
/// made of copies of files in one pool, each made into an ISO by xorriso and described by
/// jigdo-file against the pool (`Base:f-NN.deb`), the three .jigdo/.template pairs in one
/// folder (`set/`), the ISOs kept apart (`iso/`) to compare with.
struct ReleaseSetFixture {
    let root: String
    var pool: String { root + "/pool" }
    var setDir: String { root + "/set" }
    static let images = ["dvd-1", "dvd-2", "dvd-3"]
    func iso(_ name: String) -> String { root + "/iso/\(name).iso" }
    func jigdo(_ name: String) -> String { setDir + "/\(name).jigdo" }

    /// Pool file i is in the images listed here: 0-11 in all three, 12-19 in 1 and 2, 20-25 in
    /// 2 and 3, the rest in one image each.
    static func members(_ i: Int) -> [Int] {
        switch i {
        case 0..<12: [0, 1, 2]
        case 12..<20: [0, 1]
        case 20..<26: [1, 2]
        case 26..<32: [0]
        case 32..<36: [1]
        default: [2]
        }
    }

    static func make() throws -> ReleaseSetFixture {
        let root = try Harness.makeTempDir("release-set")
        let fixture = ReleaseSetFixture(root: root)
        let fm = FileManager.default
        for dir in ["pool", "set", "iso"] + images.map({ "trees/" + $0 }) {
            try fm.createDirectory(atPath: root + "/" + dir, withIntermediateDirectories: true)
        }
        // 40 packages of 2-300 KiB, deterministic content.
        try Subprocess.check(["python3", "-c", """
            import random, sys
            rng = random.Random(19)
            for i in range(40):
                open(f"{sys.argv[1]}/f-{i:02d}.deb", "wb").write(rng.randbytes(rng.randrange(2048, 300 * 1024)))
            """, fixture.pool])
        for i in 0..<40 {
            for m in members(i) {
                try copyTree(fixture.pool + "/" + String(format: "f-%02d.deb", i), to: root + "/trees/\(images[m])/" + String(format: "f-%02d.deb", i))
            }
        }
        for (m, name) in images.enumerated() {
            try "image \(m + 1) of the set\n".write(toFile: root + "/trees/\(name)/README.txt", atomically: true, encoding: .utf8)
            try Subprocess.check(["xorriso", "-as", "mkisofs", "-quiet", "-R", "-J", "-V", "SET_\(m + 1)",
                                  "-o", fixture.iso(name), root + "/trees/" + name])
            try JigdoFile.makeTemplate(image: fixture.iso(name), jigdo: fixture.jigdo(name),
                                       template: fixture.setDir + "/\(name).template", parts: fixture.pool,
                                       options: ["--label", "Base=\(fixture.pool)", "--uri", "Base=http://mirror.invalid/pool/"])
        }
        return fixture
    }

    /// A .jigdo's [Parts]: checksum key -> the part's path below the pool.
    func parts(_ name: String) throws -> [String: String] {
        let text = try String(contentsOfFile: jigdo(name), encoding: .utf8)
        var out: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "="), line[line.index(after: eq)...].hasPrefix("Base:") else { continue }
            out[String(line[..<eq])] = String(line[line.index(eq, offsetBy: 6)...])
        }
        return out
    }
}

/// The total `status --json` adds for several images (the fields these tests check).
struct StatusTotal: Decodable {
    var images: Int
    var size: Int64
    var partsShared: Int
    var parts: StatusReport.Image.Parts
    var bytes: [String: Int64]
    var partsByState: [String: Int]
}

@Suite(.serialized, .enabled(if: Harness.canMount, "needs root, /dev/fuse and fusermount3"))
struct ReleaseSetTests {
    @Test("a release set of three images sharing parts, mounted from one folder: all three read at once are right, every part is fetched and cached once, status shows each image and the total")
    func threeImagesSharingParts() throws {
        let set = try ReleaseSetFixture.make()
        defer { removeTree(set.root) }
        let nginx = try Nginx(root: set.root)
        defer { nginx.stop() }
        let cacheDir = try Harness.makeTempDir("set-cache")
        defer { removeTree(cacheDir) }

        // What the three .jigdo files say: the distinct parts of the set, and those in more
        // than one image.
        let perImage = try ReleaseSetFixture.images.map { try set.parts($0) }
        let imagesOf = perImage.reduce(into: [String: Int]()) { counts, parts in
            for key in parts.keys { counts[key, default: 0] += 1 }
        }
        let pathOf = perImage.reduce(into: [String: String]()) { paths, parts in paths.merge(parts) { a, _ in a } }
        let union = imagesOf.count
        let shared = imagesOf.filter { $0.value > 1 }.map(\.key)
        #expect(union == 40, "every pool file is a part of some image")
        #expect(shared.count == 26)
        let sizes = try ReleaseSetFixture.images.map { try #require(FileManager.default.attributesOfItem(atPath: set.iso($0))[.size] as? Int64) }
        let partBytes = try imagesOf.keys.reduce(Int64(0)) { sum, key in
            sum + (try #require(FileManager.default.attributesOfItem(atPath: set.pool + "/" + pathOf[key]!)[.size] as? Int64))
        }

        try Harness.withMount([set.setDir], options: ["--server", "Base=\(nginx.url)pool/", "--cache-dir", cacheDir]) { mnt in
            let before = try StatusReport.of(mnt)
            #expect(before.images.map(\.name).sorted() == ReleaseSetFixture.images.map { $0 + ".iso" })
            let total0 = try #require(before.total)
            #expect(total0.images == 3)
            #expect(total0.size == sizes.reduce(0, +))
            #expect(total0.partsShared == shared.count)
            #expect(total0.parts.partsTotal == union && total0.parts.partsMissing == union)
            for image in before.images {
                let name = String(image.name.dropLast(4))
                let i = try #require(ReleaseSetFixture.images.firstIndex(of: name))
                #expect(image.parts.partsTotal == perImage[i].count)
                #expect(image.size == sizes[i])
            }

            // All three images read at once, each compared with its ISO.
            let statuses = try cmpAtOnce(ReleaseSetFixture.images.map { (mnt + "/\($0).iso", set.iso($0)) })
            #expect(statuses == [0, 0, 0], "cmp of each image with its ISO")

            // nginx's log: every part of the set fetched once, a shared one too.
            let requests = nginx.requests().filter { $0.path.hasPrefix("/pool/") }
            #expect(requests.allSatisfy { $0.status == 200 }, "\(requests)")
            let fetched = requests.reduce(into: [String: Int]()) { $0[String($1.path.dropFirst(6)), default: 0] += 1 }
            #expect(fetched.count == union)
            for key in shared {
                #expect(fetched[pathOf[key]!] == 1, "\(pathOf[key]!) of \(imagesOf[key]!) images fetched \(fetched[pathOf[key]!] ?? 0) times")
            }
            #expect(fetched.values.allSatisfy { $0 == 1 }, "\(fetched.filter { $0.value != 1 })")
            // ... and cached once: one file per distinct part.
            #expect(regularFiles(under: cacheDir + "/parts").count == union)

            let after = try StatusReport.of(mnt)
            let total = try #require(after.total)
            #expect(total.images == 3)
            #expect(total.partsShared == shared.count)
            #expect(total.parts.partsTotal == union)
            #expect(total.parts.partsCached == union && total.parts.partsMissing == 0 && total.parts.partsLocal == 0)
            #expect(total.partsByState == ["cached": union])
            // Each part was downloaded by one image: the images' downloads add up to the set's
            // distinct parts, and so does the total.
            #expect(after.images.map(\.parts.bytesDownloaded).reduce(0, +) == partBytes)
            #expect(total.parts.bytesDownloaded == partBytes)
            #expect(total.bytes.values.reduce(0, +) == sizes.reduce(0, +))
            for image in after.images {
                #expect(image.parts.partsCached == image.parts.partsTotal && image.parts.partsMissing == 0)
            }

            let text = try Harness.check([Harness.jigdofs, "status", mnt]).stdout
            for name in ReleaseSetFixture.images { #expect(text.contains("\(name).iso ("), "\(text)") }
            #expect(text.contains("total (3 images, "), "\(text)")
            #expect(text.contains("parts:       \(union) total (\(shared.count) shared), 0 local, \(union) cached, 0 missing"), "\(text)")
            let mapText = try Harness.check([Harness.jigdofs, "status", "--map", mnt], environment: ["COLUMNS": "60"]).stdout
            #expect(mapText.split(separator: "\n").filter { $0.hasPrefix("  [") }.count == 3, "\(mapText)")
            #expect(mapText.contains("total (3 images, "), "\(mapText)")
            #expect(mapText.contains("  = cached ") && mapText.contains("  \(union) parts"), "\(mapText)")
        }
    }
}

/// Runs `cmp` of each pair at the same time; their exit statuses.
func cmpAtOnce(_ pairs: [(String, String)]) throws -> [Int32] {
    var readers: [Process] = []
    for (a, b) in pairs {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/cmp")
        p.arguments = [a, b]
        try p.run()
        readers.append(p)
    }
    return readers.map { p in
        p.waitUntilExit()
        return p.terminationStatus
    }
}
