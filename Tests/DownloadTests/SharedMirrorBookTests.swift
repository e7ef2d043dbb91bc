import Foundation
import PartSources
import TestSupport
import Testing

// One book of mirrors per process (`SharedMirrorBook`): what one image's pipeline learns about
// a mirror (a stall, a redirect) changes what another image's pipeline over the same fetcher
// asks, and the fetcher's concurrency per location sits in the same book as the pipelines'
// failures and health.

@Suite("SharedMirrorBook: one book of mirrors for the fetcher and every image's pipeline")
struct SharedMirrorBookTests {
    @Test("a mirror that stalled for one image goes last for another image over the same fetcher, and is counted once")
    func demotionSeenByAnotherImage() throws {
        let a = try FakePipeline()
        let b = try FakePipeline(seed: 1, sharing: a)
        try a.readAfterStall(0)
        // Image b never asked one.test; it asks two.test first all the same.
        #expect(try b.readServedAtOnce(1) == b.url("two", 1), "the other image still asks the stalled mirror first")
        #expect(b.fetcher.requested == [a.url("one", 0), a.url("two", 0), b.url("two", 1)])

        // Each image shows the mount's figures: the one failure, once.
        for f in [a, b] {
            let s = f.pipeline.statistics(template: f.pipeline.template)
            #expect(s.failuresByLocation == ["http://one.test/": 1], "\(s.failuresByLocation)")
            #expect(s.failuresByMirror == ["http://one.test": 1], "\(s.failuresByMirror)")
        }
    }

    @Test("a redirect learned by one image's pipeline is asked by another image's pipeline over the same fetcher")
    func redirectSeenByAnotherImage() throws {
        let servers = ["http://one.test/debian/", "http://two.test/debian/"]
        let a = try FakePipeline(servers: servers)
        let b = try FakePipeline(seed: 1, servers: servers, sharing: a)
        let readA = BackgroundRead(a.pipeline, part: 0)
        let first = try #require(a.fetcher.next())
        #expect(first.request.url == "http://one.test/debian/p0")
        // The redirector sent it to a mirror's root.
        a.fetcher.serve(first, a.parts[0], effectiveURL: "http://m.test/mirror/p0")
        #expect(readA.bytes() == a.parts[0])

        #expect(try b.readServedAtOnce(2) == "http://m.test/mirror/p2", "the other image asks the redirector again")
    }

    @Test("HTTPDownloader schedules by the book its pipelines note failures in: one book holds both, and status reads it")
    func fetcherAndPipelineShareTheBook() throws {
        // Nothing listens there: every transfer fails at once (connection refused).
        let location = "http://127.0.0.1:\(try freePort())/debian/"
        var config = DownloadConfig()
        config.attemptsPerLocation = 1
        let downloader = try HTTPDownloader(config: config)
        defer { downloader.shutdown() }
        let f = try FakePipeline(servers: [location], downloader: downloader)
        #expect(f.pipeline.mirrors === downloader.mirrors)

        let read = BackgroundRead(f.pipeline, part: 0)
        let result = try #require(read.wait(timeout: 60))
        guard case .failure = result else {
            Issue.record("a part was served from a mirror that does not answer")
            return
        }
        let book = downloader.mirrors.withBook { $0.figures }
        // The pipeline noted the failure; the fetcher's governor counted the transfer's slot.
        #expect(book.failuresByLocation[location] == 1, "\(book.failuresByLocation)")
        #expect(book.concurrency[location]?.limit == config.initialPerLocation)
        let s = f.pipeline.statistics(template: f.pipeline.template)
        #expect(s.failuresByLocation[location] == 1 && s.transfersAllowedByLocation[location] == config.initialPerLocation,
                "\(s.failuresByLocation) \(s.transfersAllowedByLocation)")
    }
}
