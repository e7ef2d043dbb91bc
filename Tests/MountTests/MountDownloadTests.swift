import Foundation
import Synchronization
import TestSupport
import Testing

// End-to-end: the mount and the downloads together. The fixture's .jigdo and .template are
// copied where its own `file:../tree/` server does not resolve, so every part comes from a
// real nginx on 127.0.0.1 (`--server Base=...`) into a fresh `--cache-dir`; nginx's access log
// tells what was fetched.

/// A cold start: the .jigdo/.template of one variant alone in a temp dir, an nginx serving the
/// release, an empty cache dir.
struct ColdRelease {
    let release: FixtureRelease
    let variant: FixtureVariant
    let dir: String
    let nginx: Nginx

    init(variant name: String = "jf-sha256-gz") throws {
        release = try Fixtures.release()
        variant = release.variant(name)
        dir = try Harness.makeTempDir("cold")
        try variant.copyJigdoAndTemplate(into: dir)
        nginx = try Nginx(root: release.root)
    }

    var jigdo: String { dir + "/release.jigdo" }
    var cacheDir: String { dir + "/cache" }
    var iso: String { variant.iso }
    /// Mount options: parts from nginx, cache in the temp dir.
    var options: [String] { ["--server", "Base=\(nginx.url)tree/", "--cache-dir", cacheDir] }

    /// Paths (relative to the tree) of the part requests nginx saw, with their statuses.
    func partRequests() -> [(status: Int, path: String)] {
        nginx.requests().filter { $0.path.hasPrefix("/tree/") }.map { ($0.status, String($0.path.dropFirst(6))) }
    }

    /// Distinct part checksums listed in the .jigdo's [Parts].
    func distinctParts() throws -> Int { try jigdoPartKeys(jigdo).count }

    func size(_ path: String) -> Int64 {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int64) ?? -1
    }

    /// Files of the tree big enough to be parts, sorted (relative paths).
    func packages() -> [String] {
        regularFiles(under: release.tree).filter { size($0) >= 4096 }.map { String($0.dropFirst(release.tree.count + 1)) }
    }

    func remove() {
        nginx.stop()
        removeTree(dir)
    }
}

/// The status report of a mount (the fields these tests check).
struct StatusReport: Decodable {
    struct Image: Decodable {
        struct Parts: Decodable {
            var partsTotal: Int
            var partsLocal: Int
            var partsCached: Int
            var partsMissing: Int
            var bytesDownloaded: Int64
            var transfersInFlight: Int
            var failuresByMirror: [String: Int]
            var transfersAllowedByLocation: [String: Int]
        }
        var name: String
        var size: Int64
        var parts: Parts
    }
    var images: [Image]
    /// With several images (ReleaseSetTests).
    var total: StatusTotal?

    static func of(_ mountpoint: String) throws -> StatusReport {
        let r = try Harness.check([Harness.jigdofs, "status", mountpoint, "--json"])
        return try JSONDecoder().decode(StatusReport.self, from: r.stdoutData)
    }
}

/// pread into a fresh buffer; the errno on failure.
func preadFile(_ fd: Int32, at offset: Int64, count: Int) -> Result<[UInt8], POSIXError> {
    var buf = [UInt8](repeating: 0, count: count)
    var done = 0
    while done < count {
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset) + off_t(done)) }
        if n < 0 {
            if errno == EINTR { continue }
            return .failure(POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO))
        }
        if n == 0 { break }
        done += n
    }
    return .success(Array(buf[0..<done]))
}

/// Runs `body` on `count` threads at once, each with its own descriptor of `path` (closed
/// after), and waits for them all; a failed open is told to `failed`.
func onReaderThreads(_ count: Int, of path: String, failed: @escaping @Sendable (String) -> Void,
                     _ body: @escaping @Sendable (_ thread: Int, _ fd: Int32) -> Void) {
    let group = DispatchGroup()
    for t in 0..<count {
        group.enter()
        Thread {
            defer { group.leave() }
            let fd = open(path, O_RDONLY)
            guard fd >= 0 else { failed("open: errno \(errno)"); return }
            defer { close(fd) }
            body(t, fd)
        }.start()
    }
    group.wait()
}

/// Non-empty files under `dir` (recursively) and their sizes.
func nonEmptyFiles(under dir: String) -> [String: Int64] {
    var out: [String: Int64] = [:]
    for path in regularFiles(under: dir) {
        let size = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int64) ?? 0
        if size > 0 { out[path] = size }
    }
    return out
}

@Suite(.serialized, .enabled(if: Harness.canMount, "needs root, /dev/fuse and fusermount3"))
struct MountDownloadTests {
    @Test("prefetch MOUNTPOINT: the daemon downloads every part once, with the mount's own servers")
    func prefetchThroughTheMount() throws {
        let cold = try ColdRelease()
        defer { cold.remove() }
        let parts = try cold.distinctParts()
        try Harness.withMount([cold.jigdo], options: cold.options) { mnt in
            let before = try StatusReport.of(mnt).images[0].parts
            #expect(before.partsMissing == parts)
            let r = try Harness.check([Harness.jigdofs, "prefetch", mnt])
            #expect(r.stdout.contains("\(parts) of \(parts) parts available"), "\(r.stdout)")
            let after = try StatusReport.of(mnt).images[0].parts
            #expect(after.partsMissing == 0)
            #expect(after.partsCached == parts)
            let requests = cold.partRequests()
            #expect(requests.allSatisfy { $0.status == 200 })
            #expect(Set(requests.map(\.path)).count == requests.count, "each part fetched once")
            #expect(requests.count == parts)
            let cmp = try Harness.run(["cmp", mnt + "/release.iso", cold.iso])
            #expect(cmp.status == 0, "\(cmp.stdout)\(cmp.stderr)")
        }
    }

    @Test("cold cache: 16 concurrent readers and cmp of the whole image are right, each part fetched once, status agrees")
    func coldMountFromNginx() throws {
        let cold = try ColdRelease()
        defer { cold.remove() }
        let parts = try cold.distinctParts()
        #expect(parts > 100)
        try Harness.withMount([cold.jigdo], options: cold.options) { mnt in
            let image = mnt + "/release.iso"
            let original = open(cold.iso, O_RDONLY)
            try #require(original >= 0)
            defer { close(original) }
            let size = cold.size(cold.iso)
            #expect(cold.size(image) == size)

            // 16 threads, each its own descriptor and random ranges, all on a cold cache.
            let failures = Mutex<[String]>([])
            onReaderThreads(16, of: image, failed: { m in failures.withLock { $0.append(m) } }) { t, fd in
                var rng = SeededRandom(seed: UInt64(t + 1))
                for _ in 0..<24 {
                    let offset = Int64.random(in: 0..<size, using: &rng)
                    let count = Int(min(Int64.random(in: 1...(1 << 20), using: &rng), size - offset))
                    switch (preadFile(fd, at: offset, count: count), preadFile(original, at: offset, count: count)) {
                    case (.success(let got), .success(let want)):
                        if got.count != count || !bytesEqual(got, want[...]) {
                            failures.withLock { $0.append("wrong bytes at \(offset)+\(count)") }
                        }
                    case (.failure(let e), _), (_, .failure(let e)):
                        failures.withLock { $0.append("read at \(offset)+\(count): \(e)") }
                    }
                }
            }
            #expect(failures.withLock { $0 } == [])

            try Harness.check(["cmp", image, cold.iso])

            let requests = cold.partRequests()
            #expect(requests.allSatisfy { $0.status == 200 }, "\(requests.filter { $0.status != 200 })")
            var perPath: [String: Int] = [:]
            for r in requests { perPath[r.path, default: 0] += 1 }
            #expect(perPath.values.allSatisfy { $0 == 1 }, "fetched more than once: \(perPath.filter { $0.value > 1 })")
            #expect(perPath.count == parts)
            // Only parts: the template is local.
            #expect(cold.nginx.requests().count == requests.count)

            let report = try StatusReport.of(mnt)
            let p = try #require(report.images.first { $0.name == "release.iso" }).parts
            let bytes = perPath.keys.reduce(Int64(0)) { $0 + cold.size(cold.release.tree + "/" + $1) }
            #expect(p.partsTotal == parts)
            #expect(p.partsCached == perPath.count)
            #expect(p.partsLocal == 0)
            #expect(p.partsMissing == 0)
            #expect(p.bytesDownloaded == bytes)
            #expect(p.transfersInFlight == 0)
            // The one mirror location, with the transfers it is allowed now (from 4, within
            // the default cap of 32).
            let allowed = p.transfersAllowedByLocation
            #expect(allowed.count == 1 && allowed.keys.allSatisfy { $0.hasPrefix("http://127.0.0.1:\(cold.nginx.port)/") }, "\(allowed)")
            #expect(allowed.values.allSatisfy { (1...32).contains($0) }, "\(allowed)")
        }
    }

    @Test("browsing release.iso.d downloads nothing; cat of one package fetches exactly that part")
    func browseCostsNoDownloads() throws {
        let cold = try ColdRelease()
        defer { cold.remove() }
        try Harness.withMount([cold.jigdo], options: cold.options) { mnt in
            let view = mnt + "/release.iso.d"
            let found = try Harness.check(["find", view]).stdout.split(separator: "\n")
            #expect(found.count > 300)
            let listed = try Harness.check(["ls", "-lR", view]).stdout
            #expect(listed.contains("README.txt"))
            #expect(cold.nginx.requests().isEmpty, "browsing fetched \(cold.nginx.requests().map(\.path))")

            // Files under jigdo-file's minimum part size (1 KiB) are template data: reading
            // them costs no download either.
            let small = regularFiles(under: cold.release.tree).filter { cold.size($0) < 1024 }
            #expect(small.count > 10)
            for file in small {
                try Harness.check(["cmp", view + file.dropFirst(cold.release.tree.count), file])
            }
            #expect(cold.nginx.requests().isEmpty, "reading small files fetched \(cold.nginx.requests().map(\.path))")

            // A package in the middle of the tree (the design: one non-sequential read of one
            // part starts no read-ahead).
            let packages = cold.packages()
            let package = packages[packages.count / 2]
            let out = cold.dir + "/copy"
            let r = try Harness.run(["/bin/sh", "-c", "cat \(shellQuote(view + "/" + package)) > \(shellQuote(out))"])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(try filesEqual(out, cold.release.tree + "/" + package))
            #expect(cold.partRequests().map(\.path) == [package])
            #expect(cold.partRequests().allSatisfy { $0.status == 200 })

            let p = try #require(StatusReport.of(mnt).images.first { $0.name == "release.iso" }).parts
            #expect(p.partsCached == 1)
            #expect(p.bytesDownloaded == cold.size(cold.release.tree + "/" + package))
        }
    }

    @Test("kill -9 of the daemon during a cold read: a new mount on the same cache resumes the partial parts; the image is right")
    func killDaemonAndResume() throws {
        let cold = try ColdRelease(variant: "jf-md5-gz")
        defer { cold.remove() }
        let fault = try FaultServer(root: cold.release.root)
        defer { fault.stop() }
        let partial = cold.cacheDir + "/partial"
        let mnt = try Harness.makeTempDir("mnt")
        defer { Harness.cleanUpMount(mnt) }
        // Every transfer stops after half the body: partial files fill up and stay.
        try Harness.check([Harness.jigdofs, "mount", "--server", "Base=\(fault.url)halfstall/tree/", "--cache-dir", cold.cacheDir,
                           cold.jigdo, mnt])
        try #require(Harness.isMounted(mnt))
        let daemons = Harness.pids(withArgument: mnt)
        try #require(daemons.count == 1)
        // (SIGKILL stops it: children of the test runner inherit its blocked signals.)
        let reader = try ServerProcess(shellCommand: "exec cat \(shellQuote(mnt + "/release.iso")) > /dev/null", stopSignal: SIGKILL)
        defer { reader.stop() }
        try Harness.waitUntil("a partial download holds bytes") { !nonEmptyFiles(under: partial).isEmpty }
        kill(daemons[0], SIGKILL)
        try Harness.waitUntil("the daemon is gone") { kill(daemons[0], 0) != 0 || Harness.isZombie(daemons[0]) }
        try Harness.waitUntil("the reader of the dead mount exits") { !reader.process.isRunning }
        #expect(reader.process.terminationStatus != 0)
        try Harness.check(["fusermount3", "-u", mnt])
        #expect(!Harness.isMounted(mnt))
        let left = nonEmptyFiles(under: partial)
        #expect(!left.isEmpty)
        #expect(regularFiles(under: cold.cacheDir + "/parts").isEmpty)
        #expect(cold.nginx.requests().isEmpty)

        let status = try Harness.withMount([cold.jigdo], options: cold.options) { mnt in
            try Harness.check(["cmp", mnt + "/release.iso", cold.iso])
            return try #require(StatusReport.of(mnt).images.first { $0.name == "release.iso" }).parts
        }
        let requests = cold.partRequests()
        // What was downloaded: every part, less what the partial files already held.
        let sizes = Set(requests.map(\.path)).reduce(Int64(0)) { $0 + cold.size(cold.release.tree + "/" + $1) }
        #expect(status.bytesDownloaded == sizes - left.values.reduce(0, +))
        #expect(status.partsMissing == 0 && status.transfersInFlight == 0)
        #expect(requests.filter { $0.status == 206 }.count == left.count, "\(left.count) partial files, requests: \(requests.filter { $0.status != 200 })")
        #expect(Set(requests.map(\.path)).count == requests.count)
        #expect(nonEmptyFiles(under: partial).isEmpty)
    }

    @Test("--offline over a cache holding some parts: cached and local parts read, a missing part is EIO, the daemon stays up")
    func offlineMount() throws {
        let cold = try ColdRelease()
        defer { cold.remove() }
        let packages = cold.packages()
        let cachedPackage = packages[1], localPackage = packages[packages.count / 2], missingPackage = packages[packages.count - 2]
        // Fill the cache with one part.
        _ = try Harness.withMount([cold.jigdo], options: cold.options) { mnt in
            try Harness.check(["cmp", mnt + "/release.iso.d/" + cachedPackage, cold.release.tree + "/" + cachedPackage])
        }
        #expect(cold.partRequests().map(\.path) == [cachedPackage])
        // One other package as a local file.
        let scan = cold.dir + "/scan"
        try FileManager.default.createDirectory(atPath: scan, withIntermediateDirectories: true)
        try copyTree(cold.release.tree + "/" + localPackage, to: scan + "/local")
        let before = cold.nginx.requests().count

        try Harness.withMount([cold.jigdo], options: cold.options + ["--offline", "--scan", scan]) { mnt in
            let view = mnt + "/release.iso.d/"
            try Harness.check(["cmp", view + cachedPackage, cold.release.tree + "/" + cachedPackage])
            try Harness.check(["cmp", view + localPackage, cold.release.tree + "/" + localPackage])
            let fd = open(view + missingPackage, O_RDONLY)
            try #require(fd >= 0)
            defer { close(fd) }
            switch preadFile(fd, at: 0, count: 4096) {
            case .success(let bytes): Issue.record("read of a missing part offline gave \(bytes.count) bytes")
            case .failure(let e): #expect(e.code == .EIO)
            }
            // Still up: the status answers and cached data still reads.
            #expect(Harness.isMounted(mnt))
            let p = try #require(StatusReport.of(mnt).images.first { $0.name == "release.iso" }).parts
            #expect(p.partsCached == 1 && p.partsLocal == 1 && p.partsMissing == p.partsTotal - 2)
            try Harness.check(["cmp", view + cachedPackage, cold.release.tree + "/" + cachedPackage])
            // Template data (the ISO's descriptors) reads offline too.
            try Harness.check(["cmp", "-n", "65536", mnt + "/release.iso", cold.iso])
        }
        #expect(cold.nginx.requests().count == before)
    }

    @Test("upgrade: a cold mount of N+1 with --scan-image N.iso reads N+1's ISO and downloads only the changed parts")
    func upgradeFromOldImage() throws {
        let release = try Fixtures.release()
        let work = try Harness.makeTempDir("upgrade")
        defer { removeTree(work) }
        let upgrade = try UpgradeRelease.make(from: release.root, in: work + "/release", keepTree: true)
        // The parts that differ from N: new or changed files of N+1's tree.
        let changed = Set(regularFiles(under: upgrade.tree).map { String($0.dropFirst(upgrade.tree.count + 1)) }.filter { rel in
            let old = release.tree + "/" + rel
            return !FileManager.default.fileExists(atPath: old) || !((try? filesEqual(old, upgrade.tree + "/" + rel)) ?? false)
        })
        #expect(changed.count >= 10 && changed.count < 60, "\(changed.count) changed")
        // N+1's .jigdo alone, so its own file:newtree/ server does not resolve.
        let jigdoDir = work + "/jigdo"
        try FileManager.default.createDirectory(atPath: jigdoDir, withIntermediateDirectories: true)
        try copyTree(upgrade.jigdo, to: jigdoDir + "/new.jigdo")
        try copyTree(upgrade.template, to: jigdoDir + "/new.template")
        let nginx = try Nginx(root: upgrade.dir)
        defer { nginx.stop() }
        let options = ["--scan-image", release.iso, "--server", "Base=\(nginx.url)newtree/", "--cache-dir", work + "/cache"]
        _ = try Harness.withMount([jigdoDir + "/new.jigdo"], options: options) { mnt in
            try Harness.check(["cmp", mnt + "/new.iso", upgrade.iso])
        }
        let requests = nginx.requests()
        #expect(requests.allSatisfy { $0.status == 200 && $0.path.hasPrefix("/newtree/") }, "\(requests)")
        let fetched = requests.map { String($0.path.dropFirst("/newtree/".count)) }
        #expect(fetched.count == Set(fetched).count, "fetched more than once: \(fetched)")
        #expect(Set(fetched) == changed, "fetched but unchanged: \(Set(fetched).subtracting(changed)); changed, not fetched: \(changed.subtracting(fetched))")
    }

    @Test("a mirror serving wrong bytes: the mount falls back to the next (--mirror), never serves them, and status counts the failures")
    func wrongBytesMirrorFallsBack() throws {
        let cold = try ColdRelease(variant: "jf-md5-bz2")
        defer { cold.remove() }
        let fault = try FaultServer(root: cold.release.root)
        defer { fault.stop() }
        let parts = try cold.distinctParts()
        let options = ["--server", "Base=\(fault.url)wrong/tree/", "--mirror", "Base=\(cold.nginx.url)tree/", "--cache-dir", cold.cacheDir]
        let status = try Harness.withMount([cold.jigdo], options: options) { mnt in
            try Harness.check(["cmp", mnt + "/release.iso", cold.iso])
            return try #require(StatusReport.of(mnt).images.first { $0.name == "release.iso" }).parts
        }
        let asked = fault.requests()
        #expect(!asked.isEmpty && asked.allSatisfy { $0.mode == "wrong" })
        let paths = cold.partRequests().map(\.path)
        #expect(paths.count == parts && Set(paths).count == parts)
        #expect(status.partsCached == parts && status.partsMissing == 0)
        #expect(status.failuresByMirror["http://127.0.0.1:\(fault.port)"] == asked.count, "\(status.failuresByMirror), \(asked.count) asked")
        #expect(status.failuresByMirror["http://127.0.0.1:\(cold.nginx.port)"] == nil)
    }

    @Test("one 1 MiB read over many small parts on a cold cache: right bytes, each part it covers fetched once")
    func oneLargeReadOverManyParts() throws {
        let cold = try ColdRelease()
        defer { cold.remove() }
        try Harness.withMount([cold.jigdo], options: cold.options) { mnt in
            let fd = open(mnt + "/release.iso", O_RDONLY)
            try #require(fd >= 0)
            defer { close(fd) }
            let original = open(cold.iso, O_RDONLY)
            try #require(original >= 0)
            defer { close(original) }
            let size = cold.size(cold.iso)
            let offset = size / 3
            let count = Int(min(1 << 20, size - offset))
            switch (preadFile(fd, at: offset, count: count), preadFile(original, at: offset, count: count)) {
            case (.success(let got), .success(let want)):
                #expect(got.count == count && bytesEqual(got, want[...]), "wrong bytes at \(offset)+\(count)")
            case (.failure(let e), _), (_, .failure(let e)):
                Issue.record("read at \(offset)+\(count): \(e)")
            }
            let requests = cold.partRequests()
            #expect(requests.count >= 4, "\(requests.count) parts fetched for 1 MiB of small parts")
            #expect(requests.allSatisfy { $0.status == 200 }, "\(requests.filter { $0.status != 200 })")
            #expect(Set(requests.map(\.path)).count == requests.count, "a part was fetched twice")
        }
    }
}
