import Foundation
import ImageAssembly
import JigdoFormat
import PartSources
import Synchronization
import TestSupport
import Testing

/// Waits (bounded) until the store has no download in flight.
private func waitUntilIdle(_ store: PartPipeline) -> Bool {
    for _ in 0..<6000 {
        if store.statistics().downloading == 0 { return true }
        usleep(10_000)
    }
    return false
}

/// Reads one byte of part `index` through the store (as a read of the image would).
private func readFirstByte(_ store: PartPipeline, _ index: Int) throws {
    var byte: UInt8 = 0
    try withUnsafeMutableBytes(of: &byte) { try store.readPart(index, at: 0, into: $0) }
}

/// The read-ahead of sequential reading and the promotion of a queued read-ahead transfer
/// that a reader starts waiting for: each test fails when its mechanism is taken out.
@Suite("Read-ahead and promotion in the download pipeline", .serialized)
struct ReadAheadAndPromoteTests {
    /// The first run of `run` parts with bytes and distinct checksums, and room after it.
    func sequentialStart(_ parts: [TemplatePart], room: Int, run: Int = 3) -> Int? {
        parts.indices.first { i in
            i + run + room <= parts.count && parts[i..<(i + run)].allSatisfy { $0.length > 0 }
                && Set(parts[i..<(i + run)].map(\.checksum)).count == run
        }
    }

    @Test("reads of three consecutive parts fetch the window's first parts ahead (readAheadFirst, two more a step), unread, and nothing past them")
    func sequentialReadsFetchAhead() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let tmp = try TempDir()
        let o = try Opened(servers: [nginx.url + "tree/"], cacheDir: tmp.path + "/cache")
        defer { o.downloader.shutdown() }
        let parts = Array(o.image.template.parts)
        // The third read is the stream's second step.
        let ahead = min(o.store.options.readAheadParts, o.store.options.readAheadFirst + 2 * 2)
        try #require(ahead < o.store.options.readAheadParts)
        try #require(parts.reduce(Int64(0)) { $0 + $1.length } < o.store.options.readAheadBytes,
                     "the window is bounded by parts here, not bytes")
        let start = try #require(sequentialStart(parts, room: ahead + 1), "\(parts.count) parts")
        for i in start..<(start + 3) { try readFirstByte(o.store, i) }
        #expect(waitUntilIdle(o.store))
        let window = (start + 3)..<(start + 3 + ahead)
        let fetched = Set(window.map { parts[$0].checksum }).union((start..<(start + 3)).map { parts[$0].checksum })
        let missing = window.filter { parts[$0].length > 0 && !o.store.isLocallyAvailable($0) }
        #expect(missing.isEmpty, "parts of the read-ahead window not fetched: \(missing)")
        let beyond = (window.upperBound..<parts.count).filter { parts[$0].length > 0 && !fetched.contains(parts[$0].checksum) }
        try #require(!beyond.isEmpty)
        #expect(beyond.allSatisfy { !o.store.isLocallyAvailable($0) }, "parts past the window were fetched")
        let s = o.store.statistics()
        #expect(s.partsDownloaded == fetched.count)
        #expect(nginx.requests().filter { $0.status == 200 }.count == fetched.count)
    }

    @Test("with --cache-size, read-ahead fetches at most a quarter of the cache's size ahead")
    func readAheadBoundedByTheCache() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let tmp = try TempDir()
        let image = try JigdoImage.open(jigdoPath: "\(release)/jf-sha256-gz/release.jigdo")
        let parts = Array(image.template.parts)
        // Six parts with bytes and distinct checksums in a row: three read, two ahead, one not.
        let start = try #require(sequentialStart(parts, room: 0, run: 6))
        let ahead = parts[start + 3].length + parts[start + 4].length
        let o = try Opened(servers: [nginx.url + "tree/"], cacheDir: tmp.path + "/cache", cacheSize: 4 * ahead)
        defer { o.downloader.shutdown() }
        try #require(min(o.store.options.readAheadParts, o.store.options.readAheadFirst + 4) > 2,
                     "the window is bounded by the cache's size here, not by parts")
        for i in start..<(start + 3) { try readFirstByte(o.store, i) }
        #expect(waitUntilIdle(o.store))
        let requested = Set(nginx.requests().filter { $0.status == 200 }.map { $0.path })
        #expect(requested.count == 5, "\(requested.sorted())")
        #expect(o.store.statistics().partsDownloaded == 5)
    }

    @Test("reads of parts far apart fetch only the parts read")
    func scatteredReadsFetchNothingAhead() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let tmp = try TempDir()
        let o = try Opened(servers: [nginx.url + "tree/"], cacheDir: tmp.path + "/cache")
        defer { o.downloader.shutdown() }
        let parts = o.image.template.parts
        let withBytes = parts.indices.filter { parts[$0].length > 0 }
        let picked = stride(from: 0, to: withBytes.count, by: max(4, withBytes.count / 5)).map { withBytes[$0] }
        try #require(picked.count >= 3)
        for i in picked { try readFirstByte(o.store, i) }
        #expect(waitUntilIdle(o.store))
        #expect(o.store.statistics().partsDownloaded == Set(picked.map { parts[$0].checksum }).count)
        #expect(nginx.requests().count == Set(picked.map { parts[$0].checksum }).count)
    }

    @Test("a reader waiting for a part whose read-ahead transfer is queued behind a stalled one gets it at once (promote)")
    func waitingReaderPromotesQueuedReadAhead() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let fault = try FaultServer(root: release)
        defer { fault.stop() }
        let tmp = try TempDir()
        var config = fastConfig()
        // One read-ahead slot, and a stalled transfer that holds it for long.
        config.jobs = 1
        config.lowSpeedTime = 60
        let o = try Opened(servers: [nginx.url + "tree/"], cacheDir: tmp.path + "/cache", config: config)
        defer { o.downloader.shutdown() }
        let stalledEnded = Atomic<Bool>(false)
        o.downloader.submit(url: fault.url + "stall/tree/README.txt", to: tmp.path + "/stalled", priority: .prefetch) { _ in
            stalledEnded.store(true, ordering: .sequentiallyConsistent)
        }
        // The stalled transfer runs (its request reached the server): the slot is taken.
        var asked = false
        for _ in 0..<3000 where !asked {
            asked = fault.requests().count == 1
            if !asked { usleep(10_000) }
        }
        try #require(asked, "the stalling request never reached the server")
        let parts = o.image.template.parts
        let index = try #require(parts.indices.first { parts[$0].length > 0 })
        o.store.prefetch([index])
        #expect(!o.store.isLocallyAvailable(index))
        // Queued as read-ahead behind the stalled transfer; a reader now waits for it.
        try o.store.ensureAvailable(index)
        #expect(o.store.isLocallyAvailable(index))
        let stalledHadEnded = stalledEnded.load(ordering: .sequentiallyConsistent)
        #expect(!stalledHadEnded,
                "the part was fetched only after the stalled transfer ended: it was not promoted")
        #expect(nginx.requests().count == 1)
    }
}
