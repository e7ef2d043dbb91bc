import Dispatch
import Foundation
import ImageAssembly
import JigdoFormat
import Logging
import PartSources
import Synchronization
import TestSupport
import Testing

/// Collects log messages so tests can check what was reported.
final class LogCapture: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ s: String) { lock.lock(); lines.append(s); lock.unlock() }
    var messages: [String] { lock.lock(); defer { lock.unlock() }; return lines }

    var logger: Logger {
        Logger(label: "test") { _ in CapturingHandler(capture: self) }
    }

    struct CapturingHandler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String, function: String, line: UInt) {
            capture.append("\(level): \(message)")
        }
    }
}

/// Short timeouts and retry delays so failure paths run quickly.
func fastConfig() -> DownloadConfig {
    var c = DownloadConfig()
    c.jobs = 8
    c.connectTimeout = 3
    c.lowSpeedLimit = 1000
    c.lowSpeedTime = 1
    c.attemptsPerLocation = 2
    c.retryDelay = 0.01
    return c
}

/// An image opened with a cold (or given) cache, downloading from `servers` (which replace
/// the .jigdo's `Base` label).
struct Opened {
    let release: String
    let image: JigdoImage
    let cache: PartCache
    let downloader: HTTPDownloader
    let store: PartPipeline
    let reader: ImageReader

    init(variant: String = "jf-sha256-gz", servers: [String], mirrors: [String] = [], cacheDir: String,
         config: DownloadConfig = fastConfig(), offline: Bool = false, cacheSize: Int64? = nil,
         map: String? = nil, logger: Logger = Logger(label: "test")) throws {
        release = try DownloadFixture.release()
        image = try JigdoImage.open(jigdoPath: "\(release)/\(variant)/release.jigdo")
        var resolver = LocationResolver(descriptor: image.descriptor)
        resolver.replace["Base"] = servers.map { JigdoLocation(value: $0, base: $0) }
        if !mirrors.isEmpty { resolver.append["Base"] = mirrors.map { JigdoLocation(value: $0, base: $0) } }
        // As --map Base=DIR: a local copy tried before the servers.
        if let map { resolver.prepend["Base"] = [JigdoLocation(value: "file:" + map + "/", base: map + "/")] }
        cache = try PartCache(directory: cacheDir, sizeLimit: cacheSize, logger: logger)
        downloader = try HTTPDownloader(config: config)
        let local = try LocalParts(template: image.template, resolver: resolver, scanDirectories: [])
        var options = PartPipeline.Options()
        options.offline = offline
        store = PartPipeline(template: image.template, resolver: resolver, local: local, cache: cache,
                          downloader: downloader, options: options, logger: logger)
        reader = ImageReader(template: TemplateDataReader(file: image.templateFile, info: image.template), parts: store)
    }

    var iso: String { release + "/release.iso" }

    /// Distinct checksums of the parts with bytes (what a cold full read must download).
    var distinctParts: Int { Set(image.template.parts.filter { $0.length > 0 }.map(\.checksum)).count }

    /// Image offset and length of the first `n` part areas.
    func partAreas(_ n: Int) -> [(offset: Int64, length: Int64, part: Int)] {
        var out: [(Int64, Int64, Int)] = []
        for e in image.template.layout {
            if case .part(let p) = e.source, e.length > 0 { out.append((e.imageOffset, e.length, p)) }
            if out.count == n { break }
        }
        return out
    }
}

/// Reads the whole image in one pass and compares it with the original ISO.
func readAllAndCompare(_ reader: ImageReader, iso: String, chunk: Int = 1 << 20) throws -> Bool {
    let original = try ReadOnlyFile(path: iso)
    guard original.size == reader.size else { return false }
    var offset: Int64 = 0
    while offset < reader.size {
        let n = Int(min(Int64(chunk), reader.size - offset))
        if try reader.read(at: offset, count: n) != original.read(at: offset, count: n) { return false }
        offset += Int64(n)
    }
    return true
}

/// Every file in the cache's parts/ has the checksum it is named after.
func cacheIsClean(_ cacheDir: String, kind: ChecksumKind) throws -> Bool {
    let dir = cacheDir + "/parts/" + kind.rawValue.lowercased()
    guard let e = FileManager.default.enumerator(atPath: dir) else { return true }
    while let rel = e.nextObject() as? String {
        let path = dir + "/" + rel
        guard !isDirectory(path) else { continue }
        if try ReadOnlyFile(path: path).checksum(kind).base64 != baseName(rel) { return false }
    }
    return true
}

@Suite("Downloads from a real nginx and a misbehaving server", .serialized)
struct DownloadTests {
    @Test("cold cache, 16 concurrent readers: image equals the ISO, each part fetched exactly once")
    func concurrentColdRead() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let tmp = try TempDir()
        let o = try Opened(servers: [nginx.url + "tree/"], cacheDir: tmp.path + "/cache")
        defer { o.downloader.shutdown() }
        let original = try ReadOnlyFile(path: o.iso)
        let size = o.reader.size
        let mismatches = Mutex(0)
        let errors = Mutex<[String]>([])
        let group = DispatchGroup()
        for t in 0..<16 {
            group.enter()
            let thread = Thread {
                defer { group.leave() }
                // Each reader starts elsewhere, with its own unaligned chunk size, and wraps around.
                let chunk = Int64(65_536 + t * 4_099)
                let start = size * Int64(t) / 16
                var done: Int64 = 0
                while done < size {
                    let offset = (start + done) % size
                    let n = Int(min(chunk, size - offset))
                    do {
                        if try o.reader.read(at: offset, count: n) != original.read(at: offset, count: n) {
                            mismatches.withLock { $0 += 1 }
                        }
                    } catch {
                        errors.withLock { $0.append("\(error)") }
                        return
                    }
                    done += Int64(n)
                }
            }
            thread.start()
        }
        group.wait()
        #expect(errors.withLock { $0 } == [])
        #expect(mismatches.withLock { $0 } == 0)
        let requests = nginx.requests()
        #expect(requests.allSatisfy { $0.status == 200 })
        var perPath: [String: Int] = [:]
        for r in requests { perPath[r.path, default: 0] += 1 }
        #expect(perPath.values.allSatisfy { $0 == 1 }, "fetched more than once: \(perPath.filter { $0.value > 1 })")
        #expect(requests.count == o.distinctParts)
        #expect(try cacheIsClean(tmp.path + "/cache", kind: .sha256))
        let a = o.store.availability()
        #expect(a.total == o.distinctParts && a.cached == a.total && a.missing == 0)
        #expect(o.store.statistics().partsDownloaded == o.distinctParts)
    }

    @Test("a failing first mirror falls back to the second; wrong bytes are never served",
          arguments: ["404", "500", "wrong", "long", "reset", "truncate", "norange"])
    func fallback(mode: String) throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let fault = try FaultServer(root: release)
        defer { fault.stop() }
        let tmp = try TempDir()
        let log = LogCapture()
        let o = try Opened(variant: "jf-md5-bz2", servers: ["\(fault.url)\(mode)/tree/", nginx.url + "tree/"],
                           cacheDir: tmp.path + "/cache", logger: log.logger)
        defer { o.downloader.shutdown() }
        #expect(try readAllAndCompare(o.reader, iso: o.iso))
        let faulty = fault.requests()
        #expect(!faulty.isEmpty)
        #expect(faulty.allSatisfy { $0.mode == mode })
        #expect(try cacheIsClean(tmp.path + "/cache", kind: .md5))
        switch mode {
        case "norange":
            // A good mirror of the same weight as nginx: the two share the parts (several
            // mirrors are used at once), each part fetched once from one of them.
            #expect(nginx.requests().count + faulty.count == o.distinctParts, "\(nginx.requests().count) + \(faulty.count)")
            #expect(!nginx.requests().isEmpty)
        default:
            // Every part came from nginx in the end, once each.
            #expect(nginx.requests().count == o.distinctParts)
        }
        if mode == "404" {
            // A mirror that keeps failing is tried last for a while, not for every part.
            #expect(faulty.count < o.distinctParts / 2)
        }
        if mode == "wrong" {
            #expect(log.messages.contains { $0.contains("\(fault.url)wrong/tree/") && $0.contains("wrong bytes") })
        }
    }

    @Test("a mirror redirector's answer is remembered instead of being asked for every part")
    func redirector() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let fault = try FaultServer(root: release)
        defer { fault.stop() }
        let tmp = try TempDir()
        var config = fastConfig()
        config.jobs = 1
        let o = try Opened(servers: ["\(fault.url)redirect/\(nginx.port)/tree/"], cacheDir: tmp.path + "/cache", config: config)
        defer { o.downloader.shutdown() }
        #expect(try readAllAndCompare(o.reader, iso: o.iso))
        #expect(nginx.requests().count == o.distinctParts)
        let asked = fault.requests().filter { $0.mode == "redirect" }.count
        // A read's missing parts are started together, before the redirector's answer is
        // known: those of the first read (1 MiB) may each ask it; every later one uses the answer.
        let template = o.image.template
        let firstRead = Set(template.layout.compactMap { e -> Checksum? in
            guard e.imageOffset < 1 << 20, case .part(let p) = e.source, e.length > 0 else { return nil }
            return template.parts[p].checksum
        }).count
        #expect(asked >= 1 && asked <= max(firstRead, 4), "\(asked) asked, \(firstRead) parts in the first read")
        #expect(asked < o.distinctParts / 4, "\(asked) asked of \(o.distinctParts) parts")
    }

    @Test("a full cache disk (ENOSPC) costs caching, not correctness", .enabled(if: getuid() == 0, "needs root to mount a small tmpfs"))
    func fullCacheDisk() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let tmp = try TempDir()
        let small = tmp.path + "/small"
        try FileManager.default.createDirectory(atPath: small, withIntermediateDirectories: true)
        let mounted = try runProcess("/bin/mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", small])
        try #require(mounted.status == 0, "\(mounted.stderr)")
        defer { _ = try? runProcess("/bin/umount", [small]) }
        let log = LogCapture()
        let o = try Opened(servers: [nginx.url + "tree/"], cacheDir: small + "/cache", logger: log.logger)
        defer { o.downloader.shutdown() }
        #expect(try readAllAndCompare(o.reader, iso: o.iso))
        #expect(log.messages.contains { $0.contains("cache disk full") })
        #expect(regularFilesCount(small + "/cache/partial") <= 1)
        #expect(try cacheIsClean(small + "/cache", kind: .sha256))
    }

    @Test("--cache-size: the cache stays within its bound and the image is still right")
    func boundedCache() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let tmp = try TempDir()
        let limit: Int64 = 6 << 20
        let o = try Opened(servers: [nginx.url + "tree/"], cacheDir: tmp.path + "/cache", cacheSize: limit)
        defer { o.downloader.shutdown() }
        #expect(o.reader.size > 2 * limit)
        #expect(try readAllAndCompare(o.reader, iso: o.iso))
        let cached = o.cache.entries().reduce(Int64(0)) { $0 + $1.size }
        #expect(cached > 0 && cached <= limit)
    }

    @Test("a stalled mirror times out and the next one is used")
    func stalledMirror() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let fault = try FaultServer(root: release)
        defer { fault.stop() }
        let tmp = try TempDir()
        var config = fastConfig()
        config.attemptsPerLocation = 1
        let o = try Opened(servers: [fault.url + "stall/tree/", nginx.url + "tree/"], cacheDir: tmp.path + "/cache", config: config)
        defer { o.downloader.shutdown() }
        let original = try ReadOnlyFile(path: o.iso)
        let areas = o.partAreas(3)
        for a in areas {
            #expect(try o.reader.read(at: a.offset, count: Int(a.length)) == original.read(at: a.offset, count: Int(a.length)))
        }
        // Asked once: a stall demotes the mirror at once (issue 10), so the other parts go to
        // nginx first instead of each waiting for the low-speed timeout.
        #expect(fault.requests().filter { $0.mode == "stall" }.count == 1)
        #expect(nginx.requests().count >= areas.count)
    }

    @Test("a truncated download is resumed with a range request; a partial file left by a killed process too")
    func resume() throws {
        let release = try DownloadFixture.release()
        let fault = try FaultServer(root: release)
        defer { fault.stop() }
        let tmp = try TempDir()
        var o: Opened? = try Opened(servers: [fault.url + "truncate-once/tree/"], cacheDir: tmp.path + "/cache")
        let original = try ReadOnlyFile(path: o!.iso)
        let areas = o!.partAreas(4).filter { $0.length >= 2048 }
        let first = try #require(areas.first)
        #expect(try o!.reader.read(at: first.offset, count: Int(first.length)) == original.read(at: first.offset, count: Int(first.length)))
        let asked = fault.requests()
        #expect(asked.count == 2)
        #expect(asked.first?.range == "-")
        #expect(asked.last?.range == "bytes=\(first.length / 2)-")
        o!.downloader.shutdown()
        o = nil

        // A new process finds a partial file of another part and asks only for the rest.
        let second = try #require(areas.dropFirst().first)
        let fresh = try Opened(servers: [fault.url + "ok/tree/"], cacheDir: tmp.path + "/cache")
        defer { fresh.downloader.shutdown() }
        let sum = fresh.image.template.parts[second.part].checksum
        let half = Int(second.length / 3)
        try Data(original.read(at: second.offset, count: half)).write(to: URL(fileURLWithPath: fresh.cache.partialPath(for: sum)))
        let before = fault.requests().count
        #expect(try fresh.reader.read(at: second.offset, count: Int(second.length)) == original.read(at: second.offset, count: Int(second.length)))
        let after = Array(fault.requests().dropFirst(before))
        #expect(after.count == 1)
        #expect(after.first?.range == "bytes=\(half)-")
        #expect(!fileExists(fresh.cache.partialPath(for: sum)))
        #expect(fresh.cache.contains(sum, length: second.length))
    }

    @Test("when every location fails the read fails naming each URL, and a later read tries again")
    func allLocationsFail() throws {
        let release = try DownloadFixture.release()
        let fault = try FaultServer(root: release)
        defer { fault.stop() }
        let tmp = try TempDir()
        var config = fastConfig()
        config.attemptsPerLocation = 1
        let o = try Opened(servers: [fault.url + "404/tree/", fault.url + "500/tree/"], cacheDir: tmp.path + "/cache", config: config)
        defer { o.downloader.shutdown() }
        let area = try #require(o.partAreas(1).first)
        do {
            _ = try o.reader.read(at: area.offset, count: 100)
            Issue.record("read of an unavailable part succeeded")
        } catch let e as JigdoError {
            #expect(e.kind == .partUnavailable)
            #expect(e.description.contains(o.image.template.parts[area.part].checksum.base64))
            #expect(e.description.contains("\(fault.url)404/tree/") && e.description.contains("HTTP status 404"))
            #expect(e.description.contains("\(fault.url)500/tree/") && e.description.contains("HTTP status 500"))
        }
        let count = fault.requests().count
        #expect(count >= 2)
        #expect(throws: JigdoError.self) { try o.reader.read(at: area.offset, count: 100) }
        #expect(fault.requests().count > count)
    }

    @Test("offline: template data and cached parts are served, only missing parts fail")
    func offline() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let tmp = try TempDir()
        let online = try Opened(servers: [nginx.url + "tree/"], cacheDir: tmp.path + "/cache")
        let areas = online.partAreas(2)
        _ = try online.reader.read(at: areas[0].offset, count: Int(areas[0].length))
        online.downloader.shutdown()
        let requestsBefore = nginx.requests().count

        let o = try Opened(servers: [nginx.url + "tree/"], cacheDir: tmp.path + "/cache", offline: true)
        defer { o.downloader.shutdown() }
        let original = try ReadOnlyFile(path: o.iso)
        // The first 32 KiB of an ISO are system area and descriptors: template data.
        #expect(try o.reader.read(at: 0, count: 32_768) == original.read(at: 0, count: 32_768))
        #expect(try o.reader.read(at: areas[0].offset, count: Int(areas[0].length)) == original.read(at: areas[0].offset, count: Int(areas[0].length)))
        #expect(o.store.isLocallyAvailable(areas[0].part))
        #expect(!o.store.isLocallyAvailable(areas[1].part))
        do {
            _ = try o.reader.read(at: areas[1].offset, count: 10)
            Issue.record("offline read of a missing part succeeded")
        } catch let e as JigdoError {
            #expect(e.kind == .partUnavailable)
            #expect(e.description.contains("--offline"))
        }
        #expect(nginx.requests().count == requestsBefore)
    }

    // MARK: the command line

    @Test("make-image with a cold cache, --server, then --offline from the cache")
    func makeImageCLI() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let tmp = try TempDir()
        let jigdo = release + "/jf-md5-gz/release.jigdo"
        let common = ["--cache-dir", tmp.path + "/cache", "--server", "Base=\(nginx.url)tree/"]

        // Offline with a cold cache: refused, missing parts listed, nothing written.
        let refused = try runProcess(DownloadFixture.binary, ["make-image", jigdo, "-o", tmp.path + "/a.iso", "--offline"] + common)
        #expect(refused.status == 2)
        #expect(refused.stderr.contains("not in the cache"))
        #expect(!fileExists(tmp.path + "/a.iso"))
        #expect(nginx.requests().isEmpty)

        let made = try runProcess(DownloadFixture.binary, ["make-image", jigdo, "-o", tmp.path + "/a.iso", "--jobs", "4"] + common)
        #expect(made.status == 0, "\(made.stderr)")
        #expect(try filesEqual(tmp.path + "/a.iso", release + "/release.iso"))
        let fetched = nginx.requests()
        #expect(Set(fetched.map(\.path)).count == fetched.count)
        #expect(fetched.allSatisfy { $0.path.hasPrefix("/tree/") })

        let listed = try runProcess(DownloadFixture.binary, ["cache", "list", "--cache-dir", tmp.path + "/cache"])
        #expect(listed.status == 0)
        #expect(listed.stdout.contains("parts:    \(fetched.count) "))

        let again = try runProcess(DownloadFixture.binary, ["make-image", jigdo, "-o", tmp.path + "/b.iso", "--offline"] + common)
        #expect(again.status == 0, "\(again.stderr)")
        #expect(try filesEqual(tmp.path + "/b.iso", release + "/release.iso"))
        #expect(nginx.requests().count == fetched.count)

        let cleaned = try runProcess(DownloadFixture.binary, ["cache", "clean", "--cache-dir", tmp.path + "/cache"])
        #expect(cleaned.status == 0)
        #expect(regularFilesCount(tmp.path + "/cache/parts") == 0)
        let refusedAgain = try runProcess(DownloadFixture.binary, ["make-image", jigdo, "-o", tmp.path + "/c.iso", "--offline"] + common)
        #expect(refusedAgain.status == 2)
    }

    @Test("prefetch fills the cache; then make-image --offline works and a second prefetch fetches nothing")
    func prefetchCLI() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let tmp = try TempDir()
        let jigdo = release + "/jte-md5-gz/release.jigdo"
        let common = ["--cache-dir", tmp.path + "/cache", "--server", "Base=\(nginx.url)tree/"]
        let first = try runProcess(DownloadFixture.binary, ["prefetch", jigdo] + common)
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.range(of: #"(\d+) of \1 parts available"#, options: .regularExpression) != nil, "\(first.stdout)")
        let fetched = nginx.requests().count
        #expect(fetched > 0)
        // Every distinct part with bytes, once each.
        let parts = try TemplateInfo.read(path: release + "/jte-md5-gz/release.template").parts.filter { $0.length > 0 }
        #expect(fetched == Set(parts.map(\.checksum)).count, "\(fetched) requests")
        #expect(nginx.requests().allSatisfy { $0.status == 200 })
        let made = try runProcess(DownloadFixture.binary, ["make-image", jigdo, "-o", tmp.path + "/a.iso", "--offline"] + common)
        #expect(made.status == 0, "\(made.stderr)")
        #expect(try filesEqual(tmp.path + "/a.iso", release + "/jte-md5-gz/release.iso"))
        let second = try runProcess(DownloadFixture.binary, ["prefetch", jigdo] + common)
        #expect(second.status == 0, "\(second.stderr)")
        #expect(nginx.requests().count == fetched)
    }

    @Test("kill -9 in the middle of downloads: the next run resumes the partial files and the image is right")
    func killAndResume() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let fault = try FaultServer(root: release)
        defer { fault.stop() }
        let tmp = try TempDir()
        let jigdo = release + "/jf-md5-gz/release.jigdo"
        let cacheDir = tmp.path + "/cache"
        let partialDir = cacheDir + "/partial/md5"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: DownloadFixture.binary)
        p.arguments = ["prefetch", jigdo, "--cache-dir", cacheDir, "--jobs", "4", "--server", "Base=\(fault.url)halfstall/tree/"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        // Wait (bounded) until several partial files hold bytes, then kill the process hard.
        func partials() -> [String: Int64] {
            var out: [String: Int64] = [:]
            for name in (try? FileManager.default.contentsOfDirectory(atPath: partialDir)) ?? [] {
                let size = ((try? FileManager.default.attributesOfItem(atPath: partialDir + "/" + name))?[.size] as? Int64) ?? 0
                if size > 0 { out[name] = size }
            }
            return out
        }
        var waited = 0
        while partials().count < 4 && waited < 3000 && p.isRunning {
            usleep(10_000)
            waited += 1
        }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let left = partials()
        #expect(left.count >= 4)
        #expect(regularFilesCount(cacheDir + "/parts") == 0)

        let resumed = try runProcess(DownloadFixture.binary, ["prefetch", jigdo, "--cache-dir", cacheDir, "--server", "Base=\(nginx.url)tree/"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let ranged = nginx.requests().filter { $0.status == 206 }
        #expect(ranged.count == left.count)
        #expect(partials().isEmpty)
        let made = try runProcess(DownloadFixture.binary, ["make-image", jigdo, "-o", tmp.path + "/a.iso", "--offline", "--cache-dir", cacheDir, "--server", "Base=\(nginx.url)tree/"])
        #expect(made.status == 0, "\(made.stderr)")
        #expect(try filesEqual(tmp.path + "/a.iso", release + "/release.iso"))
    }

    @Test("two processes sharing a cache dir: both images right, each part fetched once in all")
    func sharedCache() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let tmp = try TempDir()
        let jigdo = release + "/jf-sha256-bz2/release.jigdo"
        var procs: [Process] = []
        for name in ["a", "b"] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: DownloadFixture.binary)
            p.arguments = ["make-image", jigdo, "-o", tmp.path + "/\(name).iso", "--cache-dir", tmp.path + "/cache",
                           "--server", "Base=\(nginx.url)tree/"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            procs.append(p)
        }
        for p in procs {
            p.waitUntilExit()
            #expect(p.terminationStatus == 0)
        }
        #expect(try filesEqual(tmp.path + "/a.iso", release + "/release.iso"))
        #expect(try filesEqual(tmp.path + "/b.iso", release + "/release.iso"))
        let paths = nginx.requests().map(\.path)
        #expect(Set(paths).count == paths.count)
        #expect(regularFilesCount(tmp.path + "/cache/partial") == 0)
    }

    @Test("--mirror is tried after a failing --server")
    func mirrorOption() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let fault = try FaultServer(root: release)
        defer { fault.stop() }
        let tmp = try TempDir()
        let r = try runProcess(DownloadFixture.binary, [
            "verify", release + "/jte-sha256-bz2/release.jigdo", "--cache-dir", tmp.path + "/cache",
            "--server", "Base=\(fault.url)404/tree/", "--mirror", "Base=\(nginx.url)tree/",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        let kind = try TemplateInfo.read(ReadOnlyFile(path: release + "/jte-sha256-bz2/release.template")).checksumKind
        let isoSum = try ReadOnlyFile(path: release + "/jte-sha256-bz2/release.iso").checksum(kind).hex
        #expect(r.stdout.contains(": OK (\(kind.rawValue) \(isoSum), "), "\(r.stdout)")
        #expect(!fault.requests().isEmpty)
        #expect(!nginx.requests().isEmpty)
    }

    @Test("an https SOURCE from a mirror with a private certificate: refused without --cacert, right with it")
    func httpsSource() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release, tls: true)
        defer { nginx.stop() }
        let tmp = try TempDir()
        let url = nginx.url + "jte-sha256-bz2/release.jigdo"
        let args = ["make-image", url, "-o", tmp.path + "/a.iso", "--cache-dir", tmp.path + "/cache", "--server", "Base=\(nginx.url)tree/"]
        let untrusted = try runProcess(DownloadFixture.binary, args)
        #expect(untrusted.status != 0)
        #expect(untrusted.stderr.contains(url))
        #expect(!fileExists(tmp.path + "/a.iso"))
        let made = try runProcess(DownloadFixture.binary, args + ["--cacert", nginx.certificatePath])
        #expect(made.status == 0, "\(made.stderr)")
        #expect(try filesEqual(tmp.path + "/a.iso", release + "/jte-sha256-bz2/release.iso"))
    }

    @Test("an http SOURCE: .jigdo and template fetched, its file: servers ignored")
    func httpSource() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let tmp = try TempDir()
        let url = nginx.url + "jf-sha256-gz/release.jigdo"
        // The .jigdo's own server is file:../tree/: a remote .jigdo must not read local files.
        let noServer = try runProcess(DownloadFixture.binary, ["make-image", url, "-o", tmp.path + "/a.iso", "--cache-dir", tmp.path + "/cache"])
        #expect(noServer.status == 2, "\(noServer.stderr)")
        #expect(noServer.stderr.contains("no download location"))
        #expect(!fileExists(tmp.path + "/a.iso"))

        let made = try runProcess(DownloadFixture.binary, [
            "make-image", url, "-o", tmp.path + "/a.iso", "--cache-dir", tmp.path + "/cache", "--server", "Base=\(nginx.url)tree/",
        ])
        #expect(made.status == 0, "\(made.stderr)")
        #expect(try filesEqual(tmp.path + "/a.iso", release + "/release.iso"))
        let paths = nginx.requests().map(\.path)
        #expect(paths.contains("/jf-sha256-gz/release.jigdo"))
        #expect(paths.contains("/jf-sha256-gz/release.template"))
    }
}
