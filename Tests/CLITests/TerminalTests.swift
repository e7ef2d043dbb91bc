import Foundation
import JigdoFormat
import Testing
import TestSupport

/// What a user meets on a terminal: the progress line, Ctrl-C, network controls, output
/// conventions and the words of the common mistakes.
@Suite("jigdofs on a terminal")
struct TerminalTests {
    static let ptyRun = Fixtures.testsDirectory + "/Fixtures/pty-run.py"

    /// Runs jigdofs on a pseudo-terminal of `columns` columns; (exit status, what it printed).
    static func onTerminal(_ columns: Int, _ args: [String], interruptAfter: String? = nil) throws -> (status: Int32, output: String) {
        let tmp = try TemporaryDirectory()
        let out = tmp.file("pty.out")
        var env: [String: String] = [:]
        if let interruptAfter { env["PTY_INTERRUPT_AFTER"] = interruptAfter }
        let r = try Subprocess.run("/usr/bin/python3", [ptyRun, String(columns), out, CLI.binary] + args, environment: env)
        let bytes = FileManager.default.contents(atPath: out) ?? Data()
        return (r.status, String(decoding: bytes, as: UTF8.self))
    }

    /// A copy of a release's .jigdo and template in a directory of its own, where the jigdo's
    /// `file:../tree/` server does not resolve: its parts come only from what a test gives.
    static func isolatedJigdo(_ v: FixtureVariant, in tmp: TemporaryDirectory) throws -> String {
        let dir = tmp.file("j/k")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try copyTree(v.jigdo, to: dir + "/release.jigdo")
        try copyTree(v.template, to: dir + "/release.template")
        return dir + "/release.jigdo"
    }

    /// `release`'s jf-md5-gz .jigdo isolated (`isolatedJigdo`) and an nginx serving the release
    /// (the caller stops it): (release, nginx, the temporary directory, the .jigdo's path).
    static func served(_ release: FixtureRelease) throws -> (FixtureRelease, Nginx, TemporaryDirectory, String) {
        let nginx = try Nginx(root: release.root)
        do {
            let tmp = try TemporaryDirectory()
            return (release, nginx, tmp, try isolatedJigdo(release.variant("jf-md5-gz"), in: tmp))
        } catch {
            nginx.stop()
            throw error
        }
    }

    @Test("the progress line fits the terminal: every redraw one line, nothing of a longer line left", arguments: [60, 120])
    func progressFitsTheTerminal(_ columns: Int) throws {
        let (release, nginx, tmp, jigdo) = try Self.served(Fixtures.smallRelease())
        defer { nginx.stop() }
        let bytes = regularFiles(under: release.tree).reduce(Int64(0)) { $0 + fileSize($1) }
        // About 2.5 seconds of downloads: a dozen redraws with changing figures. (When a part
        // counted only once complete, all of them at once (the default 16) sometimes showed no
        // ETA before the end; three at once keep parts finishing all along. Bytes count as
        // they arrive now: `progressWhileAPartArrives`.)
        let rate = max(20_000, bytes * 2 / 5)
        let (status, output) = try Self.onTerminal(columns, [
            "prefetch", jigdo, "--cache-dir", tmp.file("cache"), "--server", "Base=\(nginx.url)tree/", "--limit-rate", String(rate),
            "--jobs", "3",
        ])
        #expect(status == 0, "\(output)")
        var screen = TerminalScreen(columns: columns)
        screen.feed(output)
        #expect(screen.problems.isEmpty, "\(screen.problems)")
        #expect(screen.redraws.count >= 3, "redraws: \(screen.redraws)")
        #expect(screen.redraws.allSatisfy { $0.count < columns }, "\(screen.redraws)")
        #expect(screen.redraws.allSatisfy { $0.hasPrefix("Downloading ") && $0.contains("%") }, "\(screen.redraws)")
        let last = try #require(screen.redraws.last)
        #expect(last.contains("100.0%"), "\(last)")
        // The rate with one decimal and an IEC unit; ETA while running; parts done/total.
        #expect(screen.redraws.contains { $0.range(of: #"\d+\.\d (B|KiB|MiB)/s"#, options: .regularExpression) != nil }, "\(screen.redraws)")
        #expect(screen.redraws.contains { $0.contains("ETA ") }, "\(screen.redraws)")
        if columns >= 100 {
            #expect(last.range(of: #"\d+/\d+ parts"#, options: .regularExpression) != nil, "\(last)")
            #expect(screen.redraws.contains { $0.contains("[#") || $0.contains("[-") }, "a bar in the room left: \(screen.redraws)")
        }
        // The line of the finished bar holds exactly its last redraw.
        #expect(screen.lines.contains(last), "\(screen.lines)")
    }

    @Test("one large part to download: the progress line moves while it arrives, not only once it is complete")
    func progressWhileAPartArrives() throws {
        let (release, nginx, tmp, jigdo) = try Self.served(Fixtures.smallRelease())
        defer { nginx.stop() }
        // A local copy of the tree without its largest package: the one part to download.
        try copyTree(release.tree, to: tmp.file("tree"))
        let largest = try #require(regularFiles(under: tmp.file("tree")).max { fileSize($0) < fileSize($1) })
        let size = fileSize(largest)
        try FileManager.default.removeItem(atPath: largest)
        // About 3 seconds for it: a dozen redraws while it arrives.
        let (status, output) = try Self.onTerminal(120, [
            "prefetch", jigdo, "--scan", tmp.file("tree"), "--no-scan-cache", "--cache-dir", tmp.file("cache"),
            "--server", "Base=\(nginx.url)tree/", "--limit-rate", String(max(20_000, size / 3)),
        ])
        #expect(status == 0, "\(output)")
        var screen = TerminalScreen(columns: 120)
        screen.feed(output)
        #expect(screen.problems.isEmpty, "\(screen.problems)")
        func percent(_ line: String) -> Double {
            guard let r = line.range(of: #"\d+\.\d%"#, options: .regularExpression) else { return -1 }
            return Double(line[r].dropLast()) ?? -1
        }
        // Before the part is complete (0/1 parts): an amount above 0, a rate and a time left.
        let arriving = screen.redraws.filter { $0.contains("0/1 parts") && percent($0) > 0 && percent($0) < 100 }
        #expect(!arriving.isEmpty, "\(screen.redraws)")
        #expect(arriving.contains { $0.contains("ETA ") }, "\(screen.redraws)")
        // Never backwards.
        let shown = screen.redraws.filter { $0.hasPrefix("Downloading ") }.map(percent)
        #expect(zip(shown, shown.dropFirst()).allSatisfy { $0 <= $1 }, "\(shown)")
        #expect(screen.redraws.last?.contains("100.0%") == true && screen.redraws.last?.contains("1/1 parts") == true, "\(screen.redraws)")
    }

    @Test("Ctrl-C during prefetch: one line saying what was kept and how to go on, exit 130")
    func interruptSaysWhatWasKept() throws {
        let (_, nginx, tmp, jigdo) = try Self.served(Fixtures.release())
        defer { nginx.stop() }
        let (status, output) = try Self.onTerminal(80, [
            "prefetch", jigdo, "--cache-dir", tmp.file("cache"), "--server", "Base=\(nginx.url)tree/", "--limit-rate", "1M",
        ], interruptAfter: "parts")
        #expect(status == 130, "\(output)")
        var screen = TerminalScreen(columns: 80)
        screen.feed(output)
        #expect(screen.problems.isEmpty, "\(screen.problems)")
        let lines = screen.lines.filter { $0.hasPrefix("jigdofs: interrupted; ") }
        #expect(lines.count == 1, "\(screen.lines)")
        let line = lines.first ?? ""
        #expect(line.contains("downloaded into \(tmp.file("cache"))") && line.contains("partial downloads kept"), "\(line)")
        #expect(line.contains("run `jigdofs prefetch \(jigdo)` again to go on"), "\(line)")
    }

    @Test("--progress=plain: plain lines, no escapes, when stderr is not a terminal")
    func plainProgress() throws {
        let v = try Fixtures.release().variant("jf-md5-gz")
        let r = try CLI.run(["verify", v.jigdo, "--progress=plain"])
        #expect(r.status == 0, "\(r)")
        #expect(!r.stderr.contains("\u{1B}") && !r.stderr.contains("\r"), "\(r.stderr)")
        #expect(r.stderrLines.last?.hasPrefix("Verifying: 100.0%, ") == true, "\(r.stderr)")
        let auto = try CLI.run(["verify", v.jigdo])
        #expect(auto.stderr.isEmpty, "no progress when stderr is not a terminal: \(auto.stderr)")
        // -v asks for the same plain lines when stderr is not a terminal.
        let verbose = try CLI.run(["verify", v.jigdo, "-v"])
        #expect(verbose.status == 0, "\(verbose)")
        #expect(!verbose.stderr.contains("\u{1B}") && !verbose.stderr.contains("\r"), "\(verbose.stderr)")
        #expect(verbose.stderrLines.last?.hasPrefix("Verifying: 100.0%, ") == true, "\(verbose.stderr)")
    }

    @Test("--limit-rate 2M: all transfers together stay within 20% of 2 MiB/s, measured from nginx")
    func limitRate() throws {
        let release = try Fixtures.release()
        let v = release.variant("jf-md5-gz")
        let logDir = try TemporaryDirectory(prefix: "jigdofs-ratelog")
        chmod(logDir.path, 0o777)
        // A small send buffer: nginx's end of a request is then close to when the client read it.
        let nginx = try Nginx(root: release.root, serverConfig: "access_log \(logDir.path)/timed.log timed;", listenOptions: "sndbuf=32k")
        defer { nginx.stop() }
        let tmp = try TemporaryDirectory()
        let jigdo = try Self.isolatedJigdo(v, in: tmp)
        // A local copy of the tree without its largest packages: about 8 MiB to download.
        try copyTree(release.tree, to: tmp.file("tree"))
        var removed: Int64 = 0
        for f in regularFiles(under: tmp.file("tree/Packages")).sorted(by: { fileSize($0) > fileSize($1) }) where removed < 8 << 20 {
            removed += fileSize(f)
            try FileManager.default.removeItem(atPath: f)
        }
        let out = tmp.file("out.iso")
        let r = try CLI.run(["make-image", jigdo, "-o", out, "--scan", tmp.file("tree"), "--no-scan-cache", "--cache-dir", tmp.file("cache"),
                             "--server", "Base=\(nginx.url)tree/", "--limit-rate", "2M"])
        // When the client had read every byte: at the latest when make-image exited (the same
        // clock as nginx's $msec).
        let clientEnd = Date().timeIntervalSince1970
        #expect(r.status == 0, "\(r)")
        #expect(try filesEqual(out, v.iso))
        nginx.stop()
        // $msec (end of the request) $request_time $body_bytes_sent ...
        let lines = (try String(contentsOfFile: logDir.path + "/timed.log", encoding: .utf8)).split(separator: "\n")
        var start = Double.infinity, end = 0.0
        var sent: Int64 = 0
        for line in lines {
            let f = line.split(separator: " ")
            guard f.count > 3, let msec = Double(f[0]), let took = Double(f[1]), let n = Int64(f[2]) else { continue }
            start = min(start, msec - took)
            end = max(end, msec)
            sent += n
        }
        #expect(sent >= removed, "nginx sent \(sent) bytes, \(removed) were missing")
        // nginx logs a request's end when its last byte went into the socket; the client's
        // receive buffer (autotuned up to tcp_rmem's maximum, megabytes on loopback) may then
        // still hold what the limit has not let the client read. So nginx's interval is at most
        // the true one and the client's exit at least its end: the rate over nginx's interval
        // is an upper bound of the true rate (it must not be too slow), the rate up to the
        // client's exit a lower bound (it must not be too fast).
        let limit = Double(2 << 20)
        let atMost = Double(sent) / (end - start)
        let atLeast = Double(sent) / (max(end, clientEnd) - start)
        #expect(atMost > 0.8 * limit, "\(atMost) bytes/s over nginx's \(end - start) s from \(lines.count) requests")
        #expect(atLeast < 1.2 * limit, "\(atLeast) bytes/s over \(max(end, clientEnd) - start) s up to the client's exit")
    }

    @Test("--netrc-file and --netrc log in to a mirror that needs it; without them the 401 is named")
    func netrcLogin() throws {
        let release = try Fixtures.smallRelease()
        let v = release.variant("jf-md5-gz")
        let auth = try TemporaryDirectory(prefix: "jigdofs-auth")
        chmod(auth.path, 0o755)
        let hash = try Subprocess.check(["openssl", "passwd", "-apr1", "s3cret word"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try "mirror:\(hash)\n".write(toFile: auth.file("htpasswd"), atomically: true, encoding: .utf8)
        chmod(auth.file("htpasswd"), 0o644)
        let nginx = try Nginx(root: release.root, serverConfig: "auth_basic \"mirror\"; auth_basic_user_file \(auth.file("htpasswd"));")
        defer { nginx.stop() }
        let tmp = try TemporaryDirectory()
        let jigdo = try Self.isolatedJigdo(v, in: tmp)
        let server = ["--server", "Base=\(nginx.url)tree/"]

        let refused = try CLI.run(["prefetch", jigdo, "--cache-dir", tmp.file("c1")] + server)
        #expect(refused.status == 2, "\(refused)")
        #expect(refused.stderr.contains("HTTP status 401"), "\(refused)")

        try "machine 127.0.0.1\nlogin mirror\npassword \"s3cret word\"\n".write(toFile: tmp.file("netrc"), atomically: true, encoding: .utf8)
        let withFile = try CLI.run(["prefetch", jigdo, "--cache-dir", tmp.file("c2"), "--netrc-file", tmp.file("netrc")] + server)
        #expect(withFile.status == 0, "\(withFile)")
        #expect(withFile.stdout.range(of: #"(\d+) of \1 parts available"#, options: .regularExpression) != nil, "\(withFile)")

        try FileManager.default.createDirectory(atPath: tmp.file("home"), withIntermediateDirectories: true)
        try copyTree(tmp.file("netrc"), to: tmp.file("home/.netrc"))
        let withHome = try CLI.run(["prefetch", jigdo, "--cache-dir", tmp.file("c3"), "--netrc"] + server, environment: ["HOME": tmp.file("home")])
        #expect(withHome.status == 0, "\(withHome)")
        #expect(nginx.requests().contains { $0.status == 401 } && nginx.requests().contains { $0.status == 200 })
    }

    @Test("a dead proxy from $http_proxy is named with its variable")
    func proxyErrorNamesTheProxy() throws {
        let release = try Fixtures.smallRelease()
        let v = release.variant("jf-md5-gz")
        let tmp = try TemporaryDirectory()
        let jigdo = try Self.isolatedJigdo(v, in: tmp)
        let dead = try freePort()
        let proxy = "http://127.0.0.1:\(dead)"
        let r = try CLI.run(["prefetch", jigdo, "--cache-dir", tmp.file("cache"), "--server", "Base=http://127.0.0.1:\(try freePort())/tree/", "--retries", "0"],
                            environment: ["http_proxy": proxy, "no_proxy": "", "NO_PROXY": ""])
        #expect(r.status == 2, "\(r)")
        #expect(r.stderr.contains("cannot reach the proxy \(proxy) (from $http_proxy)"), "\(r)")
    }

    @Test("make-image -o - streams the image (cmp equals the ISO); no -o: [Image] Filename here; -o DIR: inside DIR")
    func makeImageOutputs() throws {
        let v = try Fixtures.release().variant("jte-sha256-bz2")
        let tmp = try TemporaryDirectory()
        let piped = try Subprocess.run("/bin/bash", ["-c", "set -o pipefail; \(shellQuote(CLI.binary)) make-image \(shellQuote(v.jigdo)) -o - | cmp - \(shellQuote(v.iso))"])
        #expect(piped.status == 0, "\(piped)")
        #expect(piped.stderr.contains("written to standard output") && piped.stderr.contains("matches the template"), "\(piped)")

        try FileManager.default.createDirectory(atPath: tmp.file("here"), withIntermediateDirectories: true)
        let plain = try CLI.run(["make-image", v.jigdo], cwd: tmp.file("here"))
        #expect(plain.status == 0, "\(plain)")
        #expect(try filesEqual(tmp.file("here/release.iso"), v.iso))
        #expect(plain.stdout.range(of: #"^release\.iso: \d+\.\d MiB written"#, options: .regularExpression) != nil, "\(plain)")

        try FileManager.default.createDirectory(atPath: tmp.file("dir"), withIntermediateDirectories: true)
        let intoDir = try CLI.run(["make-image", v.jigdo, "-o", tmp.file("dir")])
        #expect(intoDir.status == 0, "\(intoDir)")
        #expect(try filesEqual(tmp.file("dir/release.iso"), v.iso))
        let again = try CLI.run(["make-image", v.jigdo, "-o", tmp.file("dir")])
        #expect(again.status == 1 && again.stderr == "jigdofs: \(tmp.file("dir"))/release.iso: already exists; use --force to overwrite it\n", "\(again)")
    }

    @Test("make-image -o - with a wrong image checksum: exit 3 and a message on stderr")
    func makeImageToStdoutMismatch() throws {
        let release = try Fixtures.release()
        let v = release.variant("jf-md5-gz")
        let tmp = try TemporaryDirectory()
        try FileManager.default.createSymbolicLink(atPath: tmp.file("tree"), withDestinationPath: release.tree)
        try FileManager.default.createDirectory(atPath: tmp.file("r"), withIntermediateDirectories: true)
        let text = try String(contentsOfFile: v.jigdo, encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix("Template-MD5Sum") }
            .joined(separator: "\n")
        try text.write(toFile: tmp.file("r/release.jigdo"), atomically: true, encoding: .utf8)
        var template = try readBytes(v.template)
        template[template.count - 6 - 4 - 16 + 3] ^= 0x40
        try writeBytes(template, to: tmp.file("r/release.template"))
        let r = try Subprocess.run("/bin/bash", ["-c", "\(shellQuote(CLI.binary)) make-image \(shellQuote(tmp.file("r/release.jigdo"))) -o - > \(shellQuote(tmp.file("out")))"])
        #expect(r.status == 3, "\(r)")
        #expect(r.stderr.hasPrefix("jigdofs: standard output: image checksum MD5 ") && r.stderr.contains("the bytes written are wrong, discard them"), "\(r)")
        #expect(fileSize(tmp.file("out")) == fileSize(v.iso))
    }

    @Test("missing parts: 20 lines and 'and N more'; verify --list-missing lists all; sizes in IEC units")
    func missingPartsAreCapped() throws {
        let v = try Fixtures.release().variant("jf-sha256-gz")
        let tmp = try TemporaryDirectory()
        let jigdo = try Self.isolatedJigdo(v, in: tmp)
        let parts = distinctPartsListed(in: try String(contentsOfFile: v.jigdo, encoding: .utf8))
        let r = try CLI.run(["verify", jigdo])
        #expect(r.status == 2, "\(r)")
        let lines = r.stderrLines
        #expect(lines.count == 22, "\(lines.count) lines")
        #expect(lines.first?.range(of: #"^jigdofs: \#(parts) of \#(parts) parts \(\d+\.\d MiB\) have no local copy"#, options: .regularExpression) != nil, "\(lines.first ?? "")")
        #expect(lines.last == "  and \(parts - 20) more (jigdofs verify --list-missing)", "\(lines.last ?? "")")
        #expect(lines.dropFirst().dropLast().allSatisfy { $0.range(of: #"^  \S+ \d+(\.\d (KiB|MiB)| B): "#, options: .regularExpression) != nil }, "\(lines.prefix(3))")
        let all = try CLI.run(["verify", jigdo, "--list-missing"])
        #expect(all.status == 2)
        #expect(all.stderrLines.count == parts + 1)
    }

    @Test("the words of the usual mistakes, and their exit status")
    func mistakes() throws {
        let release = try Fixtures.release()
        let v = release.variant("jf-md5-gz")
        let tmp = try TemporaryDirectory()
        let cases: [(args: [String], status: Int32, line: String)] = [
            (["info", release.iso], 1, "jigdofs: \(release.iso): is an ISO 9660 image, not a .jigdo file (jigdofs ls and cat read it as it is; give the .jigdo of the release)"),
            (["verify", release.iso], 1, "jigdofs: \(release.iso): is an ISO 9660 image, not a .jigdo file (jigdofs ls and cat read it as it is; give the .jigdo of the release)"),
            (["verify", v.template], 1, "jigdofs: \(v.template): is a jigdo .template, not the .jigdo; give the .jigdo (the template is found next to it, or pass --template)"),
            (["status", tmp.file("nonexistent")], 1, "jigdofs: \(tmp.file("nonexistent")): no such directory"),
            (["status", tmp.path], 1, "jigdofs: \(tmp.path): not a jigdofs mount (no .jigdofs-status there)"),
            (["status", v.jigdo], 1, "jigdofs: \(v.jigdo): not a directory, so not a jigdofs mount"),
            (["prefetch", tmp.path], 1, "jigdofs: \(tmp.path): a directory, but not a jigdofs mount; give a .jigdo, its URL, or the mount point of a jigdofs mount"),
            (["umount", tmp.path], 1, "jigdofs: \(tmp.path): not mounted"),
            (["unmount", tmp.file("nonexistent")], 1, "jigdofs: \(tmp.file("nonexistent")): no such directory"),
            (["prefetch", v.jigdo, "--limit-rate", "fast"], 64, "jigdofs: The value 'fast' is invalid for '--limit-rate <RATE>': not a size like 500M or 20G"),
        ]
        for c in cases {
            let r = try CLI.run(c.args)
            #expect(r.status == c.status, "\(c.args): \(r)")
            #expect(r.stderrLines.first == c.line, "\(c.args): \(r)")
        }
        // -o - refuses to write an image to a terminal.
        let toTerminal = try Self.onTerminal(80, ["make-image", v.jigdo, "-o", "-"])
        #expect(toTerminal.status == 1, "\(toTerminal.output)")
        #expect(toTerminal.output.contains("jigdofs: -o -: standard output is a terminal; redirect it to a file, a pipe or a device"), "\(toTerminal.output)")
        // The usage line shows the mount's arguments as required.
        let help = try CLI.run(["mount", "--help"])
        #expect(help.stdout.contains("USAGE: jigdofs mount [<options>] <SOURCE... MOUNTPOINT> ..."), "\(help.stdout.prefix(400))")
        let none = try CLI.run(["mount"])
        #expect(none.status == 64, "\(none)")
        // ls takes -la, -lR and -1.
        for flags in [["-la"], ["-lR"], ["-1"], ["-l", "-a"]] {
            let r = try CLI.run(["ls"] + flags + [v.jigdo])
            #expect(r.status == 0, "\(flags): \(r)")
            #expect(r.stdout.contains("README.txt"), "\(flags): \(r)")
        }
        // info and status count parts one way: distinct.
        let info = try CLI.run(["info", v.jigdo])
        let parts = distinctPartsListed(in: try String(contentsOfFile: v.jigdo, encoding: .utf8))
        #expect(info.stdout.contains("Parts:        \(parts) distinct ("), "\(info.stdout)")
        #expect(info.stdout.range(of: #"Size:         \d+\.\d MiB \(\d+ bytes\)"#, options: .regularExpression) != nil, "\(info.stdout)")
        // JSON: compact when stdout is not a terminal, pretty with --pretty.
        let compact = try CLI.run(["info", "--json", v.jigdo])
        #expect(compact.stdout.split(separator: "\n").count == 1, "\(compact.stdout.prefix(200))")
        let pretty = try CLI.run(["info", "--json", "--pretty", v.jigdo])
        #expect(pretty.stdout.split(separator: "\n").count > 10)
        #expect(try JSONSerialization.jsonObject(with: Data(pretty.stdout.utf8)) as? [String: Any] != nil)
    }

    @Test("a remote .jigdo: errors name the URL, refused file: locations say so")
    func remoteWords() throws {
        let release = try Fixtures.smallRelease()
        let nginx = try Nginx(root: release.root)
        defer { nginx.stop() }
        let tmp = try TemporaryDirectory()
        let cache = ["--cache-dir", tmp.file("cache")]
        // Not a .jigdo at that URL: the message names the URL, never the cache.
        let url = nginx.url + "tree/repodata/primary.xml"
        let r = try CLI.run(["verify", url] + cache)
        #expect(r.status != 0 && r.stderrLines.count == 1, "\(r)")
        #expect(r.stderr.hasPrefix("jigdofs: \(url): ") && !r.stderr.contains(tmp.file("cache")), "\(r)")
        // The fixture's own locations are file:../tree/: refused for a .jigdo from a server.
        let remote = try CLI.run(["verify", nginx.url + "jf-md5-gz/release.jigdo"] + cache)
        #expect(remote.status == 2, "\(remote)")
        #expect(remote.stderrLines.dropFirst().first?.hasSuffix(": (its local file: locations are refused: a .jigdo from a server cannot make jigdofs read local files)") == true, "\(remote)")
    }
}

/// Just enough of a terminal to check progress output: carriage return, newline, erase to the
/// end of the line (ESC [ K) and printable text; anything else, or text past the last column
/// (a line that would wrap), is a problem.
struct TerminalScreen {
    let columns: Int
    /// The screen's lines, a line the terminal wrapped joined again.
    var lines: [String] {
        var out: [String] = []
        for (i, row) in rows.enumerated() {
            if wrapped[i], !out.isEmpty { out[out.count - 1] += String(row) } else { out.append(String(row)) }
        }
        return out
    }
    private var rows: [[Character]] = [[]]
    /// Whether a row continues the one above (the terminal wrapped there).
    private var wrapped: [Bool] = [false]
    private var col = 0
    /// Text of each redraw: what was written between a carriage return and ESC [ K.
    var redraws: [String] = []
    var problems: [String] = []
    private var pending = ""

    init(columns: Int) { self.columns = columns }

    mutating func feed(_ text: String) {
        let scalars = Array(text.unicodeScalars)
        var i = 0
        while i < scalars.count {
            let s = scalars[i]
            switch s {
            case "\r":
                col = 0
                pending = ""
            case "\n":
                rows.append([])
                wrapped.append(false)
                col = 0
                pending = ""
            case "\u{1B}":
                guard i + 2 < scalars.count, scalars[i + 1] == "[", scalars[i + 2] == "K" else {
                    problems.append("an escape other than ESC [ K after '\(pending)'")
                    i += 1
                    continue
                }
                i += 2
                if pending.unicodeScalars.count >= columns { problems.append("a redraw wider than \(columns - 1) columns: '\(pending)'") }
                if col < rows[rows.count - 1].count { rows[rows.count - 1].removeSubrange(col...) }
                redraws.append(pending)
                if String(rows[rows.count - 1]) != pending {
                    problems.append("line '\(String(rows[rows.count - 1]))' holds more than its redraw '\(pending)'")
                }
            default:
                if col >= columns {
                    // The terminal wraps: fine for a message, wrong for a redraw (checked below).
                    rows.append([])
                    wrapped.append(true)
                    col = 0
                }
                var row = rows[rows.count - 1]
                while row.count < col { row.append(" ") }
                if col < row.count { row[col] = Character(s) } else { row.append(Character(s)) }
                rows[rows.count - 1] = row
                col += 1
                pending.unicodeScalars.append(s)
            }
            i += 1
        }
    }
}

@Suite("repeated warnings")
struct WarningFoldingTests {
    @Test("a mirror serving wrong bytes for every part: one warning line, then one line with the count")
    func repeatedWarningsAreFolded() throws {
        let release = try Fixtures.smallRelease()
        let v = release.variant("jf-md5-gz")
        let fault = try FaultServer(root: release.root)
        defer { fault.stop() }
        let nginx = try Nginx(root: release.root)
        defer { nginx.stop() }
        let tmp = try TemporaryDirectory()
        let jigdo = try TerminalTests.isolatedJigdo(v, in: tmp)
        let r = try CLI.run(["prefetch", jigdo, "--cache-dir", tmp.file("cache"), "--jobs", "1",
                             "--server", "Base=\(fault.url)wrong/tree/", "--mirror", "Base=\(nginx.url)tree/"])
        #expect(r.status == 0, "\(r)")
        let wrong = fault.requests().filter { $0.mode == "wrong" }.count
        #expect(wrong >= 3, "\(fault.requests())")
        let lines = r.stderrLines
        #expect(lines.count == 2, "\(r.stderr)")
        #expect(lines.first?.hasPrefix("jigdofs: warning: \(fault.url)wrong/tree/") == true && lines.first?.contains("served wrong bytes") == true, "\(r.stderr)")
        #expect(lines.last == "jigdofs: warning: \(wrong - 1) more like \"\(String(lines.first!.dropFirst("jigdofs: warning: ".count)))\"", "\(r.stderr)")
    }
}

@Suite("connection controls")
struct ConnectionControlTests {
    /// Distinct nginx connections the requests of a prefetch came on.
    func connections(_ extra: [String]) throws -> (status: Int32, connections: Int, requests: Int) {
        let release = try Fixtures.smallRelease()
        let v = release.variant("jf-md5-gz")
        let logDir = try TemporaryDirectory(prefix: "jigdofs-connlog")
        chmod(logDir.path, 0o777)
        let nginx = try Nginx(root: release.root, serverConfig: "access_log \(logDir.path)/conn.log conn;")
        defer { nginx.stop() }
        let tmp = try TemporaryDirectory()
        let jigdo = try TerminalTests.isolatedJigdo(v, in: tmp)
        let r = try CLI.run(["prefetch", jigdo, "--cache-dir", tmp.file("cache"), "--jobs", "8", "--server", "Base=\(nginx.url)tree/",
                             "--limit-rate", "2M"] + extra)
        nginx.stop()
        let lines = (try String(contentsOfFile: logDir.path + "/conn.log", encoding: .utf8)).split(separator: "\n")
        return (r.status, Set(lines.compactMap { $0.split(separator: " ").first }).count, lines.count)
    }

    @Test("--max-per-host 1: every request on one connection; without it, several")
    func maxPerHost() throws {
        let one = try connections(["--max-per-host", "1"])
        #expect(one.status == 0 && one.requests >= 8, "\(one)")
        #expect(one.connections == 1, "\(one)")
        let many = try connections([])
        #expect(many.status == 0 && many.connections > 1, "\(many)")
    }

    @Test("--timeout 1 --retries 0: a server that never answers is given up after 1 second, and said so")
    func timeout() throws {
        let release = try Fixtures.smallRelease()
        let v = release.variant("jf-md5-gz")
        let fault = try FaultServer(root: release.root)
        defer { fault.stop() }
        let tmp = try TemporaryDirectory()
        let jigdo = try TerminalTests.isolatedJigdo(v, in: tmp)
        let r = try CLI.run(["prefetch", jigdo, "--cache-dir", tmp.file("cache"), "--server", "Base=\(fault.url)stall/tree/",
                             "--timeout", "1", "--retries", "0"])
        #expect(r.status == 2, "\(r)")
        #expect(r.stderr.contains("the last 1 seconds"), "\(r)")
        // --retries 0: one attempt per location each time the part is wanted (the read-ahead,
        // then the wait for it), where the default of 2 retries would make up to 6.
        let perPath = Dictionary(grouping: fault.requests(), by: \.path).mapValues(\.count)
        #expect(!perPath.isEmpty && perPath.values.allSatisfy { $0 <= 2 }, "\(perPath)")
    }
}
