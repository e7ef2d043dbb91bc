import Dispatch
import Foundation
import ImageAssembly
import JigdoFormat
import PartSources
import Synchronization
import TestSupport
import Testing

/// The images of one mount (a release set) share the part cache and the downloader, each with
/// its own pipeline: a part two images hold is downloaded by one, and the other joins it.
@Suite("Images of one process sharing parts", .serialized)
struct ReleaseSetDownloadTests {
    @Test("a part another pipeline of this process is downloading: the reader is woken when that download ends (not by polling) and fetches nothing")
    func secondImageJoinsTheDownload() throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let tmp = try TempDir()
        var config = fastConfig()
        // A pipeline that had to poll for the other one's lock would look again in 10 minutes.
        config.retryDelay = 600
        let first = try Opened(servers: [nginx.url + "tree/"], cacheDir: tmp.path + "/cache", config: config)
        let resolver = first.store.resolver
        let second = PartPipeline(template: first.image.template, resolver: resolver, local: nil, cache: first.cache,
                                  downloader: first.downloader)
        let area = try #require(first.partAreas(1).first)
        let part = first.image.template.parts[area.part]
        #expect(second.partStates()[area.part] == .missing)

        // The first image's pipeline holds the part's download (its partial file's lock).
        let fd = try #require(try first.cache.lockPartial(for: part.checksum))
        let done = DispatchGroup()
        let failure = Mutex<String?>(nil)
        done.enter()
        Thread {
            defer { done.leave() }
            do { try second.ensureAvailable(area.part) } catch { failure.withLock { $0 = "\(error)" } }
        }.start()
        try waitUntil("the second pipeline waits for the first one's download") {
            first.cache.waitersForRelease(part.checksum) == 1
        }
        #expect(second.partStates()[area.part] == .inFlight)

        // The download ends: the verified part goes into the cache and the lock is released.
        let bytes = try ReadOnlyFile(path: first.iso).read(at: area.offset, count: Int(area.length))
        let partial = first.cache.partialPath(for: part.checksum)
        #expect(FileManager.default.createFile(atPath: partial, contents: Data(bytes)))
        try first.cache.commit(partial: partial, as: part.checksum)
        first.cache.unlockPartial(fd, for: part.checksum)

        #expect(done.wait(timeout: .now() + 60) == .success, "the second pipeline was not woken by the release")
        #expect(failure.withLock { $0 } == nil)
        #expect(second.partStates()[area.part] == .cached)
        #expect(nginx.requests().filter { $0.path.hasPrefix("/tree/") }.isEmpty, "the part was fetched again")
    }
}
