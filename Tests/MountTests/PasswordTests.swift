import Foundation
import TestSupport
import Testing

/// A password given in a URL (a `--server`, a SOURCE URL, a proxy variable) is used for the
/// transfers and shown nowhere: not in `status` (text, JSON, the hidden file), the mount table,
/// the daemon's command line, the log file, `info`, the messages of `make-image` and `verify`,
/// the proxy error. Where a URL is shown, it is shown masked (`http://alice:***@host/`).
@Suite(.serialized, .enabled(if: Harness.canMount, "needs root, /dev/fuse and fusermount3"))
struct PasswordTests {
    static let alice = "Alice-pw-4711"
    static let bob = "Bob-pw-0815"
    static let carol = "Carol-pw-1234"
    static let mallory = "Mallory-pw-666"

    @Test func passwordsInURLsAreUsedButNeverShown() throws {
        let release = try Fixtures.smallRelease()
        let v = release.variant("jf-md5-gz")
        let auth = try TemporaryDirectory(prefix: "jigdofs-auth")
        chmod(auth.path, 0o755)
        var htpasswd = ""
        for (user, password) in [("alice", Self.alice), ("bob", Self.bob)] {
            let hash = try Subprocess.check(["openssl", "passwd", "-apr1", password]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            htpasswd += "\(user):\(hash)\n"
        }
        try htpasswd.write(toFile: auth.file("htpasswd"), atomically: true, encoding: .utf8)
        chmod(auth.file("htpasswd"), 0o644)
        let nginx = try Nginx(root: release.root, serverConfig: "auth_basic \"mirror\"; auth_basic_user_file \(auth.file("htpasswd"));")
        defer { nginx.stop() }
        let host = "127.0.0.1:\(nginx.port)"
        // The server checks the login: without one, 401.
        let anonymous = try Harness.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "\(nginx.url)jf-md5-gz/release.jigdo"])
        #expect(anonymous.stdout == "401", "\(anonymous)")

        let source = "http://bob:\(Self.bob)@\(host)/jf-md5-gz/release.jigdo"
        let shownSource = "http://bob:***@\(host)/jf-md5-gz/release.jigdo"
        let server = ["--server", "Base=http://alice:\(Self.alice)@\(host)/tree/"]
        let shownServer = "http://alice:***@\(host)/tree/"
        let secrets = [Self.alice, Self.bob, Self.carol, Self.mallory]
        func expectNoPassword(_ text: String, _ place: String, sourceLocation: SourceLocation = #_sourceLocation) {
            for secret in secrets {
                #expect(!text.contains(secret), "\(place) holds the password \(secret):\n\(text)", sourceLocation: sourceLocation)
            }
        }

        let tmp = try Harness.makeTempDir("passwords")
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let log = tmp + "/mount.log"
        try Harness.withMount([source], options: ["-vv", "--log-file", log, "--cache-dir", tmp + "/cache"] + server) { mnt in
            // The credentials work: every byte of the image comes through the logins.
            let cmp = try Harness.run(["cmp", mnt + "/release.iso", v.iso])
            #expect(cmp.status == 0, "\(cmp)")
            #expect(nginx.requests().contains { $0.status == 200 && $0.path.hasPrefix("/tree/") })

            let text = try Harness.check([Harness.jigdofs, "status", mnt]).stdout
            expectNoPassword(text, "status")
            #expect(text.contains("from \(shownSource)") && text.contains(shownServer), "\(text)")
            let json = try Harness.check([Harness.jigdofs, "status", "--json", mnt]).stdout
            expectNoPassword(json, "status --json")
            let report = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
            let image = try #require((report["images"] as? [[String: Any]])?.first)
            #expect(image["jigdo"] as? String == shownSource, "\(json)")
            let locations = ((image["parts"] as? [String: Any])?["transfersAllowedByLocation"] as? [String: Any]) ?? [:]
            #expect(locations.keys.contains(shownServer), "\(json)")
            expectNoPassword(try String(contentsOfFile: mnt + "/.jigdofs-status", encoding: .utf8), ".jigdofs-status")

            let mountinfo = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
            expectNoPassword(mountinfo, "/proc/self/mountinfo")
            #expect(mountinfo.contains(" \(shownSource) "), "\(mountinfo)")

            let daemons = Harness.pids(withArgument: mnt)
            #expect(daemons.count == 1, "daemons: \(daemons)")
            for pid in daemons {
                let cmdline = String(decoding: try Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline")), as: UTF8.self)
                expectNoPassword(cmdline, "/proc/\(pid)/cmdline")
                #expect(cmdline.contains("\0" + shownSource + "\0") && cmdline.contains("Base=" + shownServer), "\(cmdline)")
                let ps = try Harness.check(["ps", "-o", "args=", "-p", String(pid)]).stdout
                expectNoPassword(ps, "ps -o args")
                #expect(ps.contains(shownSource), "\(ps)")
            }

            // The log file is the user's alone, also when SIGHUP (logrotate) makes a new one.
            #expect(try fileMode(log) == 0o600)
            try FileManager.default.moveItem(atPath: log, toPath: log + ".1")
            for pid in daemons { kill(pid, SIGHUP) }
            try Harness.waitUntil("the log file is reopened") { FileManager.default.fileExists(atPath: log) }
            #expect(try fileMode(log) == 0o600)
        }
        let logged = try String(contentsOfFile: log + ".1", encoding: .utf8) + String(contentsOfFile: log, encoding: .utf8)
        expectNoPassword(logged, "the log file at -vv")
        #expect(logged.contains("from \(shownSource)"), "\(logged)")

        // info, as text and JSON, with the SOURCE's and the server's passwords.
        let cache = tmp + "/cache2"
        let info = try CLI.run(["info", source, "--cache-dir", cache] + server)
        #expect(info.status == 0, "\(info)")
        expectNoPassword(info.stdout + info.stderr, "info")
        #expect(info.stdout.contains(shownSource) && info.stdout.contains(shownServer), "\(info)")
        let infoJSON = try CLI.run(["info", "--json", source, "--cache-dir", cache] + server)
        expectNoPassword(infoJSON.stdout + infoJSON.stderr, "info --json")
        #expect(infoJSON.stdout.contains(shownServer), "\(infoJSON)")

        // verify --list-missing names every missing part's URLs; make-image names the 401s.
        let missing = try CLI.run(["verify", source, "--offline", "--list-missing", "--cache-dir", cache] + server)
        #expect(missing.status == 2, "\(missing)")
        expectNoPassword(missing.stdout + missing.stderr, "verify --list-missing")
        #expect(missing.stderr.contains(shownServer), "\(missing)")
        let refused = try CLI.run(["make-image", source, "--cache-dir", cache, "--retries", "0", "-o", tmp + "/out.iso",
                                   "--server", "Base=http://alice:\(Self.mallory)@\(host)/tree/"])
        #expect(refused.status == 2, "\(refused)")
        expectNoPassword(refused.stdout + refused.stderr, "make-image")
        #expect(refused.stderr.contains("401") && refused.stderr.contains("http://alice:***@\(host)/tree/"), "\(refused)")

        // The configuration's [Servers] and [Mirrors]: `config` shows them masked, `info` too.
        try "[Servers]\nBase=http://alice:\(Self.alice)@\(host)/tree/\n[Mirrors]\nBase=http://bob:\(Self.bob)@\(host)/tree/\n"
            .write(toFile: tmp + "/config", atomically: true, encoding: .utf8)
        let config = try CLI.run(["config"], environment: ["JIGDOFS_CONFIG": tmp + "/config"])
        expectNoPassword(config.stdout + config.stderr, "config")
        #expect(config.stdout.contains("Base=" + shownServer) && config.stdout.contains("Base=http://bob:***@\(host)/tree/"), "\(config)")
        let configured = try CLI.run(["info", source, "--cache-dir", cache], environment: ["JIGDOFS_CONFIG": tmp + "/config"])
        expectNoPassword(configured.stdout + configured.stderr, "info with the configuration's servers")
        #expect(configured.stdout.contains(shownServer), "\(configured)")

        // A proxy with a login that cannot be reached is named, masked.
        let dead = try freePort()
        let proxy = try CLI.run(["prefetch", source, "--cache-dir", tmp + "/cache3", "--retries", "0"],
                                environment: ["http_proxy": "http://carol:\(Self.carol)@127.0.0.1:\(dead)", "no_proxy": "", "NO_PROXY": ""])
        #expect(proxy.status != 0, "\(proxy)")
        expectNoPassword(proxy.stdout + proxy.stderr, "the proxy error")
        #expect(proxy.stderr.contains("cannot reach the proxy http://carol:***@127.0.0.1:\(dead) (from $http_proxy)"), "\(proxy)")
    }

    func fileMode(_ path: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return (attributes[.posixPermissions] as? Int ?? -1) & 0o777
    }
}
