import Foundation
import ISO9660
import TestSupport
import Testing

/// `jigdofs ARGS` (through TestSupport's `CLI`, so caches go to a temp dir).
private func jigdofs(_ args: [String]) throws -> ProcessResult {
    try CLI.run(args)
}

/// Parses `ls -lR` output into the xorriso-comparable form.
private func parseLongListing(_ text: String) -> [String: LsdlEntry] {
    var result: [String: LsdlEntry] = [:]
    var dir = "/"
    for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
        if line.hasSuffix(":") && line.hasPrefix("/") {
            dir = String(line.dropLast())
            if dir == "/" { result["/"] = nil }
            continue
        }
        let (fields, afterFields) = leadingFields(line, 7)
        let rest = afterFields.dropFirst() // the one space before the name
        var name = String(rest)
        var target: String?
        if fields[0].hasPrefix("l"), let arrow = name.range(of: " -> ") {
            target = String(name[arrow.upperBound...])
            name = String(name[..<arrow.lowerBound])
        }
        let isDir = fields[0].hasPrefix("d")
        let path = (dir == "/" ? "" : dir) + "/" + name
        result[path] = LsdlEntry(mode: String(fields[0]), size: isDir || target != nil ? 0 : Int64(fields[4]) ?? -1, target: target)
    }
    return result
}

@Suite struct BrowseCommandLine {
    init() throws {
        try CLI.requireBinary()
    }

    @Test(arguments: ["jf-sha256-gz", "jte-md5-gz"])
    func longRecursiveListingAgreesWithXorriso(variant: String) throws {
        let release = try releaseFixture.get()
        let run = try jigdofs(["ls", "-lR", "\(release)/\(variant)/release.jigdo"])
        #expect(run.status == 0, "\(run.stderr)")
        var ours = parseLongListing(run.stdout)
        var theirs = try xorrisoListing(variant.hasPrefix("jte") ? "\(release)/\(variant)/release.iso" : release + "/release.iso")
        theirs["/"] = nil
        ours["/"] = nil
        #expect(theirs.count > 40)
        #expect(ours == theirs)
    }

    @Test func rockRidgeListingWithSymlinks() throws {
        let dir = try rockRidgeFixture.get()
        let run = try jigdofs(["ls", "-lR", dir + "/rr.iso"])
        #expect(run.status == 0, "\(run.stderr)")
        var theirs = try xorrisoListing(dir + "/rr.iso")
        theirs["/"] = nil
        #expect(parseLongListing(run.stdout) == theirs)
    }

    @Test func shortListingsAndSingleFiles() throws {
        let release = try releaseFixture.get()
        let jigdo = "\(release)/jf-md5-bz2/release.jigdo"
        let top = try jigdofs(["ls", jigdo])
        #expect(top.stdout == "Packages\nREADME.txt\nextra dir\nrepodata\n")
        let packages = try jigdofs(["ls", jigdo, "/Packages"])
        let names = try FileManager.default.contentsOfDirectory(atPath: release + "/tree/Packages")
        #expect(packages.stdout.split(separator: "\n").map(String.init) == names.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) })
        let one = try jigdofs(["ls", "-l", jigdo, "README.txt"])
        #expect(one.stdout.hasPrefix("-rw-r--r-- 1 0 0 "))
        #expect(one.stdout.hasSuffix(" README.txt\n"))
    }

    @Test func catEqualsTheSourceFile() throws {
        let release = try releaseFixture.get()
        let tree = release + "/tree"
        let name = try #require(try FileManager.default.contentsOfDirectory(atPath: tree + "/Packages").sorted().first { $0.contains(" ") })
        for extra in [["--scan", tree], ["--map", "Base=" + tree], []] {
            let run = try jigdofs(["cat", "\(release)/jte-sha256-bz2/release.jigdo", "/Packages/" + name] + extra)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stdoutData == FileManager.default.contents(atPath: tree + "/Packages/" + name))
        }
        let plain = try jigdofs(["cat", release + "/release.iso", "README.txt"])
        #expect(plain.stdout == "jigdofs test release 7\n")
    }

    /// Without any parts: listing works, a file held in the template can be read, and a
    /// package says which part is missing.
    @Test func withoutParts() throws {
        let release = try releaseFixture.get()
        let lonely = fixtureRoot + "/lonely"
        try Subprocess.shell("mkdir -p \(shellQuote(lonely)) && cp \(shellQuote(release))/jf-md5-gz/release.* \(shellQuote(lonely))/")
        let list = try jigdofs(["ls", "-lR", lonely + "/release.jigdo"])
        #expect(list.status == 0, "\(list.stderr)")
        #expect(list.stdout.contains("/Packages:\n"))
        let readme = try jigdofs(["cat", lonely + "/release.jigdo", "/README.txt"])
        #expect(readme.status == 0, "\(readme.stderr)")
        #expect(readme.stdout == "jigdofs test release 7\n")
        let package = try #require(try FileManager.default.contentsOfDirectory(atPath: release + "/tree/Packages").sorted().first {
            (try? FileManager.default.attributesOfItem(atPath: release + "/tree/Packages/" + $0)[.size] as? Int).flatMap { $0 } ?? 0 > 4096
        })
        let cat = try jigdofs(["cat", lonely + "/release.jigdo", "/Packages/" + package])
        #expect(cat.status == 2)
        #expect(cat.stderr.hasPrefix("jigdofs: release.iso: /Packages/\(package): part "), "\(cat.stderr)")
        #expect(cat.stderr.contains("has no local copy"))
    }

    @Test func clearErrors() throws {
        let release = try releaseFixture.get()
        let jigdo = "\(release)/jf-md5-gz/release.jigdo"
        let missing = try jigdofs(["cat", jigdo, "/no/such/file"])
        #expect(missing.status == 1)
        #expect(missing.stderr == "jigdofs: release.iso: /no/such/file: no such file or directory\n")
        let dir = try jigdofs(["cat", jigdo, "/Packages"])
        #expect(dir.status == 1)
        #expect(dir.stderr.contains("is a directory"))

        // A jigdo of an image that is not ISO 9660 (a plain concatenation of files).
        let other = fixtureRoot + "/not-iso"
        try Subprocess.shell("""
            mkdir -p \(shellQuote(other)) && cd \(shellQuote(other))
            head -c 70000 /dev/urandom > blob.img
            cat \(shellQuote(release))/tree/Packages/* >> blob.img
            jigdo-file make-template -r quiet --force -i blob.img -j blob.jigdo -t blob.template \(shellQuote(release))/tree// 
            """)
        let notISO = try jigdofs(["ls", other + "/blob.jigdo", "--scan", release + "/tree"])
        #expect(notISO.status == 1)
        #expect(notISO.stderr.hasPrefix("jigdofs: blob.img: not an ISO 9660 image"), "\(notISO.stderr)")
    }
}
