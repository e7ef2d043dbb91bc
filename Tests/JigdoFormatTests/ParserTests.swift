import Foundation
import JigdoFormat
import Testing
import TestSupport

// Checksums (jigdo Base64) used in hand-written .jigdo texts.
let md5A = "1B2M2Y8AsgTpgAmY7PhCfg"            // MD5 of ""
let md5B = "rL0Y20zC-Fzt72VPzMSk2A"            // MD5 of "foo"
let sha256A = "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"  // SHA256 of ""

func words(_ s: String) throws -> [String] { try ValueWords.split(Substring(s)).words }
func joined(_ s: String) throws -> String { try ValueWords.split(Substring(s)).joined }

func parse(_ text: String, base: String = "/r/") throws -> JigdoDescriptor {
    try JigdoDescriptor.parse(text: text, path: "/r/test.jigdo", base: base)
}

let imageSection = "[Image]\nFilename=x.iso\nTemplate=x.template\n"

@Suite("Values: quoting and escaping")
struct ValueWordsTests {
    @Test func quotingAndEscaping() throws {
        #expect(try words("plain") == ["plain"])
        #expect(try words("  a   b\tc ") == ["a", "b", "c"])
        #expect(try words("'a b'") == ["a b"])
        #expect(try words("'a\\b'") == ["a\\b"], "no escapes inside single quotes")
        #expect(try words("\"a\\\"b\"") == ["a\"b"], "backslash escapes inside double quotes")
        #expect(try words("\"a\\\\b\"") == ["a\\b"])
        #expect(try words("a\\ b") == ["a b"])
        #expect(try words("a\\#b") == ["a#b"])
        #expect(try words("a\\'b") == ["a'b"])
        #expect(try words("'it'\"'\"'s'") == ["it's"], "adjacent quoted pieces form one word")
        #expect(try words("x'#'y") == ["x#y"])
        #expect(try words("\"#\"") == ["#"])
        #expect(try words("a # a comment 'unterminated") == ["a"])
        #expect(try words("#only a comment") == [])
        #expect(try words("a#b") == ["a"], "an unquoted # starts a comment")
        #expect(try words("''") == [""], "an empty quoted word is a word")
        #expect(try words("") == [])
    }

    @Test func unquotedSpacesAreKeptWhenJoined() throws {
        // libjte writes [Parts] paths with blanks unquoted.
        #expect(try joined("Base:Packages/pkg 0017 with  space.rpm") == "Base:Packages/pkg 0017 with  space.rpm")
        #expect(try joined("Base:a\tb.rpm   ") == "Base:a\tb.rpm")
        #expect(try joined("'Base:a b.rpm' # comment") == "Base:a b.rpm")
    }

    @Test func errors() {
        #expect(throws: ValueWords.Failure.unterminatedQuote("'")) { try ValueWords.split("'abc") }
        #expect(throws: ValueWords.Failure.unterminatedQuote("\"")) { try ValueWords.split("\"abc") }
        #expect(throws: ValueWords.Failure.danglingBackslash) { try ValueWords.split("abc\\") }
        #expect(throws: ValueWords.Failure.danglingBackslash) { try ValueWords.split("\"abc\\") }
    }
}

@Suite("Base64, jigdo's variant")
struct Base64Tests {
    @Test func knownValues() throws {
        #expect(JigdoBase64.encode([]) == "")
        #expect(JigdoBase64.encode([0xfb, 0xff]) == "-_8", "- and _ replace + and /, no padding")
        #expect(JigdoBase64.encode(Array("foo".utf8)) == "Zm9v")
        #expect(JigdoBase64.encode(Array("fo".utf8)) == "Zm8")
        let empty = ChecksumHasher(.md5).finalize()
        #expect(empty.base64 == md5A)
        #expect(empty.hex == "d41d8cd98f00b204e9800998ecf8427e")
        #expect(ChecksumHasher(.sha256).finalize().base64 == sha256A)
        var h = ChecksumHasher(.md5)
        h.update(Array("foo".utf8))
        #expect(h.finalize().base64 == md5B)
    }

    @Test func roundTripAgainstFoundation() throws {
        var rng = SeededRandom(seed: 99)
        for n in [16, 32] {
            for _ in 0..<500 {
                let bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
                let ours = JigdoBase64.encode(bytes)
                let theirs = Data(bytes).base64EncodedString()
                    .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                    .replacingOccurrences(of: "=", with: "")
                #expect(ours == theirs)
                let back = try #require(JigdoBase64.decodeChecksum(ours))
                #expect(back.bytes == bytes)
                #expect(back.kind == (n == 16 ? .md5 : .sha256))
            }
        }
    }

    @Test func rejectsInvalid() {
        #expect(JigdoBase64.decodeChecksum("1B2M2Y8AsgTpgAmY7PhCf") == nil, "21 chars")
        #expect(JigdoBase64.decodeChecksum("1B2M2Y8AsgTpgAmY7PhCfgA") == nil, "23 chars")
        #expect(JigdoBase64.decodeChecksum("1B2M2Y8AsgTpgAmY7PhC+g") == nil, "'+' is not jigdo Base64")
        #expect(JigdoBase64.decodeChecksum("1B2M2Y8AsgTpgAmY7PhC/g") == nil)
        #expect(JigdoBase64.decodeChecksum("1B2M2Y8AsgTpgAmY7Ph=fg") == nil)
        #expect(JigdoBase64.decodeChecksum("1B2M2Y8AsgTpgAmY7Ph\u{e9}g") == nil)
        #expect(JigdoBase64.decodeChecksum("") == nil)
    }
}

@Suite(".jigdo parsing")
struct JigdoParserTests {
    @Test func sectionsCommentsAndLibjteQuirks() throws {
        let d = try parse("""
            # JigsawDownload
            stray text before any section
            [Jigdo]
            Version=1.1
            Generator=libjte-2.0.0
            [Comment]
            Free text = not an entry
            Nothing here is parsed 'even unterminated quotes
            [Image]
            Filename=stdio:x.iso
            Template=http://localhost/x.template
            Template-MD5Sum=\(md5A) \("")
            ShortInfo='Debian GNU/Linux "bookworm"'  # kept as written
            Info=Some info
            # Template Hex MD5Sum d41d8cd98f00b204e9800998ecf8427e
            [Parts]
            \(md5B)=Base:Packages/pkg 0017 with space.rpm
            [Unknown Section]
            Whatever=1
            lines without equals
            [Servers]
            \r
            [Servers]
            Base=file:../tree/ # comment
            """)
        #expect(d.version == "1.1")
        #expect(d.checksumKind == .md5)
        #expect(d.generator == "libjte-2.0.0")
        #expect(d.image.filename == "stdio:x.iso")
        #expect(d.image.template.value == "http://localhost/x.template")
        #expect(d.image.templateChecksums == [.md5: JigdoBase64.decodeChecksum(md5A)!])
        #expect(d.image.shortInfo?.hasPrefix("'Debian GNU/Linux \"bookworm\"'") == true, "ShortInfo keeps its quoting")
        #expect(d.image.info == "Some info")
        #expect(d.parts[md5B]?.map(\.value) == ["Base:Packages/pkg 0017 with space.rpm"])
        #expect(d.servers["Base"]?.map(\.value) == ["file:../tree/"])
        #expect(d.servers.count == 1)
    }

    @Test func crlfLineEnds() throws {
        let d = try parse("[Jigdo]\r\nVersion=2.0\r\n[Image]\r\nFilename=a.iso\r\nTemplate=a.template\r\n[Parts]\r\n\(sha256A)=A:x\r\n")
        #expect(d.version == "2.0")
        #expect(d.checksumKind == .sha256)
        #expect(d.parts[sha256A]?.map(\.value) == ["A:x"])
    }

    @Test func repeatedKeysAndSeveralSectionsAreOrderedAlternatives() throws {
        let d = try parse("""
            \(imageSection)
            [Parts]
            \(md5A)=A:one
            \(md5B)=A:b
            [Servers]
            A=http://first/
            [Parts]
            \(md5A)=A:two
            \(md5A)='http://direct/three'
            [Servers]
            A=http://second/
            A=ftp://third/
            """)
        #expect(d.parts[md5A]?.map(\.value) == ["A:one", "A:two", "http://direct/three"])
        #expect(d.servers["A"]?.map(\.value) == ["http://first/", "http://second/", "ftp://third/"])
        let r = LocationResolver(descriptor: d)
        #expect(r.locations(forPart: JigdoBase64.decodeChecksum(md5A)!).map(\.description) == [
            "http://first/one", "http://second/one", "ftp://third/one",
            "http://first/two", "http://second/two", "ftp://third/two",
            "http://direct/three",
        ])
    }

    @Test func labelChains() throws {
        let d = try parse("""
            \(imageSection)
            [Parts]
            \(md5A)=Debian:pool/main/a.deb
            [Servers]
            Debian=Mirror:debian/
            Debian=http://fallback.example/debian/
            Mirror=http://m1.example/
            Mirror=http://m2.example/pub/
            """)
        let r = LocationResolver(descriptor: d)
        #expect(r.locations(forPart: JigdoBase64.decodeChecksum(md5A)!).map(\.description) == [
            "http://m1.example/debian/pool/main/a.deb",
            "http://m2.example/pub/debian/pool/main/a.deb",
            "http://fallback.example/debian/pool/main/a.deb",
        ])
        // An undefined label gives no location.
        #expect(r.resolve(JigdoLocation(value: "Nobody:f", base: "/r/")).isEmpty)
    }

    @Test func checksumFallbackLabels() throws {
        let md5 = try parse("""
            \(imageSection)
            [Parts]
            \(md5B)=A:listed
            [Servers]
            A=http://a/
            MD5Sum=http://by-md5/
            MD5Sum=Other:md5/
            Other=http://other/
            """)
        let r = LocationResolver(descriptor: md5)
        #expect(r.locations(forPart: JigdoBase64.decodeChecksum(md5A)!).map(\.description) == [
            "http://by-md5/\(md5A)", "http://other/md5/\(md5A)",
        ], "a part without a [Parts] line is looked up through the MD5Sum label")
        #expect(r.locations(forPart: JigdoBase64.decodeChecksum(md5B)!).map(\.description) == [
            "http://a/listed", "http://by-md5/\(md5B)", "http://other/md5/\(md5B)",
        ], "listed locations first, then the MD5Sum label")

        let sha = try parse("[Jigdo]\nVersion=2.0\n\(imageSection)[Servers]\nSHA256Sum=http://by-sha/\nMD5Sum=http://wrong/\n")
        #expect(LocationResolver(descriptor: sha).locations(forPart: JigdoBase64.decodeChecksum(sha256A)!).map(\.description) == [
            "http://by-sha/\(sha256A)",
        ])
    }

    @Test func relativeAndFileLocations() throws {
        let d = try parse("""
            \(imageSection)
            [Parts]
            \(md5A)=Base:sub/a.rpm
            \(md5B)=../direct/b.rpm
            [Servers]
            Base=file:../tree/
            Base=file:///abs/mirror/
            Base=rel/
            """, base: "/r/jigdo/")
        let r = LocationResolver(descriptor: d)
        #expect(r.locations(forPart: JigdoBase64.decodeChecksum(md5A)!) == [
            .local("/r/tree/sub/a.rpm"), .local("/abs/mirror/sub/a.rpm"), .local("/r/jigdo/rel/sub/a.rpm"),
        ])
        #expect(r.locations(forPart: JigdoBase64.decodeChecksum(md5B)!) == [.local("/r/direct/b.rpm")])
        var remote = r
        remote.allowLocalFromJigdo = false
        #expect(remote.locations(forPart: JigdoBase64.decodeChecksum(md5A)!).isEmpty, "a remote .jigdo may not point at local files")
    }

    @Test func everyImageSectionIsKept() throws {
        let d = try parse("""
            [Image]
            Filename=first.iso
            Template=first.template
            [Parts]
            \(md5A)=A:a
            [Image]
            Filename=second.iso
            Template=second.template
            Template-MD5Sum=\(md5B)
            """)
        #expect(d.image.filename == "first.iso")
        #expect(d.image.template.value == "first.template")
        #expect(d.image.templateChecksums.isEmpty)
        #expect(d.images.count == 2)
        #expect(d.imageNames == ["first.iso", "second.iso"])
        let second = try #require(d.selecting(image: "second.iso"))
        #expect(second.image.template.value == "second.template")
        #expect(second.image.templateChecksums[.md5]?.base64 == md5B)
        #expect(d.selecting(image: "third.iso") == nil)
    }

    @Test func versions() throws {
        for (v, kind) in [("1.0", ChecksumKind.md5), ("1.1", .md5), ("1.2", .md5), ("2.0", .sha256), ("2.1", .sha256)] {
            let d = try parse("[Jigdo]\nVersion=\(v)\n\(imageSection)")
            #expect(d.version == v)
            #expect(d.checksumKind == kind)
        }
        #expect(try parse(imageSection).checksumKind == .md5, "no [Jigdo] section: 1.x")
        for v in ["3.0", "0.9", "10.1"] {
            let e = try #require(throws: JigdoError.self) { try parse("[Jigdo]\nVersion=\(v)\n\(imageSection)") }
            #expect(e.kind == .unsupportedVersion, "\(v)")
            #expect(e.description.contains(v) && e.description.contains("/r/test.jigdo"))
        }
        let e = try #require(throws: JigdoError.self) { try parse("[Jigdo]\nVersion=abc\n\(imageSection)") }
        #expect(e.kind == .syntax)
    }

    @Test func syntaxErrorsNameFileAndLine() throws {
        let cases: [(String, String)] = [
            ("[Jigdo]\nVersion=1.1\n", "[Image]"),
            ("[Image]\nTemplate=x\n", "Filename"),
            ("[Image]\nFilename=x\n", "Template"),
            ("\(imageSection)[Parts]\nnot-a-checksum=A:x\n", "line 5"),
            ("\(imageSection)[Parts]\n\(md5A)=\n", "line 5"),
            ("\(imageSection)[Parts]\n\(md5A)='unterminated\n", "quote"),
            ("\(imageSection)[Servers]\nA=x\\\n", "backslash"),
            ("\(imageSection)[Parts]\njust words\n", "line 5"),
            ("[Image\nFilename=x\n", "]"),
            ("[Image]\nFilename=x\nTemplate=y\nTemplate-MD5Sum=tooshort\n", "Template-MD5Sum"),
            ("[Image]\nFilename=x\nTemplate=y\nTemplate-SHA256Sum=\(md5A)\n", "Template-SHA256Sum"),
        ]
        for (text, mention) in cases {
            let e = try #require(throws: JigdoError.self, "\(text)") { try parse(text) }
            #expect(e.kind == .syntax, "\(text)")
            #expect(e.description.contains("/r/test.jigdo") && e.description.contains(mention), "\(text): \(e)")
            #expect(!e.description.contains("\n"))
        }
    }
}

@Suite("[Include]")
struct IncludeTests {
    @Test func relativeToTheIncludingFile() throws {
        let tmp = try TemporaryDirectory()
        try FileManager.default.createDirectory(atPath: tmp.file("sub/deeper"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: tmp.file("with space"), withIntermediateDirectories: true)
        try """
            [Jigdo]
            Version=1.2
            \(imageSection)
            [Include sub/parts.jigdo]
            [Parts]
            \(md5A)=A:main
            """.write(toFile: tmp.file("main.jigdo"), atomically: true, encoding: .utf8)
        try """
            [Parts]
            \(md5A)=relative/from-sub.rpm
            [Include deeper/servers.jigdo]
            [Include ../with%20space/more.jigdo]
            """.write(toFile: tmp.file("sub/parts.jigdo"), atomically: true, encoding: .utf8)
        try "[Servers]\nA=http://a/\n".write(toFile: tmp.file("sub/deeper/servers.jigdo"), atomically: true, encoding: .utf8)
        try "[Servers]\nA=http://b/\n".write(toFile: tmp.file("with space/more.jigdo"), atomically: true, encoding: .utf8)

        let d = try JigdoDescriptor.load(path: tmp.file("main.jigdo"))
        #expect(d.files.count == 4)
        #expect(d.parts[md5A]?.map(\.value) == ["relative/from-sub.rpm", "A:main"], "included entries come where the [Include] is")
        #expect(d.servers["A"]?.map(\.value) == ["http://a/", "http://b/"])
        let r = LocationResolver(descriptor: d)
        let real = canonicalPath(tmp.path)
        #expect(r.locations(forPart: JigdoBase64.decodeChecksum(md5A)!).map(\.description).map { $0.replacingOccurrences(of: real, with: tmp.path) } == [
            tmp.file("sub/relative/from-sub.rpm"), "http://a/main", "http://b/main",
        ])
    }

    @Test func loopsAndMissingFilesAreErrors() throws {
        let tmp = try TemporaryDirectory()
        try "\(imageSection)[Include b.jigdo]\n".write(toFile: tmp.file("a.jigdo"), atomically: true, encoding: .utf8)
        try "[Include ./a.jigdo]\n".write(toFile: tmp.file("b.jigdo"), atomically: true, encoding: .utf8)
        try "\(imageSection)[Include self.jigdo]\n".write(toFile: tmp.file("self.jigdo"), atomically: true, encoding: .utf8)
        try "\(imageSection)[Include nowhere.jigdo]\n".write(toFile: tmp.file("missing.jigdo"), atomically: true, encoding: .utf8)
        for (file, mention) in [("a.jigdo", "loop"), ("self.jigdo", "loop"), ("missing.jigdo", "nowhere.jigdo")] {
            let e = try #require(throws: JigdoError.self, "\(file)") { try JigdoDescriptor.load(path: tmp.file(file)) }
            #expect(e.description.contains(mention), "\(file): \(e)")
            let involved = ["a.jigdo", "b.jigdo", "self.jigdo", "missing.jigdo", "nowhere.jigdo"].map { tmp.file($0) }
            #expect(involved.contains { e.description.contains($0) }, "names a file by its path: \(e)")
        }
        // The same file included twice, not nested, is not a loop.
        try "\(imageSection)[Include p.jigdo]\n[Include p.jigdo]\n".write(toFile: tmp.file("twice.jigdo"), atomically: true, encoding: .utf8)
        try "[Parts]\n\(md5A)=A:x\n".write(toFile: tmp.file("p.jigdo"), atomically: true, encoding: .utf8)
        #expect(try JigdoDescriptor.load(path: tmp.file("twice.jigdo")).parts[md5A]?.count == 2)
    }
}

@Suite("Values per key are bounded")
struct ValuesPerKeyTests {
    @Test("a [Servers] label or [Parts] checksum keeps at most maxValuesPerKey values, with one warning each")
    func boundedValues() throws {
        let n = JigdoDescriptor.maxValuesPerKey + 50
        let servers = (0..<n).map { "Base=http://mirror\($0).example/debian/" }.joined(separator: "\n")
        let parts = (0..<n).map { "\(md5B)=Base:pool/f\($0)" }.joined(separator: "\n")
        let d = try parse("[Jigdo]\nVersion=1.2\n" + imageSection + "[Parts]\n" + parts + "\n[Servers]\n" + servers + "\n")
        #expect(d.servers["Base"]?.count == JigdoDescriptor.maxValuesPerKey)
        #expect(d.servers["Base"]?.last?.value == "http://mirror\(JigdoDescriptor.maxValuesPerKey - 1).example/debian/",
                "the first values are kept, in file order")
        #expect(d.parts[md5B]?.count == JigdoDescriptor.maxValuesPerKey)
        let warned = d.warnings.filter { $0.contains("has more than \(JigdoDescriptor.maxValuesPerKey) values") }
        #expect(warned.count == 2, "\(d.warnings)")
    }
}
