import Foundation
import TestSupport
import Testing

// Issue 19: a release served to many machines. nginx (the "front") has its root on an
// `-o allow_other` mount (its workers run as nobody); the mount fetches parts from a second
// nginx (the "mirror"). The front also serves a copy of the original ISO from disk, so every
// answer about the mount can be compared with nginx's answer about a plain file.

/// One HTTP response as curl saw it: the status and the headers a client decides on.
struct HTTPAnswer: Equatable, CustomStringConvertible {
    var status: Int
    var headers: [String: String]
    var etag: String { headers["etag"] ?? "" }
    var lastModified: String { headers["last-modified"] ?? "" }
    var description: String { "\(status) \(headers.sorted { $0.key < $1.key })" }

    static let compared: Set<String> = ["content-length", "content-range", "etag", "last-modified", "accept-ranges", "content-type"]

    /// `curl -D -` with `arguments` (e.g. `-I`, `-H 'Range: ...'`); the body goes to `body`.
    static func fetch(_ url: String, _ arguments: [String] = [], body: String = "/dev/null") throws -> HTTPAnswer {
        let r = try Harness.check(["curl", "-s", "--max-time", "60", "-o", body, "-D", "-"] + arguments + [url])
        var status = 0
        var headers: [String: String] = [:]
        for line in r.stdout.split(separator: "\r\n") {
            if line.hasPrefix("HTTP/") {
                status = Int(line.split(separator: " ")[1]) ?? 0
                headers = [:]
            } else if let colon = line.firstIndex(of: ":") {
                let name = line[..<colon].lowercased()
                if compared.contains(name) { headers[name] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces) }
            }
        }
        return HTTPAnswer(status: status, headers: headers)
    }
}

/// The release on the mirror, the front nginx on the mount point, the original ISO on disk.
struct ServedRelease {
    let dir: String
    let www: String
    let original: String
    let mirror: Nginx
    let mountpoint: String
    let front: Nginx

    init() throws {
        let release = try Fixtures.release()
        let variant = release.variant("jf-sha256-gz")
        dir = try Harness.makeTempDir("serve")
        www = dir + "/www"
        try FileManager.default.createDirectory(atPath: www, withIntermediateDirectories: true)
        try variant.copyJigdoAndTemplate(into: www)
        try FileManager.default.createSymbolicLink(atPath: www + "/tree", withDestinationPath: release.tree)
        try FileManager.default.createDirectory(atPath: dir + "/disk", withIntermediateDirectories: true)
        original = dir + "/disk/release.iso"
        try FileManager.default.copyItem(atPath: variant.iso, toPath: original)
        chmod(original, 0o644)
        mirror = try Nginx(root: www)
        mountpoint = try Harness.makeTempDir("front-root")
        front = try Nginx(root: mountpoint, serverConfig: "location /disk/ { alias \(dir)/disk/; }")
    }

    var url: String { mirror.url + "release.jigdo" }
    var served: String { front.url + "release.iso" }
    var plain: String { front.url + "disk/release.iso" }
    /// Parts from the mirror, cache in `cache`; readable through the front's workers (nobody).
    func options(cache: String) -> [String] {
        ["--server", "Base=\(mirror.url)tree/", "--cache-dir", dir + "/" + cache, "-o", "allow_other"]
    }

    /// Paths of the part requests the mirror saw.
    func partRequests() -> [String] {
        mirror.requests().filter { $0.path.hasPrefix("/tree/") }.map(\.path)
    }

    func remove() {
        front.stop()
        mirror.stop()
        removeTree(dir)
    }
}

@Suite(.serialized, .enabled(if: Harness.canMount, "needs root, /dev/fuse and fusermount3"))
struct ServeTests {
    @Test("nginx on an allow_other mount: 8 clients read ranges and the whole image right, each part is fetched once, and HEAD/Range/If-Range/If-None-Match answer as for a plain file, also after a remount by URL or local path")
    func nginxInFrontOfTheMount() throws {
        let s = try ServedRelease()
        defer { s.remove() }
        let original = try readBytes(s.original)
        let size = original.count
        let parts = try jigdoPartKeys(s.www + "/release.jigdo").count

        let firstAnswer = try Harness.withMount([s.url], options: s.options(cache: "cache"), at: s.mountpoint) { mnt in
            // The plain file gets the image's mtime, so both answers can be compared as a whole.
            let image = try StatIdentity(mnt + "/release.iso")
            try setModificationTime(s.original, seconds: image.seconds)

            // 8 clients at once, each a curl of the whole image (checked as it arrives) and 24
            // random ranges in one connection.
            let clients = 8
            var random = SeededRandom(seed: 19)
            var processes: [(Process, [(Int, Int, String)])] = []
            let started = Date()
            for c in 0..<clients {
                var ranges: [(Int, Int, String)] = []
                var args = ["-s", "--max-time", "120"]
                for r in 0..<24 {
                    let start = Int.random(in: 0..<size, using: &random)
                    let end = min(size - 1, start + Int.random(in: 0..<300_000, using: &random))
                    let out = s.dir + "/client\(c)-\(r)"
                    ranges.append((start, end, out))
                    args += (r == 0 ? [] : ["--next"]) + ["-r", "\(start)-\(end)", "-o", out, s.served]
                }
                let p = Process()
                p.executableURL = URL(fileURLWithPath: "/bin/sh")
                p.arguments = ["-c", "curl -s --max-time 120 \(shellQuote(s.served)) | cmp - \(shellQuote(s.original)) && exec curl \(args.map(shellQuote).joined(separator: " "))"]
                try p.run()
                processes.append((p, ranges))
            }
            for (c, (p, ranges)) in processes.enumerated() {
                p.waitUntilExit()
                #expect(p.terminationStatus == 0, "client \(c): whole image or ranges differ (exit \(p.terminationStatus))")
                for (start, end, out) in ranges {
                    let got = (try? readBytes(out)) ?? []
                    #expect(bytesEqual(got, original[start...end]), "client \(c): bytes \(start)-\(end)")
                }
            }
            let seconds = Date().timeIntervalSince(started)
            print("serve: \(clients) clients, \(clients) x \(size) bytes whole + \(clients * 24) ranges in \(String(format: "%.2f", seconds)) s")

            // Each part once from the mirror, however many clients read it.
            let fetched = s.partRequests()
            #expect(fetched.count == Set(fetched).count, "a part fetched twice: \(fetched.count) requests, \(Set(fetched).count) paths")
            #expect(Set(fetched).count == parts, "\(Set(fetched).count) of \(parts) parts fetched")

            // The validators and range answers of a plain file.
            let head = try HTTPAnswer.fetch(s.plain, ["-I"])
            let etag = head.etag, lastModified = head.lastModified
            #expect(head.status == 200 && !etag.isEmpty && !lastModified.isEmpty, "\(head)")
            let requests: [[String]] = [
                ["-I"],
                ["-r", "0-99"],
                ["-r", "1000000-1000999"],
                ["-r", "-512"],
                ["-r", "\(size - 10)-"],
                ["-H", "Range: bytes=\(size)-"],
                ["-H", "If-None-Match: \(etag)"],
                ["-H", "If-Modified-Since: \(lastModified)"],
                ["-r", "4096-8191", "-H", "If-Range: \(etag)"],
                ["-r", "4096-8191", "-H", "If-Range: \(lastModified)"],
                ["-r", "4096-8191", "-H", "If-Range: \"0-0\""],
            ]
            for (i, args) in requests.enumerated() {
                let ours = try HTTPAnswer.fetch(s.served, args, body: s.dir + "/ours-\(i)")
                let plain = try HTTPAnswer.fetch(s.plain, args, body: s.dir + "/plain-\(i)")
                #expect(ours == plain, "\(args): mount \(ours), plain file \(plain)")
                // (No body, as for a 304: curl writes no file.)
                // The two answers were made a moment apart: their Date headers may differ by a
                // second (a HEAD's "body" is curl's header dump).
                func withoutDate(_ b: [UInt8]) -> [UInt8] {
                    let text = String(decoding: b, as: UTF8.self)
                    guard text.hasPrefix("HTTP/") else { return b }
                    return Array(text.split(separator: "\r\n", omittingEmptySubsequences: false)
                        .filter { !$0.lowercased().hasPrefix("date:") }.joined(separator: "\r\n").utf8)
                }
                let ourBody = withoutDate((try? readBytes(s.dir + "/ours-\(i)")) ?? [])
                let plainBody = withoutDate((try? readBytes(s.dir + "/plain-\(i)")) ?? [])
                #expect(ourBody == plainBody, "\(args): bodies differ (\(ourBody.count) and \(plainBody.count) bytes)")
            }
            #expect(try HTTPAnswer.fetch(s.served, ["-H", "If-None-Match: \(etag)"]).status == 304)
            #expect(try HTTPAnswer.fetch(s.served, ["-r", "4096-8191", "-H", "If-Range: \(etag)"]).status == 206)
            return try HTTPAnswer.fetch(s.served, ["-I"])
        }

        // Remounted by URL (the .jigdo fetched again), with the cache and with an empty one,
        // and from the local .jigdo next to its template, before and after its servers change:
        // the same validators; a client resuming with the old ETag gets its range.
        let text = try jigdoText(s.www + "/release.jigdo")
        let local = s.dir + "/local"
        try FileManager.default.createDirectory(atPath: local, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: s.www + "/release.template", toPath: local + "/release.template")
        try setModificationTime(local + "/release.template", seconds: try StatIdentity(s.www + "/release.template").seconds)
        try text.write(toFile: local + "/release.jigdo", atomically: true, encoding: .utf8)
        let remounts: [(String, [String], () throws -> Void)] = [
            ("by URL", s.options(cache: "cache"), {}),
            ("by URL, empty cache", s.options(cache: "cache2"), {}),
            ("by local path", s.options(cache: "cache3"), {}),
            ("by local path, servers edited", s.options(cache: "cache3"), {
                try writeJigdo(text, to: local + "/release.jigdo", replacing: ["[Servers]": "[Servers]\nMirror=http://127.0.0.1:9/"])
                try setModificationTime(local + "/release.jigdo", seconds: Int(Date().timeIntervalSince1970) + 1000)
            }),
        ]
        for (what, options, prepare) in remounts {
            try prepare()
            let source = what.hasPrefix("by URL") ? s.url : local + "/release.jigdo"
            try Harness.withMount([source], options: options, at: s.mountpoint) { _ in
                let head = try HTTPAnswer.fetch(s.served, ["-I"])
                #expect(head == firstAnswer, "\(what): \(head), first mount \(firstAnswer)")
                let resumed = try HTTPAnswer.fetch(s.served, ["-r", "0-99", "-H", "If-Range: \(firstAnswer.etag)"])
                #expect(resumed.status == 206, "\(what): If-Range with the first mount's ETag: \(resumed)")
            }
        }
    }
}
