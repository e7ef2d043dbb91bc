import Foundation
import ImageAssembly
import JigdoFormat
import PartSources
import Synchronization
import TestSupport
import Testing

// The part pipeline's safety properties: nothing this process has not verified is served, the
// cache is never followed through a planted symlink, an unwritable cache costs only caching,
// a response that breaks HTTP costs only its own mirror, and fetches are bounded.

/// Flips one byte of a file in place (as bit rot or tampering would).
func flipByte(_ path: String, at offset: Int64) throws {
    let fd = open(path, O_RDWR)
    guard fd >= 0 else { throw DownloadTestError("open \(path): \(errnoText(errno))") }
    defer { close(fd) }
    var b: UInt8 = 0
    guard pread(fd, &b, 1, off_t(offset)) == 1 else { throw DownloadTestError("pread \(path)") }
    b ^= 0xFF
    guard pwrite(fd, &b, 1, off_t(offset)) == 1 else { throw DownloadTestError("pwrite \(path)") }
}

func fileBytes(_ path: String) throws -> [UInt8] {
    try ReadOnlyFile(path: path).readAll()
}

@Suite("Part pipeline: verification, cache hygiene, connections, bounds", .serialized)
struct PipelineSafetyTests {
    @Test("a byte flipped in a cached part is never served: the next process checks it, removes it and fetches the part again")
    func flippedCachedPart() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let tmp = try TempDir()
        let first = try Opened(servers: [nginx.url + "tree/"], cacheDir: tmp.path + "/cache")
        let area = try #require(first.partAreas(8).last)
        let original = try ReadOnlyFile(path: first.iso).read(at: area.offset, count: Int(area.length))
        #expect(try first.reader.read(at: area.offset, count: Int(area.length)) == original)
        first.downloader.shutdown()
        #expect(nginx.requests().count == 1)
        let sum = first.image.template.parts[area.part].checksum
        let cached = first.cache.path(for: sum)
        try flipByte(cached, at: area.length / 2)

        let log = LogCapture()
        let second = try Opened(servers: [nginx.url + "tree/"], cacheDir: tmp.path + "/cache", logger: log.logger)
        defer { second.downloader.shutdown() }
        #expect(try second.reader.read(at: area.offset, count: Int(area.length)) == original)
        #expect(nginx.requests().count == 2, "the damaged part is fetched again")
        #expect(try ReadOnlyFile(path: cached).checksum(.sha256) == sum)
        #expect(log.messages.contains { $0.contains("does not match its checksum") })

        // Damaged while this process holds it open (after its check): seen, not served.
        try flipByte(cached, at: 1)
        #expect(try second.reader.read(at: area.offset, count: Int(area.length)) == original)
        #expect(nginx.requests().count == 3)
    }

    @Test("a --map file rewritten after its check (same size, other bytes) is never served; the next source serves the part")
    func rewrittenMapFile() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let tmp = try TempDir()
        let mirror = tmp.path + "/mirror"
        try copyTree(release + "/tree", to: mirror)
        let o = try Opened(servers: [nginx.url + "tree/"], cacheDir: tmp.path + "/cache", map: mirror)
        defer { o.downloader.shutdown() }
        let areas = o.partAreas(12).filter { $0.length >= 4096 }
        let area = try #require(areas.last)
        let original = try ReadOnlyFile(path: o.iso).read(at: area.offset, count: Int(area.length))
        #expect(try o.reader.read(at: area.offset, count: Int(area.length)) == original)
        #expect(nginx.requests().isEmpty, "read from the mapped copy")

        // Which file of the mirror holds that part: the one with its bytes.
        let files = regularFiles(under: mirror).filter { (try? fileBytes($0)) == original }
        let file = try #require(files.first)
        try flipByte(file, at: 100)
        let read = try o.reader.read(at: area.offset, count: Int(area.length))
        #expect(read == original, "the rewritten local file was served")
        #expect(nginx.requests().count == 1, "the part came from the server instead")
    }

    @Test("a symlink planted in partial/ or parts/ is never followed: its target stays as it was, the part is right")
    func plantedSymlinks() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let tmp = try TempDir()
        let cacheDir = tmp.path + "/cache"
        let o = try Opened(servers: [nginx.url + "tree/"], cacheDir: cacheDir)
        defer { o.downloader.shutdown() }
        let areas = o.partAreas(10).filter { $0.length >= 2048 }
        try #require(areas.count >= 2)
        let original = try ReadOnlyFile(path: o.iso)

        // partial/: a link to a precious file; a download must not append to it.
        let precious = tmp.path + "/precious"
        try Data("precious content\n".utf8).write(to: URL(fileURLWithPath: precious))
        let a = areas[0]
        let partial = o.cache.partialPath(for: o.image.template.parts[a.part].checksum)
        #expect(symlink(precious, partial) == 0)
        #expect(try o.reader.read(at: a.offset, count: Int(a.length)) == original.read(at: a.offset, count: Int(a.length)))
        #expect(try fileBytes(precious) == Array("precious content\n".utf8))

        // parts/: a link to a file of the part's size holding other bytes; never served.
        let b = areas[1]
        let sum = o.image.template.parts[b.part].checksum
        let decoy = tmp.path + "/decoy"
        let junk = [UInt8](repeating: 0x41, count: Int(b.length))
        try Data(junk).write(to: URL(fileURLWithPath: decoy))
        let target = o.cache.path(for: sum)
        try FileManager.default.createDirectory(atPath: directoryOf(target), withIntermediateDirectories: true)
        #expect(symlink(decoy, target) == 0)
        #expect(!o.cache.contains(sum, length: b.length))
        #expect(try o.reader.read(at: b.offset, count: Int(b.length)) == original.read(at: b.offset, count: Int(b.length)))
        #expect(try fileBytes(decoy) == junk)
        var st = stat()
        #expect(lstat(target, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG, "the download replaced the link")
    }

    @Test("a transfer given the locked file's descriptor writes through it: a file put at its name meanwhile is never written")
    func writesThroughTheLockedDescriptor() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let tmp = try TempDir()
        let downloader = try HTTPDownloader(config: fastConfig())
        defer { downloader.shutdown() }
        let expected = try fileBytes(release + "/jf-md5-gz/release.jigdo")
        // The pipeline's lock: an open descriptor of the partial file, whose name then points
        // at another file (removed and made again by someone else).
        let name = tmp.path + "/partial"
        let fd = open(name, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        defer { close(fd) }
        #expect(unlink(name) == 0)
        let other = Array("another file at the same name\n".utf8)
        try Data(other).write(to: URL(fileURLWithPath: name))

        var request = TransferRequest(url: nginx.url + "jf-md5-gz/release.jigdo", path: name)
        request.descriptor = fd
        request.maxLength = Int64(expected.count)
        let done = DispatchSemaphore(value: 0)
        let outcome = Mutex<Result<TransferSummary, TransferError>?>(nil)
        downloader.submit(request) { result in
            outcome.withLock { $0 = result }
            done.signal()
        }
        try #require(done.wait(timeout: .now() + 60) == .success, "the transfer did not end within 60 s")
        let summary = try outcome.withLock { $0 }!.get()
        #expect(summary.received == Int64(expected.count))
        var st = stat()
        #expect(fstat(fd, &st) == 0 && st.st_size == off_t(expected.count))
        var written = [UInt8](repeating: 0, count: expected.count)
        #expect(pread(fd, &written, expected.count, 0) == expected.count)
        let intoLocked = written == expected, nameUntouched = try fileBytes(name) == other
        #expect(intoLocked, "the body went to the locked file")
        #expect(nameUntouched, "the file at the name was not written")
    }

    @Test("a read-only cache directory: every read right (parts kept in memory), one warning", .enabled(if: getuid() == 0, "needs root to mount a read-only tmpfs"))
    func readOnlyCache() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let tmp = try TempDir()
        let ro = tmp.path + "/ro"
        try FileManager.default.createDirectory(atPath: ro, withIntermediateDirectories: true)
        // mode=0755: tmpfs's default root (1777, writable by others) is refused as a cache dir.
        let mounted = try runProcess("/bin/mount", ["-t", "tmpfs", "-o", "ro,size=1m,mode=0755", "tmpfs", ro])
        try #require(mounted.status == 0, "\(mounted.stderr)")
        defer { _ = try? runProcess("/bin/umount", [ro]) }
        let log = LogCapture()
        let o = try Opened(servers: [nginx.url + "tree/"], cacheDir: ro, logger: log.logger)
        defer { o.downloader.shutdown() }
        #expect(!o.cache.isWritable)
        #expect(try readAllAndCompare(o.reader, iso: o.iso))
        #expect(log.messages.filter { $0.contains("cannot be written") }.count == 1, "\(log.messages.filter { $0.hasPrefix("warning") })")
        #expect(regularFilesCount(ro) == 0)
    }

    @Test("a server whose Content-Length is shorter than its body, and a good mirror on the same host: every read right, only the bad mirror counted")
    func shortContentLength() throws {
        let release = try DownloadFixture.release()
        let fault = try FaultServer(root: release)
        defer { fault.stop() }
        let tmp = try TempDir()
        let bad = fault.url + "shortcl/tree/", good = fault.url + "ok/tree/"
        let o = try Opened(servers: [bad, good], cacheDir: tmp.path + "/cache")
        defer { o.downloader.shutdown() }
        #expect(try readAllAndCompare(o.reader, iso: o.iso))
        #expect(try cacheIsClean(tmp.path + "/cache", kind: .sha256))
        let s = o.store.statistics()
        #expect((s.failuresByLocation[bad] ?? 0) > 0, "\(s.failuresByLocation)")
        #expect(s.failuresByLocation[good] == nil, "\(s.failuresByLocation)")
        // Each part from the good mirror once: no retry was needed on a spoiled connection.
        let fromGood = fault.requests().filter { $0.mode == "ok" }.map(\.path)
        #expect(fromGood.count == o.distinctParts && Set(fromGood).count == fromGood.count)
    }

    @Test("bytes arriving: half a body received counts while its transfer runs, nothing once its completion ran")
    func bytesArrivingWhileRunning() throws {
        let release = try DownloadFixture.release()
        let fault = try FaultServer(root: release)
        defer { fault.stop() }
        let tmp = try TempDir()
        // The largest package (a name without blanks: the path goes into the URL as it is).
        func bytes(of path: String) -> Int64 { (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int64) ?? 0 }
        let file = try #require(regularFiles(under: release + "/tree").filter { !$0.contains(" ") }.max { bytes(of: $0) < bytes(of: $1) })
        let name = String(file.dropFirst(release.count + 1))
        let size = bytes(of: file)
        try #require(size > 1 << 16)
        var config = fastConfig()
        config.lowSpeedTime = 60  // the held connection is not given up while the test looks
        let downloader = try HTTPDownloader(config: config)
        defer { downloader.shutdown() }
        #expect(downloader.bytesArriving == 0)
        let ended = DispatchSemaphore(value: 0)
        // The server sends the first half of the body, then holds the connection.
        downloader.submit(url: fault.url + "halfstall/" + name, to: tmp.path + "/partial") { _ in ended.signal() }
        try waitUntil("half the body counted as arriving (\(downloader.bytesArriving) of \(size / 2))") {
            downloader.bytesArriving == size / 2
        }
        downloader.shutdown()
        #expect(ended.wait(timeout: .now() + 30) == .success)
        #expect(downloader.bytesArriving == 0)
    }

    @Test("an endless .jigdo body is cut at the bound and leaves no file; a file: URL is refused by the protocol restriction")
    func boundedFetches() throws {
        let release = try DownloadFixture.release()
        let fault = try FaultServer(root: release)
        defer { fault.stop() }
        let tmp = try TempDir()
        let cache = try PartCache(directory: tmp.path + "/cache")
        let downloader = try HTTPDownloader(config: fastConfig())
        defer { downloader.shutdown() }
        let url = fault.url + "endless/release.jigdo"
        #expect(throws: JigdoError.self) { _ = try RemoteSource.open(url: url, cache: cache, downloader: downloader) }
        let left = regularFiles(under: tmp.path + "/cache/sources")
        #expect(left.isEmpty, "left: \(left)")

        let target = tmp.path + "/copy"
        #expect(throws: JigdoError.self) { try downloader.fetch(url: "file:///etc/hostname", to: target, maxLength: 1 << 20) }
        #expect(!fileExists(target))
    }

    @Test("a stalling mirror is demoted at its first stall: later parts go to the good mirror first")
    func stallDemotesAtOnce() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let fault = try FaultServer(root: release)
        defer { fault.stop() }
        let tmp = try TempDir()
        var config = fastConfig()
        config.attemptsPerLocation = 3
        let o = try Opened(servers: [fault.url + "stall/tree/", nginx.url + "tree/"], cacheDir: tmp.path + "/cache", config: config)
        defer { o.downloader.shutdown() }
        let original = try ReadOnlyFile(path: o.iso)
        // Parts far apart (no read-ahead), one after the other.
        let all = o.partAreas(Int.max)
        let picked = stride(from: 0, to: all.count, by: max(1, all.count / 6)).map { all[$0] }
        for a in picked {
            #expect(try o.reader.read(at: a.offset, count: Int(a.length)) == original.read(at: a.offset, count: Int(a.length)))
        }
        #expect(fault.requests().count == 1, "\(fault.requests().count) requests to the stalling mirror")
        #expect(nginx.requests().count == picked.count)
    }
}

@Suite("Read-ahead per stream, through nginx", .serialized)
struct ReadAheadStreamTests {
    @Test("two sequential readers interleaved: nginx's log shows parts fetched ahead of both")
    func twoReadersBothStream() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let tmp = try TempDir()
        let o = try Opened(servers: [nginx.url + "tree/"], cacheDir: tmp.path + "/cache")
        defer { o.downloader.shutdown() }
        let areas = o.partAreas(Int.max)
        try #require(areas.count > 40)
        let readerA = Array(areas[2..<6]), readerB = Array(areas[areas.count / 2..<(areas.count / 2 + 4)])
        for (x, y) in zip(readerA, readerB) {
            _ = try o.reader.read(at: x.offset, count: Int(x.length))
            _ = try o.reader.read(at: y.offset, count: Int(y.length))
        }
        // The parts after each reader's last one, never read: only read-ahead fetches them.
        let parts = o.image.template.parts
        func fetched(_ area: (offset: Int64, length: Int64, part: Int)) -> Bool {
            o.store.isLocallyAvailable(area.part)
        }
        let afterA = areas[6], afterB = areas[areas.count / 2 + 4]
        #expect(parts[afterA.part].checksum != parts[afterB.part].checksum)
        let deadline = Date().addingTimeInterval(20)
        while !(fetched(afterA) && fetched(afterB)) && Date() < deadline { usleep(20_000) }
        #expect(fetched(afterA), "no read-ahead for the first reader")
        #expect(fetched(afterB), "no read-ahead for the second reader")
        #expect(nginx.requests().count > readerA.count + readerB.count)
    }
}

@Suite("HTTP/2 to nginx over TLS", .serialized)
struct HTTP2Tests {
    @Test("parts from an https nginx offering http2 travel as streams of one connection (nginx's log shows HTTP/2.0 and one connection)")
    func multiplexed() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release, tls: true, http2: true)
        defer { nginx.stop() }
        let tmp = try TempDir()
        var config = fastConfig()
        config.caFile = nginx.certificatePath
        let o = try Opened(servers: [nginx.url + "tree/"], cacheDir: tmp.path + "/cache", config: config)
        defer { o.downloader.shutdown() }
        #expect(try readAllAndCompare(o.reader, iso: o.iso))
        #expect(nginx.requests().count == o.distinctParts)
        let (connections, protocols) = nginx.connections()
        #expect(protocols == ["HTTP/2.0"], "\(protocols)")
        #expect(connections.count == 1, "\(connections.count) connections for \(o.distinctParts) parts")
    }
}
