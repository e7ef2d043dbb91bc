import JigdoFormat
import Testing

// The configuration file's reader: the .jigdo syntax, strict about lines it cannot read.
struct INIFileTests {
    @Test func entriesSectionsQuotingCommentsAndCRLF() throws {
        let text = "# top\r\n[Servers]\r\nDebian = http://deb.debian.org/debian/ # comment\r\n"
            + "Local='/srv/my mirror/'\n\n[Comment]\nanything at all\n[Defaults]\nscan = \"/a b\"\njobs=4\n"
        let file = try INIFile.parse(text: text, path: "c.conf")
        #expect(file.entries == [
            .init(section: "Servers", key: "Debian", value: "http://deb.debian.org/debian/", line: 3),
            .init(section: "Servers", key: "Local", value: "/srv/my mirror/", line: 4),
            .init(section: "Defaults", key: "scan", value: "/a b", line: 9),
            .init(section: "Defaults", key: "jobs", value: "4", line: 10),
        ])
        #expect(file.entries(in: "Defaults").map(\.key) == ["scan", "jobs"])
    }

    @Test(arguments: [
        ("[Servers]\nno equals sign\n", 2, "expected"),
        ("x=1\n", 1, "before any [Section]"),
        ("[Servers\n", 1, "without ']'"),
        ("[Defaults]\nscan='/a\n", 2, "unterminated"),
        ("[Defaults]\n=1\n", 2, "without a label"),
    ])
    func badLinesNameFileAndLine(text: String, line: Int, words: String) {
        #expect {
            _ = try INIFile.parse(text: text, path: "/etc/jigdofs.conf")
        } throws: { error in
            let message = "\(error)"
            return message.hasPrefix("/etc/jigdofs.conf: line \(line): ") && message.contains(words)
        }
    }
}
