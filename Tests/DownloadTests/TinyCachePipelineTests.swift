import Foundation
import ImageAssembly
import JigdoFormat
import PartSources
import Synchronization
import TestSupport
import Testing

/// Issue 20: a `--cache-size` smaller than a part (or than what concurrent readers hold) costs
/// caching, never a read. The part a reader waits for is pinned from before its download
/// starts until the reader has its bytes, so the eviction that follows the download's commit
/// cannot take it away between "ready" and the read.
@Suite("A tiny cache: pinned parts", .serialized)
struct TinyCachePipelineTests {
    /// The area of the largest part of the fixture image.
    private static func largestArea(_ o: Opened) -> (offset: Int64, length: Int64, part: Int) {
        var best: (Int64, Int64, Int) = (0, 0, 0)
        for e in o.image.template.layout {
            if case .part(let p) = e.source, e.length > best.1 { best = (e.imageOffset, e.length, p) }
        }
        return best
    }

    typealias Area = (offset: Int64, length: Int64, part: Int)

    /// Runs `body` with the image on a cold cache limited to half the fixture's largest part
    /// (downloads from a fresh nginx), that part's area, the limit, the nginx and the original.
    private static func withTinyCache(_ body: (Opened, Area, Int64, Nginx, ReadOnlyFile) throws -> Void) throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let tmp = try TempDir()
        let probe = try Opened(servers: [nginx.url + "tree/"], cacheDir: tmp.path + "/probe")
        let area = largestArea(probe)
        probe.downloader.shutdown()
        let limit = area.length / 2
        try #require(limit > 64 << 10)
        let o = try Opened(servers: [nginx.url + "tree/"], cacheDir: tmp.path + "/cache", cacheSize: limit)
        defer { o.downloader.shutdown() }
        try body(o, area, limit, nginx, try ReadOnlyFile(path: o.iso))
    }

    @Test("a part larger than the whole cache is read (blocking reader): downloaded once, not evicted before the read")
    func partLargerThanTheCache() throws {
        try Self.withTinyCache { o, area, limit, nginx, original throws in
            let before = nginx.requests().count
            #expect(try o.reader.read(at: area.offset, count: Int(area.length)) == original.read(at: area.offset, count: Int(area.length)))
            // Fetched once (with read-ahead off for a single read of one part: exactly one request).
            #expect(nginx.requests().count - before == 1, "\(nginx.requests().dropFirst(before).map(\.path))")
            // Once its reader is done, the part (bigger than the limit) is not kept.
            let cached = o.cache.entries().reduce(Int64(0)) { $0 + $1.size }
            #expect(cached <= limit)
        }
    }

    @Test("FUSE-style rounds (WouldWait, run again) keep their parts pinned until the request is answered")
    func roundsKeepTheirPins() throws {
        try Self.withTinyCache { o, area, limit, _, original throws in
            // A request over the largest part and what follows it (several parts), answered as the
            // bridge does: run without waiting; on WouldWait, wait for the download, run again.
            let count = Int(min(area.length + (1 << 20), o.reader.size - area.offset))
            let holds = ReadHolds()
            var rounds = 0
            var got: [UInt8]?
            while got == nil && rounds < 64 {
                rounds += 1
                do {
                    got = try ReadContext.withoutWaiting(holding: holds) { try o.reader.read(at: area.offset, count: count) }
                } catch let wait as WouldWait {
                    let done = DispatchSemaphore(value: 0)
                    let failure = Mutex<JigdoError?>(nil)
                    wait.register { e in failure.withLock { $0 = e }; done.signal() }
                    done.wait()
                    if let e = failure.withLock({ $0 }) { throw e }
                }
            }
            #expect(got == (try original.read(at: area.offset, count: count)))
            // While the request holds them, its parts are all there, beyond the limit.
            let pinnedParts = Set(o.image.template.partsCovering(offset: area.offset, count: Int64(count)).map { o.image.template.parts[$0].checksum })
            let pinnedBytes = pinnedParts.reduce(Int64(0)) { sum, c in sum + (o.image.template.parts.first { $0.checksum == c }?.length ?? 0) }
            let cachedWhileHeld = o.cache.entries().reduce(Int64(0)) { $0 + $1.size }
            #expect(cachedWhileHeld <= limit + pinnedBytes)
            #expect(cachedWhileHeld >= area.length)
            // Answered: released, and the cache goes back within its limit.
            holds.releaseAll()
            #expect(o.cache.entries().reduce(Int64(0)) { $0 + $1.size } <= limit)
        }
    }
}
