import Foundation
import JigdoFormat
import Testing
import TestSupport

/// Inputs the fuzz targets (Fuzz/) found, fed through the same calls; the files are in
/// Tests/Fixtures/fuzz/.
@Suite("Fuzz findings stay fixed")
struct FuzzRegressionTests {
    @Test("a % that starts no escape (Pa%kages) is a name: checked once, not decoded again and again")
    func percentThatDecodesToItself() {
        #expect(staysInsideDirectory("Pa%kages/pkg.rpm"))
        #expect(staysInsideDirectory("100%/x"))
        // Decoded once, as local lookups do: %2e%2e is "..", %252e%252e a name.
        #expect(!staysInsideDirectory("%2e%2e/secret"))
        #expect(staysInsideDirectory("%252e%252e/x"))
        #expect(!staysInsideDirectory("a/%2E%2E/%2e%2e/x"))
    }

    @Test("FuzzLocations' stack overflow: a [Parts] location with Pa%kages, expanded with a --map'd label")
    func fuzzLocationsPercentRecursion() throws {
        let path = Fixtures.testsDirectory + "/Fixtures/fuzz/FuzzLocations-percent-recursion.jigdo"
        let text = String(decoding: try ReadOnlyFile(path: path).readAll(), as: UTF8.self)
        let d = try JigdoDescriptor.parse(text: text, path: "/nonexistent-fuzz/x.jigdo", base: "/nonexistent-fuzz/")
        var resolver = LocationResolver(descriptor: d)
        for label in d.servers.keys.sorted().prefix(4) {
            resolver.prepend[label] = [JigdoLocation(value: "file:/nonexistent-fuzz/map/", base: "/nonexistent-fuzz/map/")]
        }
        var expanded = 0
        for key in d.parts.keys.sorted() {
            guard let sum = JigdoBase64.decodeChecksum(key) else { continue }
            for location in resolver.locations(forPart: sum) {
                expanded += 1
                if case .local(let p) = location, p.hasPrefix("/nonexistent-fuzz/map") {
                    #expect(p.hasPrefix("/nonexistent-fuzz/map/"), "\(p) left the mapped directory")
                }
            }
        }
        #expect(expanded > 0)
    }

    /// The local locations of `text`'s parts with `Debian` mapped to /nonexistent-fuzz/map/.
    private func mappedLocations(_ text: String, remote: Bool) throws -> [String] {
        let d = try JigdoDescriptor.parse(text: text, path: "/nonexistent-fuzz/x.jigdo", base: remote ? "http://127.0.0.1:9/d/" : "/nonexistent-fuzz/")
        var resolver = LocationResolver(descriptor: d)
        resolver.allowLocalFromJigdo = !remote
        resolver.prepend["Debian"] = [JigdoLocation(value: "file:/nonexistent-fuzz/map/", base: "/nonexistent-fuzz/map/")]
        var out: [String] = []
        for key in d.parts.keys.sorted() {
            guard let sum = JigdoBase64.decodeChecksum(key) else { continue }
            for case .local(let p) in resolver.locations(forPart: sum) { out.append(p) }
        }
        return out
    }

    private func jigdo(servers: String, parts: [String]) -> String {
        let sums = ["fgYQ72wmkmiWPyVsi02L6w", "zHAGLZ7ooN38VtA2gRJ_2A", "PK1gcozW4l9CgcLsbQxheg", "gFOVAPla8aY1naf22WDF0A", "aE1XB-q5oEC0I6bBZ3jtbw"]
        return """
            [Jigdo]
            Version=1.1
            [Image]
            Filename=x.iso
            Template=x.template
            [Servers]
            \(servers)
            [Parts]
            \(zip(sums, parts).map { "\($0)=\($1)" }.joined(separator: "\n"))

            """
    }

    @Test("FuzzLocations (CI of stop 24): a mapped label with nothing after it names the directory itself, not a part in it")
    func mappedDirectoryItself() throws {
        let text = jigdo(servers: "Debian=http://127.0.0.1:9/debian/\nAlias=Debian:", parts: ["Debian:", "Debian:a/..", "Alias:", "Debian:./", "Debian:x"])
        for remote in [false, true] {
            let locations = try mappedLocations(text, remote: remote)
            #expect(locations == ["/nonexistent-fuzz/map/x"], "remote \(remote)")
        }
    }

    @Test("a chain of labels cannot climb out of a mapped directory: Debian:. then ./ spells ..")
    func chainedDotsStayInside() throws {
        // "file:/map/" + "." + "./etc" is "file:/map/../etc" as text: each piece stays inside
        // alone, the two together do not.
        let text = jigdo(
            servers: "Debian=http://127.0.0.1:9/debian/\nDot=Debian:.\nUp=Dot:./\nUp2=Up:.\nUp3=Up2:./",
            parts: ["Dot:./etc/passwd", "Up:etc/passwd", "Up3:etc/passwd", "Dot:.", "Dot:x"])
        for remote in [false, true] {
            let locations = try mappedLocations(text, remote: remote)
            #expect(locations == ["/nonexistent-fuzz/map/.x"], "remote \(remote)")
        }
    }
}

@Suite("Paths: byte-wise checks agree with the reference (split) ones")
struct PathCheckEquivalenceTests {
    /// The check as it was written before (split into components), as the reference.
    private func referenceStaysInside(_ path: String) -> Bool {
        func lexically(_ path: String) -> Bool {
            if path.hasPrefix("/") || path.utf8.contains(0) { return false }
            var depth = 0
            for c in path.split(separator: "/", omittingEmptySubsequences: true) {
                if c == "." { continue }
                if c == ".." {
                    depth -= 1
                    if depth < 0 { return false }
                } else {
                    depth += 1
                }
            }
            return true
        }
        if path.utf8.contains(UInt8(ascii: "%")) {
            let decoded = path.replacingPercentEscapes()
            if decoded != path, !lexically(decoded) { return false }
        }
        return lexically(path)
    }

    @Test("a leading / is absolute by its byte, also when a combining mark follows it (one Character)")
    func leadingSlashBeforeACombiningMark() {
        #expect(!staysInsideDirectory("/x"))
        // "/\u{301}" is one Character: String.hasPrefix("/") is false for it.
        #expect(!staysInsideDirectory("/\u{301}etc/passwd"))
        #expect(!staysInsideDirectory("/\u{301}etc/passwd"[...]))
        #expect(staysInsideDirectory("a/\u{301}b"[...]))
    }

    @Test("every path of up to five pieces from a small alphabet of names, dots, slashes and escapes")
    func staysInside() {
        let pieces = ["a", ".", "..", "/", "...", ".a", "a.", "%2e", "%2E%2e", "é", "%", "\u{0}"]
        var checked = 0
        var stack: [[String]] = [[]]
        while let path = stack.popLast() {
            let text = path.joined()
            #expect(staysInsideDirectory(text) == referenceStaysInside(text), "\(text.debugDescription)")
            checked += 1
            if path.count < 5 { for p in pieces { stack.append(path + [p]) } }
        }
        #expect(checked > 10_000)
    }

    @Test("the scheme of a location: http, https, ftp, file in any case; anything else none", arguments: [
        ("http://x/y", "http"), ("HTTPS://x", "https"), ("Ftp://x", "ftp"), ("file:/etc/x", "file"),
        ("fil:x", nil), ("https2://x", nil), ("Debian:pool/x", nil), ("pool/x", nil), (":x", nil), ("httpé://x", nil),
    ] as [(String, String?)])
    func scheme(value: String, expected: String?) {
        #expect(uriScheme(of: value) == expected)
    }

    @Test("a local directory's file: value reads back as the same directory, a % in its name kept", arguments: [
        "/srv/mirror/", "/m%41p/", "/a%/b%%25/", "/%2e%2e/", "/é %20/",
    ])
    func fileServerValueRoundTrip(directory: String) {
        let value = fileServerValue(ofDirectory: directory)
        #expect(localDirectory(ofServerValue: value, base: "/elsewhere/") == directory, "\(value)")
    }
}
