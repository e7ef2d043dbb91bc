import Foundation
import JigdoFormat
import Testing
import TestSupport

/// A temp dir nginx's worker can read (mkdtemp makes 0700), with an empty `www/`.
func servedDirectory() throws -> TemporaryDirectory {
    let tmp = try TemporaryDirectory()
    chmod(tmp.path, 0o755)
    try FileManager.default.createDirectory(atPath: tmp.file("www"), withIntermediateDirectories: true)
    return tmp
}

/// Releases made as publishers make them (Tests/TestSupport/Publishers.swift), read with the
/// real binary against a loopback nginx.
@Suite("Publishers' pipelines", .serialized)
struct PublisherPipelineTests {
    /// Checks that every part was asked for from the primary mirror first, and from the
    /// `--try-last` snapshot only when the primary did not have it, after that failed.
    func checkWeightOrder(_ log: [(status: Int, path: String)], primary: String, tree: String) {
        let snapshot = "/" + Publishers.snapshotPath
        for (_, path) in log {
            #expect(path.hasPrefix(primary) || path.hasPrefix(snapshot), "unexpected request \(path)")
        }
        let fromSnapshot = log.filter { $0.path.hasPrefix(snapshot) }
        #expect(Set(fromSnapshot.map { String($0.path.dropFirst(snapshot.count)) }) == Set(Publishers.onlyOnSnapshot),
                "only what the primary lacks comes from the --try-last server: \(fromSnapshot.map(\.path))")
        #expect(fromSnapshot.allSatisfy { $0.status == 200 })
        for file in Publishers.onlyOnSnapshot {
            let first = log.firstIndex { $0.path == primary + file }
            let last = log.firstIndex { $0.path == snapshot + file }
            #expect(first != nil && last != nil && first! < last!, "\(file): primary (404) before the snapshot")
            if let first { #expect(log[first].status == 404) }
        }
        for (status, path) in log where path.hasPrefix(primary) && status == 200 {
            #expect(FileManager.default.fileExists(atPath: tree + "/" + path.dropFirst(primary.count)), "a right URL: \(path)")
        }
    }

    @Test("debian-cd today: xorriso JTE + jigdo_cleanup, gzip'd, --try-last snapshot server tried last", arguments: [false, true])
    func debianToday(sha256: Bool) throws {
        let tmp = try servedDirectory()
        let nginx = try Nginx(root: tmp.file("www"))
        defer { nginx.stop() }
        let release = try Publishers.debianToday(in: tmp.path, serverURL: nginx.url, sha256: sha256)
        #expect(try readBytes(release.jigdo).starts(with: [0x1f, 0x8b]), "published gzip'd")

        let info = try CLI.run(["info", "--json", release.jigdo, "--cache-dir", tmp.file("cache")])
        #expect(info.status == 0, "\(info)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as? [String: Any])
        #expect(json["image"] as? String == "debian-12.5.0-amd64-DVD-1.iso")
        #expect((json["shortInfo"] as? String)?.contains("\"Bookworm\"") == true)
        #expect(json["jigdoVersion"] as? String == (sha256 ? "2.0" : "1.1"))
        let servers = try #require(json["servers"] as? [[String: Any]])
        let debian = try #require(servers.first { $0["label"] as? String == "Debian" })
        #expect(debian["values"] as? [String] == ["\(nginx.url)debian/", "\(nginx.url)\(Publishers.snapshotPath)"], "the option is not part of the URL")
        #expect(debian["weights"] as? [Int] == [0, -1])
        let text = try CLI.run(["info", release.jigdo, "--cache-dir", tmp.file("cache")])
        #expect(text.stdout.contains("\(Publishers.snapshotPath) (weight -1)"), "\(text.stdout)")
        #expect(nginx.requests().isEmpty, "info downloads nothing when the template is local")

        let out = tmp.file("made.iso")
        let made = try CLI.run(["make-image", release.jigdo, "-o", out, "--cache-dir", tmp.file("cache"), "--jobs", "2"])
        #expect(made.status == 0, "\(made)")
        #expect(try filesEqual(out, release.iso))
        checkWeightOrder(nginx.requests(), primary: "/debian/", tree: release.tree)
    }

    @Test("Ubuntu cdimage: jigdo-file --uri with its [Servers] section and a --try-last line")
    func ubuntu() throws {
        let tmp = try servedDirectory()
        let nginx = try Nginx(root: tmp.file("www"))
        defer { nginx.stop() }
        let release = try Publishers.ubuntu(in: tmp.path, serverURL: nginx.url)
        let out = tmp.file("made.iso")
        let made = try CLI.run(["make-image", release.jigdo, "-o", out, "--cache-dir", tmp.file("cache"), "--jobs", "2"])
        #expect(made.status == 0, "\(made)")
        #expect(try filesEqual(out, release.iso))
        checkWeightOrder(nginx.requests(), primary: "/ubuntu/", tree: release.tree)

        // The user's --server replaces the label's servers and may carry the same options.
        let nginx2 = try Nginx(root: tmp.file("www"))
        defer { nginx2.stop() }
        let again = try CLI.run(["make-image", release.jigdo, "-o", tmp.file("again.iso"), "--cache-dir", tmp.file("cache2"), "--jobs", "2",
                                 "--server", "Debian=\(nginx2.url)\(Publishers.snapshotPath.dropLast()) --try-last",
                                 "--server", "Debian=\(nginx2.url)ubuntu"])
        #expect(again.status == 0, "\(again)")
        #expect(try filesEqual(tmp.file("again.iso"), release.iso))
        checkWeightOrder(nginx2.requests(), primary: "/ubuntu/", tree: release.tree)
    }

    @Test("a self-referencing label (appended three times) is refused at once, local and remote, naming the label")
    func selfReferencingLabel() throws {
        let v = try Fixtures.smallRelease().variant("jf-md5-gz")
        let tmp = try servedDirectory()
        try v.copyJigdoAndTemplate(into: tmp.path)
        var text = try String(decoding: Decompression.gunzipConcatenated(try readBytes(v.jigdo), limit: 1 << 24), as: UTF8.self)
        text += "\n[Servers]\nBase=Base:\nBase=Base:\nBase=Base:\n"
        try text.write(toFile: tmp.file("release.jigdo"), atomically: true, encoding: .utf8)
        let nginx = try Nginx(root: tmp.path)
        defer { nginx.stop() }
        try FileManager.default.createDirectory(atPath: tmp.file("mnt"), withIntermediateDirectories: true)
        let clock = ContinuousClock()
        for args in [["make-image", tmp.file("release.jigdo"), "-o", tmp.file("o.iso")],
                     ["make-image", nginx.url + "release.jigdo", "-o", tmp.file("o.iso")],
                     ["info", nginx.url + "release.jigdo"],
                     ["mount", nginx.url + "release.jigdo", tmp.file("mnt")]] {
            let start = clock.now
            let r = try CLI.run(args + ["--cache-dir", tmp.file("cache")])
            #expect(clock.now - start < .seconds(5), "\(args)")
            #expect(r.status == 1, "\(args): \(r)")
            #expect(r.stderrLines.count == 1 && r.stderr.contains("label Base refers to itself"), "\(args): \(r.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: tmp.file("o.iso")))
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.file("mnt")).isEmpty, "nothing mounted")
    }
}

@Suite("Publishers' pipelines: templates by URL and remote includes", .serialized)
struct PublisherURLTests {
    @Test("the SME workflow: a wget'd .jigdo with an absolute template URL; then --offline from the cache")
    func smeWorkflow() throws {
        let tmp = try servedDirectory()
        let nginx = try Nginx(root: tmp.file("www"))
        defer { nginx.stop() }
        let v = try Fixtures.smallRelease().variant("jf-md5-gz")
        let jigdo = try Publishers.sme(in: tmp.path, serverURL: nginx.url, variant: v)
        let cache = ["--cache-dir", tmp.file("cache")]

        let made = try CLI.run(["make-image", jigdo, "-o", tmp.file("made.iso"), "--jobs", "2"] + cache)
        #expect(made.status == 0, "\(made)")
        #expect(try filesEqual(tmp.file("made.iso"), v.iso))
        let first = nginx.requests()
        #expect(first.filter { $0.path == "/sme/smeserver.template" }.count == 1, "the template is fetched once: \(first.map(\.path))")
        #expect(first.allSatisfy { $0.status == 200 })

        // Nothing to download any more: the template and the parts are in the cache.
        let offline = try CLI.run(["make-image", jigdo, "-o", tmp.file("offline.iso"), "--offline"] + cache)
        #expect(offline.status == 0, "\(offline)")
        #expect(try filesEqual(tmp.file("offline.iso"), v.iso))
        // Online again, the cached template matches the .jigdo's checksum: not fetched again.
        let info = try CLI.run(["info", "--json", "--pretty", jigdo] + cache)
        #expect(info.status == 0, "\(info)")
        #expect(info.stdout.contains("\"templateChecksum\" : \"MD5 matched\""), "\(info.stdout)")
        #expect(nginx.requests().count == first.count)

        // info takes a URL like every other command.
        try FileManager.default.copyItem(atPath: jigdo, toPath: tmp.file("www/sme/smeserver.jigdo"))
        let byURL = try CLI.run(["info", "--json", nginx.url + "sme/smeserver.jigdo"] + cache)
        #expect(byURL.status == 0, "\(byURL)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(byURL.stdout.utf8)) as? [String: Any])
        #expect(json["image"] as? String == "release.iso")
        #expect((json["size"] as? NSNumber)?.int64Value == (try ReadOnlyFile(path: v.iso).size))
        #expect(json["jigdo"] as? String == nginx.url + "sme/smeserver.jigdo")

        // A local template next to the .jigdo wins.
        try FileManager.default.copyItem(atPath: v.template, toPath: tmp.file("wget/smeserver.template"))
        let local = try CLI.run(["info", "--json", "--pretty", jigdo, "--offline", "--cache-dir", tmp.file("other-cache")])
        #expect(local.stdout.contains("\"template\" : \"\(tmp.file("wget/smeserver.template"))\""), "\(local.stdout)")
    }

    @Test("a template that cannot be had names each location tried, once; info still shows the .jigdo (exit 0)")
    func templateUnavailable() throws {
        let tmp = try servedDirectory()
        let nginx = try Nginx(root: tmp.file("www"))
        defer { nginx.stop() }
        let v = try Fixtures.smallRelease().variant("jf-md5-gz")
        let jigdo = try Publishers.sme(in: tmp.path, serverURL: nginx.url, variant: v)
        try FileManager.default.removeItem(atPath: tmp.file("www/sme/smeserver.template"))
        let url = nginx.url + "sme/smeserver.template"
        let r = try CLI.run(["make-image", jigdo, "-o", tmp.file("x.iso"), "--cache-dir", tmp.file("cache")])
        #expect(r.status == 1, "\(r)")
        #expect(r.stderrLines.count == 1, "\(r)")
        #expect(r.stderr.components(separatedBy: url).count == 2, "the URL named once: \(r.stderr)")
        #expect(r.stderr.contains(tmp.file("wget/smeserver.template")), "and the local file looked for: \(r.stderr)")
        #expect(r.stderr.contains("HTTP status 404"), "\(r.stderr)")

        let info = try CLI.run(["info", jigdo, "--cache-dir", tmp.file("cache")])
        #expect(info.status == 0, "\(info)")
        #expect(info.stdout.contains("Template:     \(url) (missing:"), "\(info.stdout)")
        #expect(info.stdout.contains("Base = \(nginx.url)sme/tree/"), "\(info.stdout)")
        let partsListed = try jigdoPartKeys(v.jigdo).count
        #expect(info.stdout.contains("Listed parts: \(partsListed)"), "\(info.stdout)")
        let offline = try CLI.run(["info", jigdo, "--offline", "--cache-dir", tmp.file("cache")])
        #expect(offline.status == 0 && offline.stdout.contains("(missing:"), "\(offline)")
    }

    @Test("debian-cd 2003-2005: jigdo-file from stdin, --merge header with a remote [Include] of the servers")
    func debianOld() throws {
        let tmp = try servedDirectory()
        let nginx = try Nginx(root: tmp.file("www"))
        defer { nginx.stop() }
        let release = try Publishers.debianOld(in: tmp.path, serverURL: nginx.url)
        let text = try String(contentsOfFile: release.jigdo, encoding: .utf8)
        #expect(text.contains("[Include \(nginx.url)debian-cd/debian-servers.jigdo]") && !text.contains("[Servers]"), "\(text)")
        let cache = ["--cache-dir", tmp.file("cache")]

        let made = try CLI.run(["make-image", release.jigdo, "-o", tmp.file("made.iso"), "--jobs", "2"] + cache)
        #expect(made.status == 0, "\(made)")
        #expect(try filesEqual(tmp.file("made.iso"), release.iso))
        let paths = nginx.requests().map(\.path)
        #expect(paths.first == "/debian-cd/debian-servers.jigdo")
        #expect(paths.dropFirst().allSatisfy { $0.hasPrefix("/debian/") } && paths.count > 3, "\(paths)")

        let info = try CLI.run(["info", release.jigdo, "--offline"] + cache)
        #expect(info.status == 0, "\(info)")
        #expect(info.stdout.contains("Debian = \(nginx.url)debian/"), "the servers come from the cached include: \(info.stdout)")
        #expect(info.stdout.contains("\"Woody\""))

        // The include cannot be had (server gone, nothing cached): a warning; the rest counts.
        nginx.stop()
        let gone = try CLI.run(["info", release.jigdo, "--cache-dir", tmp.file("cold")])
        #expect(gone.status == 0, "\(gone)")
        #expect(gone.stderr.contains("debian-servers.jigdo") && gone.stderr.contains("going on without it"), "\(gone.stderr)")
        #expect(gone.stdout.contains("Image:        debian-30r4-i386-binary-1.iso"))
    }
}

@Suite("Publishers' pipelines: merged images", .serialized)
struct PublisherMergedTests {
    @Test("Fedora: two images merged into one .jigdo, mirrorlist URLs, %2b for +: both bit-exact by --scan, --map and download")
    func fedora() throws {
        let tmp = try servedDirectory()
        let nginx = try Nginx(root: tmp.file("www"), serverConfig: Publishers.fedoraNginxConfig)
        defer { nginx.stop() }
        let release = try Publishers.fedora(in: tmp.path, serverURL: nginx.url)
        let names = release.isos.keys.sorted()
        let text = try String(contentsOfFile: release.jigdo, encoding: .utf8)
        #expect(text.components(separatedBy: "[Image]").count == 3, "jigdo-file --merge wrote two [Image] sections")

        let info = try CLI.run(["info", "--json", release.jigdo, "--cache-dir", tmp.file("cache")])
        #expect(info.status == 0, "\(info)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as? [String: Any])
        let images = try #require(json["images"] as? [[String: Any]])
        #expect(Set(images.compactMap { $0["image"] as? String }) == Set(names))
        for image in images {
            let name = image["image"] as? String ?? ""
            let size = try ReadOnlyFile(path: release.isos[name] ?? "/").size
            #expect((image["size"] as? NSNumber)?.int64Value == size, "\(name)")
            #expect((image["templateChecksum"] as? String)?.contains("matched") == true, "each image's own template: \(image)")
        }

        let noChoice = try CLI.run(["make-image", release.jigdo, "-o", tmp.file("x.iso")])
        #expect(noChoice.status == 64, "\(noChoice)")
        #expect(noChoice.stderrLines.count == 1 && names.allSatisfy { noChoice.stderr.contains($0) } && noChoice.stderr.contains("--image"), "\(noChoice)")
        let wrong = try CLI.run(["verify", release.jigdo, "--image", "nope.iso"])
        #expect(wrong.status == 64 && names.allSatisfy { wrong.stderr.contains($0) }, "\(wrong)")

        for (name, iso) in release.isos {
            for opts in [["--scan", release.tree], ["--map", "Fedora=\(release.tree)"], ["--cache-dir", tmp.file("cache")]] {
                let out = tmp.file("out.iso")
                let r = try CLI.run(["make-image", release.jigdo, "--image", name, "-o", out, "--force"] + opts)
                #expect(r.status == 0, "\(name) \(opts): \(r)")
                #expect(try filesEqual(out, iso), "\(name) \(opts)")
            }
            let ls = try CLI.run(["ls", release.jigdo, "--image", name, "/Packages/g", "--map", "Fedora=\(release.tree)"])
            #expect(ls.status == 0 && ls.stdout.contains("gtk+-2.24.33-1.fc40.x86_64.rpm"), "\(ls)")
        }
        #expect(!nginx.requests().contains { $0.path.contains(".template") }, "the templates next to the .jigdo are used")

        // Only the .jigdo local: each image's template comes through the mirrorlist.
        try FileManager.default.createDirectory(atPath: tmp.file("alone"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: release.jigdo, toPath: tmp.file("alone/f.jigdo"))
        for (name, iso) in release.isos {
            let out = tmp.file("alone.iso")
            let r = try CLI.run(["make-image", tmp.file("alone/f.jigdo"), "--image", name, "-o", out, "--force", "--cache-dir", tmp.file("cache")])
            #expect(r.status == 0, "\(name): \(r)")
            #expect(try filesEqual(out, iso), "\(name)")
        }
        let fetched = nginx.requests()
        #expect(fetched.filter { $0.path.hasSuffix(".template") && $0.status == 200 }.count == 2, "\(fetched.map(\.path))")
        #expect(fetched.contains { $0.path.hasPrefix("/mirrorlist") && $0.status == 302 })
        #expect(fetched.contains { $0.path == "/pub/fedora/Packages/g/gtk+-2.24.33-1.fc40.x86_64.rpm" && $0.status == 200 }, "\(fetched.map(\.path))")
        #expect(!fetched.contains { $0.status >= 400 }, "\(fetched.filter { $0.status >= 400 })")
    }
}

@Suite("Publishers' pipelines: raw file names")
struct PublisherRawNameTests {
    @Test("Latin-1 file names: the .jigdo is read byte for byte; --map, --scan and downloads find the files")
    func latin1() throws {
        let tmp = try servedDirectory()
        let nginx = try Nginx(root: tmp.file("www"))
        defer { nginx.stop() }
        let release = try Publishers.latin1(in: tmp.path, serverURL: nginx.url)
        let raw = try readBytes(release.jigdo)
        #expect(String(validating: raw, as: UTF8.self) == nil, "jigdo-file wrote the raw bytes")
        #expect(raw.contains(0xE9))

        // Nothing local: the missing parts are listed with their names escaped.
        let missing = try CLI.run(["make-image", release.jigdo, "-o", tmp.file("x.iso"), "--offline", "--cache-dir", tmp.file("cache")])
        #expect(missing.status == 2, "\(missing)")
        #expect(missing.stderr.contains("caf%E9 cr%E8me.jpg"), "URLs percent-encode the bytes: \(missing.stderr)")
        #expect(String(validating: Array(missing.stderr.utf8), as: UTF8.self) != nil)

        for opts in [["--map", "Base=\(release.tree)", "--offline"], ["--scan", release.tree, "--offline"], ["--jobs", "2"]] {
            let out = tmp.file("out.iso")
            let r = try CLI.run(["make-image", release.jigdo, "-o", out, "--force", "--cache-dir", tmp.file("cache-\(opts[0])")] + opts)
            #expect(r.status == 0, "\(opts): \(r)")
            #expect(try filesEqual(out, release.iso), "\(opts)")
        }
        let fetched = nginx.requests()
        #expect(fetched.count == 4 && fetched.allSatisfy { $0.status == 200 }, "\(fetched)")
    }
}

@Suite("Hostile and odd .jigdo files on the command line")
struct OddJigdoTests {
    @Test("unknown value options: ignored with one warning, never part of a URL")
    func unknownOptions() throws {
        let v = try Fixtures.smallRelease().variant("jf-md5-gz")
        let tmp = try TemporaryDirectory()
        try v.copyJigdoAndTemplate(into: tmp.path)
        var text = String(decoding: try Decompression.gunzipConcatenated(try readBytes(v.jigdo), limit: 1 << 26), as: UTF8.self)
        text = text.replacingOccurrences(of: "Base=file:../tree/", with: "Base=http://127.0.0.1:9/tree/ --frobnicate --weird=2\nBase=http://127.0.0.1:9/other/ --frobnicate")
        try text.write(toFile: tmp.file("release.jigdo"), atomically: true, encoding: .utf8)
        let r = try CLI.run(["info", tmp.file("release.jigdo")])
        #expect(r.status == 0, "\(r)")
        #expect(r.stderrLines.count == 1 && r.stderr.contains("--frobnicate") && r.stderr.contains("--weird=2"), "\(r.stderr)")
        #expect(r.stdout.contains("Base = http://127.0.0.1:9/tree/, http://127.0.0.1:9/other/"), "\(r.stdout)")
        #expect(!r.stdout.contains("--frobnicate"))
    }

    @Test("label fan-out (8 alternatives on each of 12 levels): every part gets a bounded list, at once")
    func fanOut() throws {
        let v = try Fixtures.smallRelease().variant("jf-md5-gz")
        let tmp = try TemporaryDirectory()
        try v.copyJigdoAndTemplate(into: tmp.path)
        var servers = "\n[Servers]\n"
        for level in 0..<12 {
            for alt in 0..<8 { servers += "L\(level)=L\(level + 1):\(alt)/\n" }
        }
        for alt in 0..<8 { servers += "L12=http://127.0.0.1:9/m\(alt)/\n" }
        servers += "Base=L0:\n"
        var text = String(decoding: try Decompression.gunzipConcatenated(try readBytes(v.jigdo), limit: 1 << 26), as: UTF8.self)
        text = text.replacingOccurrences(of: "Base=file:../tree/", with: "") + servers
        try text.write(toFile: tmp.file("release.jigdo"), atomically: true, encoding: .utf8)
        let clock = ContinuousClock()
        let start = clock.now
        let r = try CLI.run(["make-image", tmp.file("release.jigdo"), "-o", tmp.file("o.iso"), "--offline", "--cache-dir", tmp.file("cache")])
        #expect(clock.now - start < .seconds(5))
        #expect(r.status == 2, "\(r)")
        let partLines = r.stderrLines.dropFirst()
        #expect(!partLines.isEmpty)
        for line in partLines {
            #expect(line.components(separatedBy: "http://").count - 1 <= 64, "at most 64 locations: \(line.prefix(200))")
        }
    }
}
