import Foundation
import JigdoFormat
import TestSupport
import Testing

/// Publishers' files through the mount (issue 8): merged images, a template by URL, a folder
/// of .jigdo files of which some cannot be read.
@Suite(.serialized, .enabled(if: Harness.canMount, "needs root, /dev/fuse and fusermount3"))
struct PublisherMountTests {
    func servedTemp() throws -> String {
        let dir = try Harness.makeTempDir("pub")
        try FileManager.default.createDirectory(atPath: dir + "/www", withIntermediateDirectories: true)
        return dir
    }

    @Test("a merged .jigdo (Fedora) shows each image as its own file, each bit-exact")
    func mergedImages() throws {
        let dir = try servedTemp()
        let nginx = try Nginx(root: dir + "/www", serverConfig: Publishers.fedoraNginxConfig)
        defer { nginx.stop() }
        let release = try Publishers.fedora(in: dir, serverURL: nginx.url)
        try Harness.withMount([release.jigdo], options: ["--map", "Fedora=\(release.tree)", "--cache-dir", dir + "/cache"]) { mnt in
            let names = try FileManager.default.contentsOfDirectory(atPath: mnt).sorted()
            #expect(names == release.isos.keys.sorted().flatMap { [$0, $0 + ".d"] }, "\(names)")
            for (name, iso) in release.isos {
                let cmp = try Harness.run(["cmp", mnt + "/" + name, iso])
                #expect(cmp.status == 0, "\(name): \(cmp.stdout)\(cmp.stderr)")
            }
        }
    }

    @Test("debian-cd today through the mount: gzip'd .jigdo, the --try-last snapshot server only for what the mirror lacks")
    func debianToday() throws {
        let dir = try servedTemp()
        let nginx = try Nginx(root: dir + "/www")
        defer { nginx.stop() }
        let release = try Publishers.debianToday(in: dir, serverURL: nginx.url, sha256: true)
        try Harness.withMount([release.jigdo], options: ["--cache-dir", dir + "/cache"]) { mnt in
            #expect(try FileManager.default.contentsOfDirectory(atPath: mnt).sorted() == ["debian-12.5.0-amd64-DVD-1.iso", "debian-12.5.0-amd64-DVD-1.iso.d"])
            let cmp = try Harness.run(["cmp", mnt + "/debian-12.5.0-amd64-DVD-1.iso", release.iso])
            #expect(cmp.status == 0, "\(cmp.stdout)\(cmp.stderr)")
        }
        let log = nginx.requests()
        let snapshot = "/" + Publishers.snapshotPath
        #expect(Set(log.filter { $0.path.hasPrefix(snapshot) }.map { String($0.path.dropFirst(snapshot.count)) }) == Set(Publishers.onlyOnSnapshot), "\(log)")
        for file in Publishers.onlyOnSnapshot {
            let primary = log.firstIndex { $0.path == "/debian/" + file }, last = log.firstIndex { $0.path == snapshot + file }
            #expect(primary != nil && last != nil && primary! < last!, "\(file)")
        }
    }

    @Test("the SME workflow through the mount: template by URL; a second mount --offline from the cache")
    func smeWorkflow() throws {
        let dir = try servedTemp()
        let nginx = try Nginx(root: dir + "/www")
        defer { nginx.stop() }
        let v = try Fixtures.smallRelease().variant("jf-md5-gz")
        let jigdo = try Publishers.sme(in: dir, serverURL: nginx.url, variant: v)
        let cache = ["--cache-dir", dir + "/cache"]
        try Harness.withMount([jigdo], options: cache) { mnt in
            let cmp = try Harness.run(["cmp", mnt + "/release.iso", v.iso])
            #expect(cmp.status == 0, "\(cmp.stdout)\(cmp.stderr)")
        }
        let served = nginx.requests().count
        #expect(served > 1)
        try Harness.withMount([jigdo], options: cache + ["--offline"]) { mnt in
            let cmp = try Harness.run(["cmp", mnt + "/release.iso", v.iso])
            #expect(cmp.status == 0, "\(cmp.stdout)\(cmp.stderr)")
        }
        #expect(nginx.requests().count == served, "offline: nothing fetched")
    }

    @Test("a folder of .jigdo files: unreadable ones are skipped with one line each, the others mount")
    func folderWithBadFiles() throws {
        let release = try Fixtures.smallRelease()
        let v = release.variant("jf-sha256-gz")
        let dir = try Harness.makeTempDir("folder")
        try FileManager.default.copyItem(atPath: v.jigdo, toPath: dir + "/good.jigdo")
        try FileManager.default.copyItem(atPath: v.template, toPath: dir + "/release.template")
        try "[Jigdo]\nVersion=1.1\n[Image]\nFilename='broken\n".write(toFile: dir + "/broken.jigdo", atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: v.iso, toPath: dir + "/image.jigdo")
        var noTemplate = try String(decoding: Decompression.gunzipConcatenated(try readBytes(v.jigdo), limit: 1 << 26), as: UTF8.self)
        noTemplate = noTemplate.replacingOccurrences(of: "Template=release.template", with: "Template=gone.template")
            .replacingOccurrences(of: "Filename=release.iso", with: "Filename=other.iso")
        try noTemplate.write(toFile: dir + "/old.jigdo", atomically: true, encoding: .utf8)

        let mountpoint = try Harness.makeTempDir("mnt")
        defer { Harness.cleanUpMount(mountpoint) }
        let r = try Harness.run([Harness.jigdofs, "mount", "--map", "Base=\(release.tree)", dir, mountpoint])
        #expect(r.status == 0, "\(r)")
        #expect(Harness.isMounted(mountpoint))
        let skipped = r.stderrLines.filter { $0.contains("skipping") }
        #expect(skipped.count == 3, "\(r.stderr)")
        #expect(skipped.contains { $0.contains("broken.jigdo") && $0.contains("quote") })
        #expect(skipped.contains { $0.contains("image.jigdo") && $0.contains("ISO 9660 image, not a .jigdo") }, "\(r.stderr)")
        #expect(skipped.contains { $0.contains("old.jigdo") && $0.contains("gone.template") })
        let names = try FileManager.default.contentsOfDirectory(atPath: mountpoint).sorted()
        #expect(names == ["release.iso", "release.iso.d"])
        let cmp = try Harness.run(["cmp", mountpoint + "/release.iso", v.iso])
        #expect(cmp.status == 0)
        Harness.cleanUpMount(mountpoint)

        // Only when none can be read does the mount fail.
        let bad = try Harness.makeTempDir("allbad")
        try FileManager.default.copyItem(atPath: dir + "/broken.jigdo", toPath: bad + "/broken.jigdo")
        let mnt2 = try Harness.makeTempDir("mnt")
        defer { Harness.cleanUpMount(mnt2) }
        let fails = try Harness.run([Harness.jigdofs, "mount", bad, mnt2])
        #expect(fails.status != 0 && fails.stderr.contains("none of its 1 .jigdo files"), "\(fails)")
        #expect(!Harness.isMounted(mnt2))
    }
}
