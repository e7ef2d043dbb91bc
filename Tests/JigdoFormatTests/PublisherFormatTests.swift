import Foundation
import JigdoFormat
import Testing
import TestSupport

/// What real publishers' .jigdo files carry beyond our own fixtures (issue 8), and the bounds
/// of label expansion (issue 9, label fan-out).
@Suite("Publishers' .jigdo files")
struct PublisherFormatTests {
    let part = JigdoBase64.decodeChecksum(md5A)!

    @Test func weightsOrderLocations() throws {
        let d = try parse("""
            \(imageSection)
            [Parts]
            \(md5A)=Debian:pool/a.deb
            [Servers]
            Debian=http://one/
            Debian=https://snapshot.debian.org/archive/debian/20240210T000000Z/ --try-last
            Debian=http://fast/ --try-first=2
            Debian=Mirror:sub/ --try-first
            Debian=http://two/
            Mirror=http://m/ --try-last=3
            Mirror=http://m2/
            """)
        #expect(d.servers["Debian"]?.map(\.weight) == [0, -1, 2, 1, 0])
        #expect(d.servers["Debian"]?[1].value == "https://snapshot.debian.org/archive/debian/20240210T000000Z/", "the option is not part of the URL")
        let r = LocationResolver(descriptor: d)
        let got = r.weightedLocations(forPart: part)
        #expect(got.map(\.location.description) == [
            "http://fast/pool/a.deb",        // 2
            "http://m2/sub/pool/a.deb",      // 1 + 0
            "http://one/pool/a.deb",         // 0, file order among equals
            "http://two/pool/a.deb",         // 0
            "https://snapshot.debian.org/archive/debian/20240210T000000Z/pool/a.deb", // -1
            "http://m/sub/pool/a.deb",       // 1 - 3
        ])
        #expect(got.map(\.weight) == [2, 1, 0, 0, -1, -2])
        #expect(d.warnings.isEmpty)
    }

    @Test func optionsOnPartsValuesAndUnknownOptions() throws {
        let d = try parse("""
            \(imageSection)
            [Parts]
            \(md5A)=http://late/a --try-last
            \(md5A)=A:a --frobnicate
            \(md5A)='http://quoted --try-first/a'
            \(md5B)=A:notes --v1.2.txt
            [Servers]
            A=http://a/ --weird=1 --try-first=5
            A=http://b/ --frobnicate
            """)
        #expect(d.parts[md5A]?.map(\.value) == ["http://late/a", "A:a", "http://quoted --try-first/a"])
        #expect(d.servers["A"]?.map(\.value) == ["http://a/", "http://b/"])
        #expect(d.parts[md5B]?.map(\.value) == ["A:notes --v1.2.txt"], "an unquoted path word that is no option stays")
        #expect(LocationResolver(descriptor: d).locations(forPart: part).map(\.description) == [
            "http://a/a", "http://b/a", "http://quoted --try-first/a", "http://late/a",
        ])
        #expect(d.warnings.count == 1, "one warning for all unknown options: \(d.warnings)")
        #expect(d.warnings.first?.contains("--frobnicate") == true && d.warnings.first?.contains("--weird=1") == true)
    }

    @Test func labelLoopsAreRefusedNamingTheLabel() throws {
        let cases: [(String, String)] = [
            ("Base=Base:\n", "Base"),
            ("Base=http://real/\nBase=Base:\nBase=Base:\nBase=Base:\n", "Base"),
            ("Loop1=Loop2:x/\nLoop2=Loop1:y/\n", "Loop1 -> Loop2 -> Loop1"),
            ("Ok=http://ok/\nA=B:\nB=C:\nC=A:\n", "A -> B -> C -> A"),
        ]
        for (servers, mention) in cases {
            let clock = ContinuousClock()
            let start = clock.now
            let e = try #require(throws: JigdoError.self, "\(servers)") {
                try parse("\(imageSection)[Parts]\n\(md5A)=Base:a\n[Servers]\n\(servers)")
            }
            #expect(clock.now - start < .seconds(5))
            #expect(e.kind == .syntax)
            #expect(e.description.contains(mention) && e.description.contains("loop"), "\(e)")
            #expect(!e.description.contains("\n"))
        }
        // An override can close a loop too: the resolver says so.
        let d = try parse("\(imageSection)[Servers]\nA=B:x/\nB=http://b/\n")
        var r = LocationResolver(descriptor: d)
        #expect(r.labelProblem == nil)
        r.replace["B"] = [JigdoLocation(value: "A:y/", base: "/")]
        #expect(r.labelProblem?.contains("A -> B -> A") == true, "\(r.labelProblem ?? "none")")
    }

    @Test func deepChainsAreRefused() throws {
        var servers = ""
        for i in 0..<40 { servers += "L\(i)=L\(i + 1):d/\n" }
        servers += "L40=http://end/\n"
        let e = try #require(throws: JigdoError.self) { try parse("\(imageSection)[Servers]\n\(servers)") }
        #expect(e.description.contains("deeper than \(LocationResolver.maxDepth)"), "\(e)")
    }

    @Test func fanOutIsBounded() throws {
        // Every level has 8 alternatives, each to the next level: 8^12 locations unbounded.
        var servers = ""
        for level in 0..<12 {
            for alt in 0..<8 { servers += "L\(level)=L\(level + 1):\(alt)/\n" }
        }
        for alt in 0..<8 { servers += "L12=http://m\(alt)/\n" }
        var parts = ""
        for _ in 0..<200 { parts += "\(md5A)=L0:a\n" }
        let clock = ContinuousClock()
        let start = clock.now
        let d = try parse("\(imageSection)[Parts]\n\(parts)[Servers]\n\(servers)MD5Sum=L0:\n")
        let r = LocationResolver(descriptor: d)
        let locations = r.locations(forPart: part)
        #expect(clock.now - start < .seconds(5))
        #expect(!locations.isEmpty && locations.count <= LocationResolver.maxLocationsPerPart)
        #expect(Set(locations).count == locations.count)
        #expect(r.resolve(JigdoLocation(value: "L0:x", base: "/")).count <= LocationResolver.maxLocationsPerPart)
    }

    @Test func emptyTemplateChecksumIsAbsent() throws {
        let d = try parse("[Image]\nFilename=x.iso\nTemplate=x.template\nTemplate-MD5Sum=\nTemplate-SHA256Sum= \n")
        #expect(d.image.templateChecksums.isEmpty)
    }

    @Test func percentEscapesAreDecodedForLocalLookups() throws {
        let d = try parse("""
            \(imageSection)
            [Parts]
            \(md5A)=Base:Packages/gtk%2b-2.0.rpm
            \(md5A)=Web:Packages/gtk%2b-2.0.rpm
            [Servers]
            Base=file:/srv/mirror/
            Web=http://mirrors.example/pub/?path=
            """)
        #expect(LocationResolver(descriptor: d).locations(forPart: part) == [
            .local("/srv/mirror/Packages/gtk+-2.0.rpm"),
            .remote("http://mirrors.example/pub/?path=Packages/gtk%2b-2.0.rpm"),
        ])
    }

    @Test func rawBytesAreKept() throws {
        // "Base:caf\xE9 r\xE9sum\xE9.txt" in Latin-1, not UTF-8.
        var bytes = Array("\(imageSection)[Parts]\n\(md5A)=Base:caf".utf8) + [0xE9] + Array(" r".utf8) + [0xE9]
        bytes += Array("sum".utf8) + [0xE9] + Array(".txt\n[Servers]\nBase=file:/srv/\nBase=http://web/\n".utf8)
        let tmp = try TemporaryDirectory()
        try writeBytes(bytes, to: tmp.file("latin1.jigdo"))
        let d = try JigdoDescriptor.load(path: tmp.file("latin1.jigdo"))
        let locations = LocationResolver(descriptor: d).locations(forPart: part)
        #expect(locations.count == 2)
        guard case .local(let path)? = locations.first else { Issue.record("no local location"); return }
        #expect(RawNames.fileSystemBytes(path) == Array("/srv/caf".utf8) + [0xE9] + Array(" r".utf8) + [0xE9] + Array("sum".utf8) + [0xE9] + Array(".txt".utf8))
        #expect(locations[0].description == "/srv/caf\\xE9 r\\xE9sum\\xE9.txt")
        #expect(locations[1] == .remote("http://web/caf%E9 r%E9sum%E9.txt"))
        // Valid UTF-8 stays as it is.
        #expect(RawNames.decode(Array("café".utf8)) == ("café", false))
    }

    @Test func notAJigdo() throws {
        let tmp = try TemporaryDirectory()
        var iso = [UInt8](repeating: 0, count: 40_000)
        iso[32768] = 1
        iso.replaceSubrange(32769..<32774, with: Array("CD001".utf8))
        try writeBytes(iso, to: tmp.file("image.iso"))
        let e = try #require(throws: JigdoError.self) { try JigdoDescriptor.load(path: tmp.file("image.iso")) }
        #expect(e.description.contains("ISO 9660 image, not a .jigdo"), "\(e)")
        try writeBytes(Array("JigsawDownload template 1.1 jigdo-file/0.8.1\r\n".utf8) + [0, 1, 2], to: tmp.file("x.template"))
        let t = try #require(throws: JigdoError.self) { try JigdoDescriptor.load(path: tmp.file("x.template")) }
        #expect(t.description.contains("a .template, not a .jigdo"), "\(t)")
    }
}

@Suite("Remote [Include]")
struct RemoteIncludeTests {
    /// A fetcher serving `files` (URL -> text) and recording what was asked.
    final class Fake: @unchecked Sendable {
        var files: [String: String]
        var asked: [String] = []
        init(_ files: [String: String]) { self.files = files }
        var fetch: JigdoDescriptor.IncludeFetcher {
            { url in
                self.asked.append(url)
                guard let text = self.files[url] else { throw JigdoError(.io, path: url, "404 Not Found") }
                return Array(text.utf8)
            }
        }
    }

    @Test func includesResolveAgainstTheIncludingURL() throws {
        let fake = Fake([
            "http://cd.example/debian-cd/debian-servers.jigdo": "[Servers]\nDebian=http://ftp.example/debian/\n[Include more/extra.jigdo]\n",
            "http://cd.example/debian-cd/more/extra.jigdo": "[Servers]\nDebian=http://snapshot.example/ --try-last\n",
        ])
        let tmp = try TemporaryDirectory()
        try "\(imageSection)[Include http://cd.example/debian-cd/debian-servers.jigdo]\n[Parts]\n\(md5A)=Debian:pool/a.deb\n"
            .write(toFile: tmp.file("old.jigdo"), atomically: true, encoding: .utf8)
        let d = try JigdoDescriptor.load(path: tmp.file("old.jigdo"), fetch: fake.fetch)
        #expect(fake.asked == ["http://cd.example/debian-cd/debian-servers.jigdo", "http://cd.example/debian-cd/more/extra.jigdo"])
        #expect(LocationResolver(descriptor: d).locations(forPart: JigdoBase64.decodeChecksum(md5A)!).map(\.description) == [
            "http://ftp.example/debian/pool/a.deb", "http://snapshot.example/pool/a.deb",
        ])
        #expect(d.files.count == 3)
    }

    @Test func unfetchableIsAWarningLoopsAreErrors() throws {
        let tmp = try TemporaryDirectory()
        try "\(imageSection)[Include http://cd.example/gone.jigdo]\n[Servers]\nA=http://a/\n"
            .write(toFile: tmp.file("gone.jigdo"), atomically: true, encoding: .utf8)
        let d = try JigdoDescriptor.load(path: tmp.file("gone.jigdo"), fetch: Fake([:]).fetch)
        #expect(d.servers["A"]?.count == 1, "the rest of the file still counts")
        #expect(d.warnings.count == 1 && d.warnings[0].contains("http://cd.example/gone.jigdo") && d.warnings[0].contains("404"), "\(d.warnings)")
        let offline = try JigdoDescriptor.load(path: tmp.file("gone.jigdo"))
        #expect(offline.warnings.first?.contains("not read") == true)

        let loop = Fake(["http://x/a.jigdo": "[Include b.jigdo]\n", "http://x/b.jigdo": "[Include http://x/a.jigdo]\n"])
        try "\(imageSection)[Include http://x/a.jigdo]\n".write(toFile: tmp.file("loop.jigdo"), atomically: true, encoding: .utf8)
        let e = try #require(throws: JigdoError.self) { try JigdoDescriptor.load(path: tmp.file("loop.jigdo"), fetch: loop.fetch) }
        #expect(e.description.contains("loop") && e.description.contains("http://x/a.jigdo"), "\(e)")
    }

    @Test func aRemoteJigdoCannotIncludeLocalFiles() throws {
        let tmp = try TemporaryDirectory()
        try "[Servers]\nSecret=file:/etc/\n".write(toFile: tmp.file("local.jigdo"), atomically: true, encoding: .utf8)
        let fake = Fake(["http://srv/rel/servers.jigdo": "[Servers]\nA=http://a/\n"])
        try "\(imageSection)[Include \(tmp.file("local.jigdo"))]\n[Include file:\(tmp.file("local.jigdo"))]\n[Include servers.jigdo]\n"
            .write(toFile: tmp.file("remote.jigdo"), atomically: true, encoding: .utf8)
        let d = try JigdoDescriptor.load(path: tmp.file("remote.jigdo"), baseURL: "http://srv/rel/", fetch: fake.fetch)
        #expect(d.servers["Secret"] == nil)
        #expect(d.servers["A"]?.first?.value == "http://a/", "a relative include of a remote .jigdo is fetched")
        #expect(fake.asked == ["http://srv/rel/servers.jigdo"])
        #expect(d.warnings.filter { $0.contains("cannot include local files") }.count == 2, "\(d.warnings)")
    }
}
