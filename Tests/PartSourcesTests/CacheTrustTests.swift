import Foundation
import ImageAssembly
import JigdoFormat
@testable import PartSources
import Testing
import TestSupport

/// Issue 20, "the cache trusts whatever is in it": each thing another user could plant in a
/// cache (run as root, "another user" is uid 65534) is refused with one line naming it, or
/// checked again, and the image read stays right byte for byte.
@Suite("cache trust: planted cache files are refused or checked")
struct CacheTrustTests {
    static let nobody: uid_t = 65534

    /// A small release served by nginx, the .jigdo and template copied to `j/` (so the
    /// jigdo's own `file:../tree/` server finds nothing), and the part of one package file
    /// with no duplicate in the tree.
    struct Setup {
        let release: FixtureRelease
        let variant: FixtureVariant
        let tmp: TemporaryDirectory
        let jigdo: String
        /// The package with the chosen part: its path in the tree and inside the image.
        let partFile: String
        let isoPath: String
        let partSum: Checksum
        /// Serves the release (stopped when the setup is released).
        let nginx: Nginx

        init() throws {
            release = try Fixtures.smallRelease()
            variant = release.variant("jf-md5-gz")
            tmp = try TemporaryDirectory()
            try FileManager.default.createDirectory(atPath: tmp.file("j"), withIntermediateDirectories: true)
            try variant.copyJigdoAndTemplate(into: tmp.file("j"))
            jigdo = tmp.file("j/release.jigdo")
            var bySum: [Checksum: [String]] = [:]
            for path in regularFiles(under: release.tree + "/Packages") {
                bySum[try ReadOnlyFile(path: path).checksum(.md5), default: []].append(path)
            }
            let unique = bySum.filter { $0.value.count == 1 }.map { ($0.key, $0.value[0]) }
            let largest = try #require(unique.max { try! ReadOnlyFile(path: $0.1).size < ReadOnlyFile(path: $1.1).size })
            partSum = largest.0
            partFile = largest.1
            isoPath = "/Packages/" + baseName(partFile)
            nginx = try Nginx(root: release.root)
        }

        /// The server option that makes the release's parts come from `nginx`.
        var server: [String] { ["--server", "Base=\(nginx.url)tree/"] }
    }

    /// Lines of stderr that name `path`.
    static func lines(_ r: ProcessResult, naming path: String) -> [String] {
        r.stderrLines.filter { $0.contains(path) }
    }

    @Test("a cache dir of another user is refused with one line; nothing is written into it; the image is right")
    func anotherUsersCacheDirectory() throws {
        let s = try Setup()
        defer { s.nginx.stop() }
        let cache = s.tmp.file("cache")
        try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: false)
        #expect(chown(cache, Self.nobody, Self.nobody) == 0)
        chmod(cache, 0o755)
        let out = s.tmp.file("out.iso")
        let r = try CLI.run(["make-image", s.jigdo, "-o", out, "--cache-dir", cache] + s.server)
        #expect(r.status == 0, "\(r)")
        #expect(try filesEqual(out, s.variant.iso))
        let said = Self.lines(r, naming: cache)
        #expect(said.count == 1 && said[0].contains("owned by uid 65534"), "\(r)")
        #expect(!FileManager.default.fileExists(atPath: cache + "/parts"), "the refused cache was written")
        #expect(try FileManager.default.contentsOfDirectory(atPath: cache).isEmpty)
        // `cache list` refuses it too (an error, not an empty listing).
        let list = try CLI.run(["cache", "list", "--cache-dir", cache])
        #expect(list.status != 0 && list.stderr.contains("owned by uid 65534"), "\(list)")
    }

    @Test("a group- or other-writable cache dir is refused the same way")
    func writableByOthers() throws {
        let tmp = try TemporaryDirectory()
        let dir = tmp.file("c")
        mkdir(dir, 0o700)
        chmod(dir, 0o770)
        let cache = try PartCache(directory: dir)
        let why = try #require(cache.refusal).description
        #expect(why.hasPrefix(dir + ": ") && why.contains("writable by group or others (mode 770)"), "\(why)")
        #expect(!cache.isWritable)
        #expect(!FileManager.default.fileExists(atPath: dir + "/parts"))
        #expect(throws: JigdoError.self) { try cache.sourceDirectory(forURL: "http://h/x.jigdo") }
    }

    @Test("the /tmp fallback ($TMPDIR/jigdofs-UID): made by us 0700; pre-created 0777, a link or another user's, refused")
    func temporaryFallback() throws {
        let tmp = try TemporaryDirectory()
        let env = ["TMPDIR": tmp.path]
        let fallback = PartCache.defaultDirectory(environment: env, userDatabaseHome: nil)
        #expect(fallback == tmp.path + "/jigdofs-\(geteuid())")

        // Absent: made by us, private.
        let made = try PartCache(directory: fallback)
        #expect(made.refusal == nil)
        var st = stat()
        #expect(lstat(fallback, &st) == 0 && st.st_mode & 0o777 == 0o700 && st.st_uid == geteuid())
        removeTree(fallback)

        // Made first by someone else, 0777 (as an attacker in /tmp would): refused, untouched.
        mkdir(fallback, 0o777)
        chmod(fallback, 0o777)
        let hijacked = try PartCache(directory: fallback)
        #expect(hijacked.refusal?.description.contains("writable by group or others (mode 777)") == true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: fallback).isEmpty)

        // The image is still right, with one line naming the directory.
        let s = try Setup()
        defer { s.nginx.stop() }
        let out = s.tmp.file("out.iso")
        let r = try CLI.run(["make-image", s.jigdo, "-o", out, "--cache-dir", fallback] + s.server)
        #expect(r.status == 0, "\(r)")
        #expect(try filesEqual(out, s.variant.iso))
        #expect(Self.lines(r, naming: fallback).count == 1, "\(r)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: fallback).isEmpty)
        removeTree(fallback)

        // A link there, in a directory others can write as /tmp (so another user could have
        // made or swapped it), and a directory of another user: refused.
        mkdir(tmp.file("elsewhere"), 0o700)
        chmod(tmp.path, 0o1777)
        symlink(tmp.file("elsewhere"), fallback)
        #expect(try PartCache(directory: fallback).refusal?.description.contains("a symbolic link") == true)
        chmod(tmp.path, 0o700)
        // The same link where only we can write (a user who moved the cache to another disk):
        // the cache is there, behind it.
        let moved = try PartCache(directory: fallback)
        #expect(moved.refusal == nil)
        // Only the root may be a link: a link below it is still refused.
        symlink(tmp.file("elsewhere"), tmp.file("elsewhere/parts-link"))
        #expect(throws: JigdoError.self) {
            try CacheTrust.makeTrustedDirectories(fallback, ["parts-link/md5"])
        }
        unlink(fallback)
        mkdir(fallback, 0o700)
        chown(fallback, Self.nobody, Self.nobody)
        #expect(try PartCache(directory: fallback).refusal?.description.contains("owned by uid 65534") == true)
    }

    @Test("a forged checksum cache row (a decoy of the right size) is checked before serving: right bytes, logged, dropped")
    func forgedChecksumRow() throws {
        let s = try Setup()
        defer { s.nginx.stop() }
        // The scan tree holds the release without the chosen package, and a decoy of its size.
        let scan = s.tmp.file("scan")
        try copyTree(s.release.tree, to: scan)
        let relative = String(s.partFile.dropFirst(s.release.tree.count))
        unlink(scan + relative)
        var decoyBytes = try readBytes(s.partFile)
        for i in decoyBytes.indices { decoyBytes[i] ^= 0x5a }
        let decoy = scan + "/decoy.bin"
        try writeBytes(decoyBytes, to: decoy)

        // The row, written the way a scan writes it (the walker's key), mapping the decoy to
        // the part's checksum.
        let cacheDir = s.tmp.file("cache")
        var key: ScannedFile?
        try DirectoryWalker.walk(scan) { if $0.path.hasSuffix("/decoy.bin") { key = $0 } }
        let row = try #require(key)
        #expect(row.path == decoy)
        let forged = try ChecksumCache(directory: cacheDir)
        forged.store([(row, s.partSum)], kind: .md5)

        // In process: the decoy is a candidate until it is read, then it is no local copy.
        let image = try JigdoImage.open(jigdoPath: s.jigdo)
        let index = try #require(image.template.parts.firstIndex { $0.checksum == s.partSum })
        var descriptor = image.descriptor
        descriptor.servers = [:]
        let local = try LocalParts(template: image.template, resolver: LocationResolver(descriptor: descriptor),
                                   scanDirectories: [scan], checksumCache: forged)
        #expect(local.scanReport.fromCache == 1)
        var buffer = [UInt8](repeating: 0, count: decoyBytes.count)
        #expect(throws: JigdoError.self) { try buffer.withUnsafeMutableBytes { try local.readPart(index, at: 0, into: $0) } }
        #expect(!local.isLocallyAvailable(index))
        #expect(forged.lookup([row], kind: .md5).isEmpty, "the wrong row was kept")

        // Through the CLI, with the row forged again: the part comes from the server.
        forged.store([(row, s.partSum)], kind: .md5)
        let r = try CLI.run(["cat", s.jigdo, s.isoPath, "--scan", scan, "--cache-dir", cacheDir] + s.server)
        #expect(r.status == 0, "\(r)")
        let served = Array(r.stdoutData) == (try readBytes(s.partFile))
        #expect(served, "the decoy's bytes were served")
        let said = Self.lines(r, naming: decoy)
        #expect(said.count == 1 && said[0].contains("checksum cache entry is wrong"), "\(r)")
        // Neither the decoy's checksum nor its content is told.
        let decoySum = try ReadOnlyFile(path: decoy).checksum(.md5)
        #expect(!r.stderr.contains(decoySum.base64) && !r.stderr.contains(decoySum.hex))
        // The row is gone.
        #expect(try ChecksumCache(directory: cacheDir).lookup([row], kind: .md5).isEmpty)
    }

    @Test("--scan-image: a forged checksum row for a file inside an old image is checked before serving, and dropped")
    func forgedImageEntryRow() throws {
        let s = try Setup()
        defer { s.nginx.stop() }
        // A copy of the release's ISO with one byte of the chosen package changed: its entry
        // has the part's size, not its bytes.
        let old = s.tmp.file("old.iso")
        var iso = try readBytes(s.variant.iso)
        let package = try readBytes(s.partFile)
        let at = try #require(Data(iso).range(of: Data(package))?.lowerBound)
        iso[at + package.count / 2] ^= 0xff
        try writeBytes(iso, to: old)
        var st = stat()
        #expect(stat(old, &st) == 0)
        let row = ScannedFile(path: "iso9660:" + old + "//" + s.isoPath, size: Int64(package.count),
                              modificationTimeNs: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec),
                              inode: UInt64(st.st_ino))
        let cache = try ChecksumCache(directory: s.tmp.file("cache"))
        cache.store([(row, s.partSum)], kind: .md5)

        let image = try JigdoImage.open(jigdoPath: s.variant.jigdo)
        let index = try #require(image.template.parts.firstIndex { $0.checksum == s.partSum })
        let fromImage = try ISOImageParts(template: image.template, images: [old], checksumCache: cache)
        var descriptor = image.descriptor
        descriptor.servers = [:]
        let tree = try LocalParts(template: image.template, resolver: LocationResolver(descriptor: descriptor),
                                  scanDirectories: [s.release.tree])
        let chain = PartSourceChain([fromImage, tree], template: image.template)
        var bytes = [UInt8](repeating: 0, count: package.count)
        try bytes.withUnsafeMutableBytes { try chain.readPart(index, at: 0, into: $0) }
        let right = bytes == package
        #expect(right, "the changed entry's bytes were served")
        #expect(!fromImage.isLocallyAvailable(index))
        #expect(cache.lookup([row], kind: .md5).isEmpty, "the wrong row was kept")
    }

    @Test("a planted sources/ entry is refused offline (one line naming it) and replaced online")
    func plantedSources() throws {
        let s = try Setup()
        defer { s.nginx.stop() }
        // The .jigdo served by URL (its parts from the release's nginx), and another image of
        // the same parts to plant in its place.
        let www = s.tmp.file("www")
        mkdir(www, 0o755)
        chmod(s.tmp.path, 0o755)
        let site = try Nginx(root: www)
        defer { site.stop() }
        let other = s.release.variant("jte-md5-gz")
        #expect(!(try filesEqual(other.iso, s.variant.iso)))
        for (v, dir) in [(s.variant, www), (other, s.tmp.file("other"))] {
            mkdir(dir, 0o755)
            let text = try String(contentsOfFile: v.jigdo, encoding: .utf8)
            try text.replacingOccurrences(of: "file:../tree/", with: s.nginx.url + "tree/")
                .write(toFile: dir + "/release.jigdo", atomically: true, encoding: .utf8)
            try FileManager.default.copyItem(atPath: v.template, toPath: dir + "/release.template")
            for f in ["release.jigdo", "release.template"] { chmod(dir + "/" + f, 0o644) }
        }
        let url = site.url + "release.jigdo"
        let cacheDir = s.tmp.file("cache")
        let first = try CLI.run(["make-image", url, "-o", s.tmp.file("first.iso"), "--cache-dir", cacheDir])
        #expect(first.status == 0, "\(first)")
        #expect(try filesEqual(s.tmp.file("first.iso"), s.variant.iso))
        // The entries of the .jigdo's URL and of its template's.
        let sources = cacheDir + "/sources/"
        let entries = try FileManager.default.contentsOfDirectory(atPath: sources).map { sources + $0 }
        let jigdoEntry = try #require(entries.first { FileManager.default.fileExists(atPath: $0 + "/release.jigdo") })
        let templateEntry = try #require(entries.first { FileManager.default.fileExists(atPath: $0 + "/release.template") })

        // Another user's .jigdo and template in their place.
        for (entry, name) in [(jigdoEntry, "release.jigdo"), (templateEntry, "release.template")] {
            unlink(entry + "/" + name)
            try FileManager.default.copyItem(atPath: s.tmp.file("other/" + name), toPath: entry + "/" + name)
            #expect(chown(entry + "/" + name, Self.nobody, Self.nobody) == 0)
        }
        let offline = try CLI.run(["make-image", url, "-o", s.tmp.file("offline.iso"), "--offline", "--cache-dir", cacheDir])
        #expect(offline.status != 0, "\(offline)")
        #expect(!FileManager.default.fileExists(atPath: s.tmp.file("offline.iso")), "the planted image was made")
        let said = Self.lines(offline, naming: jigdoEntry + "/release.jigdo")
        #expect(said.count == 1 && said[0].contains("owned by uid 65534"), "\(offline)")

        // Online, the URL's own release replaces the planted files.
        let online = try CLI.run(["make-image", url, "-o", s.tmp.file("online.iso"), "--cache-dir", cacheDir])
        #expect(online.status == 0, "\(online)")
        #expect(try filesEqual(s.tmp.file("online.iso"), s.variant.iso))
        #expect(Self.lines(online, naming: templateEntry + "/release.template").count == 1, "\(online)")

        // A planted directory itself: refused, with one line naming it.
        removeTree(jigdoEntry)
        mkdir(jigdoEntry, 0o755)
        chown(jigdoEntry, Self.nobody, Self.nobody)
        let dir = try CLI.run(["make-image", url, "-o", s.tmp.file("dir.iso"), "--cache-dir", cacheDir])
        #expect(dir.status != 0, "\(dir)")
        #expect(Self.lines(dir, naming: jigdoEntry).count == 1, "\(dir)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: jigdoEntry).isEmpty)
    }

    @Test("a symlinked checksums.sqlite is refused: its target is never created; the image is right")
    func symlinkedChecksumDatabase() throws {
        let s = try Setup()
        defer { s.nginx.stop() }
        let cacheDir = s.tmp.file("cache")
        mkdir(cacheDir, 0o700)
        let target = s.tmp.file("target.sqlite")
        #expect(symlink(target, cacheDir + "/checksums.sqlite") == 0)
        let out = s.tmp.file("out.iso")
        let r = try CLI.run(["make-image", s.jigdo, "-o", out, "--scan", s.release.tree, "--cache-dir", cacheDir])
        #expect(r.status == 0, "\(r)")
        #expect(try filesEqual(out, s.variant.iso))
        #expect(!FileManager.default.fileExists(atPath: target), "sqlite followed the link")
        let said = Self.lines(r, naming: cacheDir + "/checksums.sqlite")
        #expect(said.count == 1 && said[0].contains("a symbolic link"), "\(r)")

        // The same for a link in place of its -wal file.
        unlink(cacheDir + "/checksums.sqlite")
        #expect(symlink(target, cacheDir + "/checksums.sqlite-wal") == 0)
        #expect(throws: JigdoError.self) { try ChecksumCache(directory: cacheDir) }
        #expect(!FileManager.default.fileExists(atPath: target))
    }
}
