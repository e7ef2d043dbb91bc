import Foundation
import JigdoFormat
import Testing
import TestSupport

/// A .jigdo is untrusted input: its locations never leave their mapped directory, and no
/// message tells the checksum of a local file that did not match.
@Suite("untrusted .jigdo: location confinement")
struct ConfinementTests {
    /// A copy of a small release's .jigdo (with a `tree` link next to it, so its
    /// `Base=file:../tree/` server resolves) where one part's location is `location`, and a
    /// root-only (0600) copy of that part's file outside every mapped directory, in `secret/`.
    struct Setup {
        let tmp: TemporaryDirectory
        let secret: String
        let mapped: String
        let partKey: String
        /// The part's file inside the image.
        let partPath: String
        let release: FixtureRelease

        /// `servers`: lines added to the .jigdo's [Servers]; `{tmp}` in `location` is the
        /// temporary directory.
        init(location: String, servers: [String] = []) throws {
            release = try Fixtures.smallRelease()
            let v = release.variant("jf-md5-gz")
            tmp = try TemporaryDirectory()
            let fm = FileManager.default
            for d in ["j", "secret", "mirror/sub"] { try fm.createDirectory(atPath: tmp.file(d), withIntermediateDirectories: true) }
            try fm.createSymbolicLink(atPath: tmp.file("tree"), withDestinationPath: release.tree)
            mapped = tmp.file("mirror/sub")
            // The part with the largest file: its bytes are easy to look for.
            var lines = try String(contentsOfFile: v.jigdo, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            var best: (index: Int, key: String, path: String, size: Int64)?
            for (i, line) in lines.enumerated() {
                guard let eq = line.firstIndex(of: "="), line[..<eq].count == 22, line[line.index(after: eq)...].hasPrefix("Base:") else { continue }
                let path = release.tree + "/" + line[line.index(eq, offsetBy: 6)...]
                let size = try ReadOnlyFile(path: path).size
                if size > (best?.size ?? 0) { best = (i, String(line[..<eq]), path, size) }
            }
            let part = try #require(best)
            partKey = part.key
            partPath = String(part.path.dropFirst(release.tree.count))
            lines[part.index] = "\(part.key)=\(location.replacingOccurrences(of: "{tmp}", with: tmp.path))"
            let section = try #require(lines.firstIndex(of: "[Servers]"))
            lines.insert(contentsOf: servers, at: section + 1)
            try lines.joined(separator: "\n").write(toFile: tmp.file("j/release.jigdo"), atomically: true, encoding: .utf8)
            try fm.copyItem(atPath: v.template, toPath: tmp.file("j/release.template"))
            // Readable by nginx's worker (a remote .jigdo is served from j/).
            for p in [tmp.path, tmp.file("j")] { chmod(p, 0o755) }
            for p in ["j/release.jigdo", "j/release.template"] { chmod(tmp.file(p), 0o644) }
            secret = tmp.file("secret/s.bin")
            try fm.copyItem(atPath: part.path, toPath: secret)
            chmod(secret, 0o600)
        }

        var partBytes: [UInt8] { get throws { try readBytes(secret) } }
    }

    @Test("a location leaving its --map or file: directory is refused and the file never opened (local .jigdo)", arguments: [
        // (the part's new location, the --map options)
        ("Mirror:../../secret/s.bin", true),   // .. out of the --map directory
        ("Mirror:link/s.bin", true),           // a link inside the --map directory pointing out of it
        ("Mirror:sub/../../../secret/s.bin", true),
        ("Base:../secret/s.bin", false),       // .. out of the .jigdo's own file:../tree/ server
    ])
    func localJigdo(_ location: String, _ withMap: Bool) throws {
        let s = try Setup(location: location)
        try FileManager.default.createSymbolicLink(atPath: s.mapped + "/link", withDestinationPath: "../../secret")
        let watch = try OpenWatch(s.secret)
        let out = s.tmp.file("out.iso")
        let r = try CLI.run(["make-image", s.tmp.file("j/release.jigdo"), "-o", out, "--offline", "--cache-dir", s.tmp.file("cache")]
                            + (withMap ? ["--map", "Mirror=\(s.mapped)"] : []))
        #expect(r.status == 2, "\(r)")
        #expect(r.stderr.contains(s.partKey), "the refused part is named: \(r)")
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(watch.opens() == 0, "the outside file was opened")
    }

    @Test("the same with a remote .jigdo (served by nginx): refused, never opened, bytes not in the image", arguments: [
        "Mirror:../../secret/s.bin", "Mirror:link/s.bin", "Mirror:/../secret/s.bin",
    ])
    func remoteJigdo(_ location: String) throws {
        let s = try Setup(location: location)
        try FileManager.default.createSymbolicLink(atPath: s.mapped + "/link", withDestinationPath: "../../secret")
        let nginx = try Nginx(root: s.tmp.file("j"))
        defer { nginx.stop() }
        let watch = try OpenWatch(s.secret)
        let out = s.tmp.file("out.iso")
        let r = try CLI.run(["make-image", nginx.url + "release.jigdo", "-o", out, "--cache-dir", s.tmp.file("cache"),
                             "--map", "Base=\(s.release.tree)", "--map", "Mirror=\(s.mapped)"])
        #expect(r.status == 2, "\(r)")
        #expect(r.stderr.contains(s.partKey), "\(r)")
        #expect(watch.opens() == 0, "the outside file was opened")
        // Nothing of it reached an image: none written, and no cached part holds its bytes.
        #expect(!FileManager.default.fileExists(atPath: out))
        let secretBytes = try s.partBytes
        for f in regularFiles(under: s.tmp.file("cache")) {
            #expect(try readBytes(f) != secretBytes, "\(f)")
        }
    }

    /// Each piece stays inside alone; joined as text they climb: `sub/.` + `./` + `.` + `./`
    /// is `sub/../../`.
    static let climbingChain = ["Dot=Mirror:.", "Up=Dot:./", "Up2=Up:.", "Up3=Up2:./"]

    @Test("a chain of labels whose pieces join into .. (Dot=Mirror:. then Dot:./) does not leave the --map directory", arguments: [false, true])
    func climbingLabelChain(remote: Bool) throws {
        let s = try Setup(location: "Up3:secret/s.bin", servers: Self.climbingChain)
        // Serves the .jigdo when remote (and stands idle otherwise: one code path for both).
        let nginx = try Nginx(root: s.tmp.file("j"))
        defer { nginx.stop() }
        let watch = try OpenWatch(s.secret)
        // cat reads the part when it gets there (make-image refuses before reading).
        let r = try CLI.run(["cat", remote ? nginx.url + "release.jigdo" : s.tmp.file("j/release.jigdo"), s.partPath,
                             "--cache-dir", s.tmp.file("cache"), "--map", "Base=\(s.release.tree)", "--map", "Mirror=\(s.mapped)"]
                            + (remote ? [] : ["--offline"]))
        #expect(r.status != 0, "\(r.status) \(r.stderr)")
        #expect(watch.opens() == 0, "the outside file was opened")
        #expect(r.stdoutData.count < (try s.partBytes).count, "the part's file was written out")
    }

    @Test("a part location that is a plain local path (file:/abs, relative): read from a local .jigdo, never opened from a remote one", arguments: [
        "file:{tmp}/secret/s.bin", "../secret/s.bin",
    ])
    func plainLocalLocation(_ location: String) throws {
        let s = try Setup(location: location)
        let out = s.tmp.file("out.iso")
        let local = try CLI.run(["make-image", s.tmp.file("j/release.jigdo"), "-o", out, "--offline", "--cache-dir", s.tmp.file("cache"),
                                 "--map", "Base=\(s.release.tree)"])
        #expect(local.status == 0, "\(local)")
        #expect(try filesEqual(out, s.release.variant("jf-md5-gz").iso))
        try FileManager.default.removeItem(atPath: out)

        let nginx = try Nginx(root: s.tmp.file("j"))
        defer { nginx.stop() }
        let watch = try OpenWatch(s.secret)
        let remote = try CLI.run(["make-image", nginx.url + "release.jigdo", "-o", out, "--cache-dir", s.tmp.file("cache2"),
                                  "--map", "Base=\(s.release.tree)"])
        #expect(remote.status == 2, "\(remote)")
        #expect(remote.stderr.contains(s.partKey), "\(remote)")
        #expect(watch.opens() == 0, "a remote .jigdo's local location was opened")
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test("a local copy that does not match: the message names the file, never its checksum")
    func noChecksumOfLocalFile() throws {
        let s = try Setup(location: "Mirror:wrong.bin")
        // Same size as the part, other bytes.
        var bytes = try s.partBytes
        bytes[bytes.count / 2] ^= 0xff
        let wrong = s.mapped + "/wrong.bin"
        try writeBytes(bytes, to: wrong)
        for command in [["make-image", s.tmp.file("j/release.jigdo"), "-o", s.tmp.file("out.iso")],
                        ["verify", s.tmp.file("j/release.jigdo")]] {
            let r = try CLI.run(command + ["--offline", "--cache-dir", s.tmp.file("cache"), "--map", "Mirror=\(s.mapped)"])
            #expect(r.status != 0, "\(r)")
            #expect(r.stderr.contains(wrong) && r.stderr.contains("does not match"), "\(r)")
            for kind in [ChecksumKind.md5, .sha256] {
                let sum = try ReadOnlyFile(path: wrong).checksum(kind)
                #expect(!r.stderr.contains(sum.base64) && !r.stderr.lowercased().contains(sum.hex), "\(kind) of \(wrong) in \(r)")
            }
        }
    }
}

/// Counts opens of one file (inotify IN_OPEN): what "never opened" is checked with (the
/// tests run as root, so the 0600 mode alone would not stop a read).
final class OpenWatch {
    private let fd: Int32

    init(_ path: String) throws {
        fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0, inotify_add_watch(fd, path, UInt32(IN_OPEN)) >= 0 else {
            throw FixtureError("inotify on \(path): \(errnoText(errno))")
        }
    }

    deinit { close(fd) }

    /// Open events so far.
    func opens() -> Int {
        var count = 0
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { return count }
            var offset = 0
            while offset + MemoryLayout<inotify_event>.size <= n {
                let (mask, length) = buffer.withUnsafeBytes { raw in
                    let e = raw.loadUnaligned(fromByteOffset: offset, as: inotify_event.self)
                    return (e.mask, Int(e.len))
                }
                if mask & UInt32(IN_OPEN) != 0 { count += 1 }
                offset += MemoryLayout<inotify_event>.size + length
            }
        }
    }
}

/// Every number or size on the command line: a bad one is one line on stderr and exit 64,
/// never a trap.
@Suite("option values")
struct OptionValueTests {
    static let badSizes = ["inf", "1e30", "9223372036854775807", "-5", "garbage", "", "nan", "0x10", "12Q", "1.5.2", "16777216T", "2E"]
    static let badCounts = ["0", "257", "1e30", "9223372036854775808", "-1", "abc", "inf", "1.5", ""]

    func expectUsageError(_ args: [String], _ value: String) throws {
        let r = try CLI.run(args)
        #expect(r.status == 64, "\(args): \(r)")
        #expect(r.stderrLines.count == 1, "\(args): \(r)")
        #expect(r.stderr.hasPrefix("jigdofs: ") && (value.isEmpty || r.stderr.contains("'\(value)'")), "\(args): \(r)")
        #expect(!r.stderr.contains("Fatal error") && !r.stderr.contains("Crash"), "\(args): \(r)")
    }

    @Test("--cache-size and cache clean --keep", arguments: badSizes)
    func sizes(_ value: String) throws {
        let tmp = try TemporaryDirectory()
        try expectUsageError(["make-image", tmp.file("x.jigdo"), "-o", tmp.file("o.iso"), "--cache-size=\(value)"], value)
        try expectUsageError(["mount", tmp.file("x.jigdo"), tmp.path, "--cache-size=\(value)"], value)
        try expectUsageError(["cache", "clean", "--cache-dir", tmp.path, "--keep=\(value)"], value)
    }

    @Test("--jobs", arguments: badCounts)
    func counts(_ value: String) throws {
        let tmp = try TemporaryDirectory()
        try expectUsageError(["make-image", tmp.file("x.jigdo"), "-o", tmp.file("o.iso"), "--jobs=\(value)"], value)
        try expectUsageError(["prefetch", tmp.file("x.jigdo"), "--jobs=\(value)"], value)
    }

    @Test("good sizes are accepted")
    func goodSizes() throws {
        let tmp = try TemporaryDirectory()
        for value in ["0", "1.5K", "20G", "20GiB", "20gb", "1E", ".5M"] {
            let r = try CLI.run(["cache", "clean", "--cache-dir", tmp.path, "--keep", value])
            #expect(r.status == 0, "\(value): \(r)")
        }
    }
}

/// Names from a .jigdo or an image are shown and logged with their control characters escaped
/// (`\xHH`, as `RawNames.printable` writes them): they cannot add lines or reach the terminal as
/// escape sequences. `--json` stays exact.
@Suite("untrusted names: control characters escaped")
struct ControlNameTests {
    /// Bytes that must not reach a terminal: C0 controls other than the line ends, DEL, and
    /// the C1 introducers of a UTF-8 text (U+0080...U+009F are 0xC2 0x80...0x9F).
    static func controlBytes(_ data: Data) -> [UInt8] {
        let bytes = Array(data)
        var found: [UInt8] = []
        for (i, b) in bytes.enumerated() {
            if (b < 0x20 && b != 0x0A) || b == 0x7F { found.append(b) }
            if b == 0xC2, i + 1 < bytes.count, (0x80...0x9F).contains(bytes[i + 1]) { found.append(bytes[i + 1]) }
        }
        return found
    }

    /// `jigdofs ls` (short, -l, -R) of an image holding a file named "x\n<a log line>ESC[2J":
    /// one line per name, the name escaped, no escape sequence.
    @Test func lsEscapesRockRidgeNames() throws {
        let tmp = try TemporaryDirectory()
        let release = try ControlNameRelease.make(in: tmp.path)
        let short = try CLI.run(["ls", release.jigdo, "/"])
        #expect(short.status == 0, "\(short.stderr)")
        #expect(Self.controlBytes(short.stdoutData) == [])
        #expect(short.stdout.split(separator: "\n").map(String.init) == ["README.txt", ControlNameRelease.shown])
        let long = try CLI.run(["ls", "-l", release.jigdo, "/"])
        #expect(long.status == 0, "\(long.stderr)")
        #expect(Self.controlBytes(long.stdoutData) == [])
        let longLines = long.stdout.split(separator: "\n")
        #expect(longLines.count == 2)
        #expect(longLines.last?.hasSuffix(" " + ControlNameRelease.shown) == true, "\(long.stdout)")
        let recursive = try CLI.run(["ls", "-R", release.jigdo, "/"])
        #expect(recursive.status == 0, "\(recursive.stderr)")
        #expect(Self.controlBytes(recursive.stdoutData) == [])
        #expect(!recursive.stdout.split(separator: "\n").contains { $0.hasPrefix(ControlNameRelease.forgedLine) })
        // The name as it is: `cat` of the file finds it (with the part's directory scanned).
        let cat = try CLI.run(["cat", "--scan", release.parts, release.jigdo, "/" + ControlNameRelease.name])
        #expect(cat.status == 0, "\(cat.stderr)")
        #expect(cat.stdoutData == FileManager.default.contents(atPath: release.parts + "/plain.bin"))
    }

    /// A .jigdo whose Filename= and Template= hold ESC, BEL, SOH and DEL: `info` shows them
    /// escaped (`--json` exact), and the error about the missing template is one escaped line.
    @Test func jigdoValuesAreEscapedInOutputAndMessages() throws {
        let tmp = try TemporaryDirectory()
        let filename = "a\u{1B}]0;title\u{07}b\u{7F}.iso"
        let template = "t\u{01}\u{1B}[31m.template"
        let jigdo = "[Jigdo]\nVersion=1.1\n[Image]\nFilename=\(filename)\nTemplate=\(template)\n[Parts]\nqNoZ1xfuvdDLJ_puL4VY0g=A:x\n[Servers]\nA=http://127.0.0.1:9/\n"
        try jigdo.write(toFile: tmp.file("evil.jigdo"), atomically: true, encoding: .utf8)

        let info = try CLI.run(["info", "--offline", tmp.file("evil.jigdo")])
        #expect(info.status == 0, "\(info.stderr)")
        #expect(Self.controlBytes(info.stdoutData) == [], "\(info.stdout)")
        #expect(info.stdout.contains("Image:        a\\x1B]0;title\\x07b\\x7F.iso"), "\(info.stdout)")
        let json = try CLI.run(["info", "--offline", "--json", tmp.file("evil.jigdo")])
        #expect(json.status == 0, "\(json.stderr)")
        struct Report: Decodable { var image: String }
        #expect(try JSONDecoder().decode(Report.self, from: json.stdoutData).image == filename)

        let verify = try CLI.run(["verify", "--offline", tmp.file("evil.jigdo")])
        #expect(verify.status != 0)
        #expect(Self.controlBytes(Data(verify.stderr.utf8)) == [], "\(verify.stderr)")
        #expect(verify.stderr.split(separator: "\n").count == 1, "\(verify.stderr)")
        #expect(verify.stderr.contains("t\\x01\\x1B[31m.template"), "\(verify.stderr)")
    }
}
