import Foundation
import JigdoFormat
import Testing
import TestSupport

/// The real `jigdofs` binary against the fixture releases.
@Suite("jigdofs command line")
struct CLITests {
    @Test("make-image writes a file equal to the original ISO", arguments: FixtureVariant.names)
    func makeImageEqualsISO(_ name: String) throws {
        let v = try Fixtures.release().variant(name)
        let tmp = try TemporaryDirectory()
        let out = tmp.file("out.iso")
        let r = try CLI.run(["make-image", v.jigdo, "-o", out])
        #expect(r.status == 0, "\(r)")
        #expect(r.stdout.contains("matches the template"), "\(r)")
        #expect(try filesEqual(out, v.iso), "make-image output must equal \(v.iso)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.path) == ["out.iso"], "no temp file left behind")
    }

    @Test("make-image with --map (also of a directory named with a %XX) and with --scan, from a .jigdo whose own server does not resolve")
    func makeImageMapAndScan() throws {
        let release = try Fixtures.release()
        let v = release.variant("jte-sha256-bz2")
        let tmp = try TemporaryDirectory()
        let jigdo = try movedCopy(v, into: tmp)
        // A directory whose name holds a %XX: taken as it is, not decoded.
        try FileManager.default.createSymbolicLink(atPath: tmp.file("m%41p"), withDestinationPath: release.tree)
        for opts in [["--map", "Base=\(release.tree)"], ["--scan", release.tree], ["--map", "Base=\(tmp.file("m%41p"))"]] {
            let out = tmp.file("out.iso")
            let r = try CLI.run(["make-image", jigdo, "-o", out, "--force"] + opts)
            #expect(r.status == 0, "\(opts): \(r)")
            #expect(try filesEqual(out, v.iso), "\(opts)")
        }
    }

    @Test("info and info --json give the fixture's figures", arguments: ["jf-md5-gz", "jf-sha256-bz2", "jte-md5-gz", "jte-sha256-bz2"])
    func info(_ name: String) throws {
        let release = try Fixtures.release()
        let v = release.variant(name)
        let isoSize = try ReadOnlyFile(path: v.iso).size
        let isoSum = try ReadOnlyFile(path: v.iso).checksum(v.checksumKind)
        let partsInJigdo = distinctPartsListed(in: try String(contentsOfFile: v.jigdo, encoding: .utf8))
        #expect(partsInJigdo > 100)

        let r = try CLI.run(["info", "--json", v.jigdo])
        #expect(r.status == 0, "\(r)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout)")
        #expect(json["image"] as? String == "release.iso")
        #expect((json["size"] as? NSNumber)?.int64Value == isoSize)
        #expect(json["checksumKind"] as? String == v.checksumKind.rawValue)
        #expect(json["imageChecksumHex"] as? String == isoSum.hex)
        #expect(json["imageChecksum"] as? String == isoSum.base64)
        #expect(json["uniqueParts"] as? Int == partsInJigdo)
        #expect((json["parts"] as? Int ?? 0) >= partsInJigdo)
        let partBytes = (json["partBytes"] as? NSNumber)?.int64Value ?? -1
        let templateBytes = (json["templateBytes"] as? NSNumber)?.int64Value ?? -1
        #expect(partBytes > 0 && templateBytes > 0 && partBytes + templateBytes == isoSize)
        #expect(json["template"] as? String == v.template)
        #expect((json["templateChecksum"] as? String)?.contains("matched") == true)
        #expect(json["jigdoVersion"] as? String == (v.checksumKind == .md5 ? (v.isLibjte ? "1.1" : "1.2") : "2.0"))
        let servers = try #require(json["servers"] as? [[String: Any]])
        let base = try #require(servers.first { $0["label"] as? String == "Base" })
        #expect(base["values"] as? [String] == ["file:../tree/"])
        #expect(base["resolved"] as? [String] == [release.tree + "/"])

        let text = try CLI.run(["info", v.jigdo])
        #expect(text.status == 0)
        #expect(text.stdout.contains("Image:        release.iso"))
        #expect(text.stdout.contains(" (\(isoSize) bytes)") && text.stdout.contains("Size:         "))
        #expect(text.stdout.contains(isoSum.base64))
        #expect(text.stdout.contains("Parts:        \(partsInJigdo) distinct ("))
    }

    @Test("make-image refuses to overwrite without --force")
    func refusesOverwrite() throws {
        let v = try Fixtures.release().variant("jf-md5-bz2")
        let tmp = try TemporaryDirectory()
        let out = tmp.file("existing.iso")
        try writeBytes(Array("keep me".utf8), to: out)
        let r = try CLI.run(["make-image", v.jigdo, "-o", out])
        #expect(r.status == 1, "\(r)")
        #expect(r.stderrLines.count == 1, "\(r)")
        #expect(r.stderr.contains(out) && r.stderr.contains("already exists") && r.stderr.contains("--force"), "\(r)")
        #expect(try readBytes(out) == Array("keep me".utf8), "the existing file must be untouched")
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.path) == ["existing.iso"])

        let forced = try CLI.run(["make-image", v.jigdo, "-o", out, "--force"])
        #expect(forced.status == 0, "\(forced)")
        #expect(try filesEqual(out, v.iso))
    }

    @Test("make-image and verify with parts missing list them, exit non-zero, leave nothing behind")
    func missingParts() throws {
        let v = try Fixtures.release().variant("jf-sha256-gz")
        let tmp = try TemporaryDirectory()
        let jigdo = try movedCopy(v, into: tmp)
        let outDir = tmp.file("out")
        try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
        let partsInJigdo = distinctPartsListed(in: try String(contentsOfFile: v.jigdo, encoding: .utf8))

        let r = try CLI.run(["make-image", jigdo, "-o", outDir + "/x.iso"])
        #expect(r.status != 0, "\(r)")
        let lines = r.stderrLines
        #expect(lines.first?.contains("\(partsInJigdo) of \(partsInJigdo) parts") == true, "\(r)")
        #expect(lines.count == 20 + 2, "20 lines of missing parts after the header, then how many more")
        #expect(lines.last == "  and \(partsInJigdo - 20) more (jigdofs verify --list-missing)", "\(lines.last ?? "")")
        // Each part line names the location the .jigdo resolves to.
        let expectedDir = normalizePath(directoryOf(jigdo) + "../tree/")
        #expect(lines.dropFirst().dropLast().allSatisfy { $0.contains(expectedDir) }, "\(lines.prefix(3))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: outDir).isEmpty, "no output and no temp file")

        let verify = try CLI.run(["verify", jigdo])
        #expect(verify.status != 0)
        #expect(verify.stderr.contains("have no local copy"))
    }

    @Test("verify: exit 0 on a good release; a same-size wrong part is refused with a clear error",
          arguments: ["jf-md5-gz", "jte-sha256-bz2"])
    func verifyDetectsBadPart(_ name: String) throws {
        let release = try Fixtures.release()
        let v = release.variant(name)
        let good = try CLI.run(["verify", v.jigdo])
        #expect(good.status == 0, "\(good)")
        // The one line names the checksum of the image as read: the ISO's own.
        let kind = try TemplateInfo.read(ReadOnlyFile(path: v.template)).checksumKind
        let isoSum = try ReadOnlyFile(path: v.iso).checksum(kind).hex
        #expect(good.stdout.contains(": OK (\(kind.rawValue) \(isoSum), "), "\(good)")
        #expect(good.stdout.split(separator: "\n").count == 1, "\(good)")

        // A copy of the release whose tree has one part file replaced by other bytes.
        let tmp = try TemporaryDirectory()
        try copyTree(release.tree, to: tmp.file("tree"))
        try copyTree(v.directory, to: tmp.file(v.name))
        let jigdo = tmp.file(v.name + "/release.jigdo")
        let victim = tmp.file("tree/" + largestPackage(in: release.tree).dropFirst(release.tree.count + 1))
        var bytes = try readBytes(victim)
        for i in stride(from: 0, to: bytes.count, by: 4096) { bytes[i] = ~bytes[i] }
        try writeBytes(bytes, to: victim)

        let bad = try CLI.run(["verify", jigdo])
        #expect(bad.status != 0, "\(bad)")
        #expect(!bad.stdout.contains("OK"))
        #expect(bad.stderrLines.count == 1, "one error line: \(bad)")
        #expect(bad.stderr.contains(victim) && bad.stderr.contains("checksum"), "the error names the file and the problem: \(bad)")

        let out = tmp.file("out.iso")
        let make = try CLI.run(["make-image", jigdo, "-o", out])
        #expect(make.status != 0, "\(make)")
        #expect(make.stderr.contains(victim), "\(make)")
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.path).sorted() == ["tree", v.name].sorted(), "no temp file left")
    }

    @Test("bad SOURCE and bad templates: one line on stderr, non-zero exit, no crash")
    func oneLineErrors() throws {
        let release = try Fixtures.release()
        let v = release.variant("jf-md5-gz")
        let tmp = try TemporaryDirectory()
        try writeBytes(Array("hello, I am not a jigdo\n".utf8), to: tmp.file("text.jigdo"))
        try writeBytes(Array(try readBytes(v.template).prefix(3000)), to: tmp.file("short.template"))
        try writeBytes(Array("[Jigdo]\nVersion=3.0\n[Image]\nFilename=a\nTemplate=b\n".utf8), to: tmp.file("v3.jigdo"))
        try writeBytes(Array("[Image]\nFilename='unterminated\nTemplate=b\n".utf8), to: tmp.file("quote.jigdo"))
        // A disk-image-sized SOURCE is refused without being read (sparse: costs no disk).
        try Subprocess.shell("truncate -s 5G huge.iso", cwd: tmp.path)

        let cases: [(args: [String], mentions: [String])] = [
            (["info", tmp.file("missing.jigdo")], [tmp.file("missing.jigdo"), "no such file"]),
            (["verify", tmp.file("missing.jigdo")], [tmp.file("missing.jigdo"), "no such file"]),
            (["info", tmp.path], [tmp.path, "directory"]),
            (["make-image", tmp.path, "-o", tmp.file("o.iso")], [tmp.path, "directory"]),
            (["info", tmp.file("text.jigdo")], [tmp.file("text.jigdo"), "[Image]"]),
            (["info", v.iso], [v.iso]),
            (["verify", tmp.file("huge.iso")], [tmp.file("huge.iso"), "not a .jigdo file"]),
            (["verify", v.template], [v.template]),
            (["info", tmp.file("v3.jigdo")], [tmp.file("v3.jigdo"), "3.0"]),
            (["info", tmp.file("quote.jigdo")], [tmp.file("quote.jigdo"), "quote"]),
            (["info", v.jigdo, "--template", tmp.file("short.template")], [tmp.file("short.template")]),
            (["info", v.jigdo, "--template", tmp.file("nope.template")], [tmp.file("nope.template")]),
            (["make-image", v.jigdo, "-o", tmp.file("o.iso"), "--scan", tmp.file("nodir")], [tmp.file("nodir")]),
            (["make-image", v.jigdo, "-o", tmp.file("o.iso"), "--map", "Base=\(tmp.file("nodir"))"], [tmp.file("nodir")]),
            (["make-image", v.jigdo, "-o", tmp.file("nodir/o.iso")], [tmp.file("nodir/o.iso")]),
        ]
        for c in cases {
            let r = try CLI.run(c.args)
            #expect(r.status != 0, "\(c.args): \(r)")
            #expect(r.stderrLines.count == 1, "\(c.args): exactly one line expected: \(r)")
            for m in c.mentions { #expect(r.stderr.contains(m), "\(c.args): should mention '\(m)': \(r)") }
            #expect(!r.stderr.contains("Fatal error") && !r.stderr.contains("Stack dump") && !r.stderr.contains("Backtrace"), "\(c.args): \(r)")
            #expect(r.status < 64 || r.status == 64, "\(c.args): not killed by a signal: \(r.status)")
        }
        #expect(!FileManager.default.fileExists(atPath: tmp.file("o.iso")))
    }

    @Test("an image checksum that does not match: verify says BAD (exit 3), make-image leaves nothing")
    func imageChecksumMismatch() throws {
        let release = try Fixtures.release()
        let v = release.variant("jf-md5-gz")
        let tmp = try TemporaryDirectory()
        // A release copy whose template claims another image checksum (and whose .jigdo has no
        // template checksum to catch that first).
        try FileManager.default.createSymbolicLink(atPath: tmp.file("tree"), withDestinationPath: release.tree)
        try FileManager.default.createDirectory(atPath: tmp.file("r"), withIntermediateDirectories: true)
        let text = try String(contentsOfFile: v.jigdo, encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix("Template-MD5Sum") }
            .joined(separator: "\n")
        try text.write(toFile: tmp.file("r/release.jigdo"), atomically: true, encoding: .utf8)
        var template = try readBytes(v.template)
        // DESC ends with the image entry: type 5, length (6), MD5 (16), block length (4), then
        // the DESC length (6).
        #expect(template[template.count - 6 - 4 - 16 - 6 - 1] == 5)
        template[template.count - 6 - 4 - 16 + 3] ^= 0x40
        try writeBytes(template, to: tmp.file("r/release.template"))

        let verify = try CLI.run(["verify", tmp.file("r/release.jigdo")])
        #expect(verify.status == 3, "\(verify)")
        // The image read is the ISO; the template's claim is another checksum.
        let isoSum = try ReadOnlyFile(path: v.iso).checksum(.md5).hex
        #expect(verify.stderrLines.count == 1 && verify.stderr.contains(": BAD: MD5 \(isoSum), template says "), "\(verify)")
        #expect(!verify.stderr.contains("template says \(isoSum)"), "\(verify)")
        let make = try CLI.run(["make-image", tmp.file("r/release.jigdo"), "-o", tmp.file("r/out.iso")])
        #expect(make.status == 3, "\(make)")
        #expect(make.stderr.contains("does not match"), "\(make)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.file("r")).sorted() == ["release.jigdo", "release.template"])
    }

    @Test("a template that does not match the .jigdo: an error naming the file and the expected sum, never the file's own")
    func templateMismatch() throws {
        let release = try Fixtures.release()
        let v = release.variant("jf-md5-gz")
        let other = release.variant("jf-md5-bz2")
        let expected = try #require(try JigdoDescriptor.load(path: v.jigdo).image.templateChecksums[.md5])
        let actual = try ReadOnlyFile(path: other.template).checksum(.md5)
        let r = try CLI.run(["info", v.jigdo, "--template", other.template])
        #expect(r.status == 3, "\(r)")
        #expect(r.stderrLines.count == 1)
        #expect(r.stderr.contains(expected.base64) && r.stderr.contains("does not match"), "\(r)")
        // The template may be any local file (--template): its checksum tells what it holds.
        #expect(!r.stderr.contains(actual.base64) && !r.stderr.contains(actual.hex), "\(r)")
        #expect(r.stderr.contains(other.template))
    }
}

/// A copy of the variant's .jigdo and .template in `tmp/away/j/`, where the jigdo's
/// `file:../tree/` server resolves to a directory that does not exist.
func movedCopy(_ v: FixtureVariant, into tmp: TemporaryDirectory) throws -> String {
    let dir = tmp.file("away/j")
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try copyTree(v.jigdo, to: dir + "/release.jigdo")
    try copyTree(v.template, to: dir + "/release.template")
    return dir + "/release.jigdo"
}

/// The number of distinct checksums in the `[Parts]` sections of a .jigdo text.
func distinctPartsListed(in text: String) -> Int {
    var inParts = false
    var sums = Set<Substring>()
    for line in text.split(separator: "\n") {
        if line.hasPrefix("[") { inParts = line.hasPrefix("[Parts]"); continue }
        if inParts, !line.hasPrefix("#"), let eq = line.firstIndex(of: "=") { sums.insert(line[..<eq]) }
    }
    return sums.count
}

/// The largest file under the tree's Packages/ (certainly a part).
func largestPackage(in tree: String) -> String {
    regularFiles(under: tree + "/Packages").max { fileSize($0) < fileSize($1) }!
}

func fileSize(_ path: String) -> Int64 {
    (try? ReadOnlyFile(path: path).size) ?? -1
}
