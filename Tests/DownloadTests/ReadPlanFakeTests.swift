import Dispatch
import Foundation
import ImageAssembly
@testable import JigdoFormat
import PartSources
import Synchronization
import Testing

// Reads planned whole, driven by the fake fetcher (FakeFetcherPipelineTests.swift): a read of
// the whole three-part image starts its three downloads before any of them ends.

/// The image of a `FakePipeline` (parts only, no template data) as an `ImageReader`.
private func reader(_ f: FakePipeline) throws -> ImageReader {
    let empty = f.tmp.path + "/empty.template"
    FileManager.default.createFile(atPath: empty, contents: Data())
    let file = try ReadOnlyFile(path: empty)
    return ImageReader(template: TemplateDataReader(file: file, info: f.pipeline.template), parts: f.pipeline)
}

@Suite("Reads planned whole, with a fake fetcher")
struct ReadPlanFakeTests {
    @Test("a blocking read over three missing parts: the fetcher sees three requests before any completes")
    func blockingReadStartsAll() throws {
        try readStartsAllThree(try FakePipeline())
    }

    @Test("--cache-size too small to keep them: parts downloaded before are started together again by a read")
    func partsNotKeptAreStartedTogether() throws {
        // Every part is 5,000 bytes: none fits a cache of 1,000 bytes unless a reader pins it.
        let f = try FakePipeline(cacheSize: 1000)
        f.pipeline.prefetch([0, 1, 2])
        for _ in 0..<3 {
            let p = try #require(f.fetcher.next(timeout: 10))
            f.fetcher.serve(p, f.parts[part(p)])
        }
        #expect(waitUntil { f.pipeline.statistics().partsDownloaded == 3 && f.pipeline.statistics().downloading == 0 })
        for i in 0..<3 {
            #expect(!f.cache.contains(f.pipeline.template.parts.checksum(i), length: Int64(f.parts[i].count)), "part \(i) kept")
        }
        // Downloaded, not kept: a read plans all three again (before, a part downloaded once
        // was taken to be in the cache, and the read fetched them one after another).
        try readStartsAllThree(f, before: 3)
    }

    /// A read of the whole image on a thread of its own: the fetcher must see three requests
    /// before any is answered (`before`: requests made earlier).
    private func readStartsAllThree(_ f: FakePipeline, before: Int = 0) throws {
        let image = try reader(f)
        let size = Int(image.size)
        let done = DispatchSemaphore(value: 0)
        let result = Mutex<Result<[UInt8], Error>?>(nil)
        // On a thread of its own (see `BackgroundRead`).
        Thread.detachNewThread {
            let r = Result { try image.read(at: 0, count: size) }
            result.withLock { $0 = r }
            done.signal()
        }
        // None is answered before all three were asked for (one at a time, the second request
        // would never come: the test then fails after the timeout, it does not hang).
        var pending: [FakeFetcher.Pending] = []
        for _ in 0..<3 {
            guard let p = f.fetcher.next(timeout: 10) else { break }
            pending.append(p)
        }
        #expect(pending.count == 3, "requests before any completed: \(f.fetcher.requested)")
        // (Which mirror each goes to is the mirrors' book's choice: it spreads them.)
        #expect(Set(pending.map(part)) == [0, 1, 2])
        for p in pending {
            f.fetcher.serve(p, f.parts[part(p)])
        }
        // (Had the read asked one part at a time, the later ones are answered here, so it ends.)
        while done.wait(timeout: .now() + 0.05) == .timedOut {
            guard let p = f.fetcher.next(timeout: 0.05) else { continue }
            f.fetcher.serve(p, f.parts[part(p)])
        }
        let bytes = try #require(try result.withLock { $0 }?.get())
        #expect(bytes == f.parts.flatMap { $0 })
        #expect(f.fetcher.requested.count == before + 3, "each part fetched once: \(f.fetcher.requested)")
    }

    @Test("a FUSE request over three missing parts: one WouldWait, three requests already made, one wake-up for the set")
    func requestStartsAllAndWaitsOnce() throws {
        let f = try FakePipeline()
        let image = try reader(f)
        let size = Int(image.size)
        var wait: WouldWait?
        do {
            _ = try ReadContext.withoutWaiting { try image.read(at: 0, count: size) }
        } catch let w as WouldWait {
            wait = w
        }
        let w = try #require(wait, "the read must wait for its downloads")
        // The three were started before the request gave up its thread.
        #expect(f.fetcher.waiting == 3, "requests made: \(f.fetcher.requested)")
        let woken = DispatchSemaphore(value: 0)
        let calls = Mutex<[JigdoError?]>([])
        w.register { error in
            calls.withLock { $0.append(error) }
            woken.signal()
        }
        var pending: [FakeFetcher.Pending] = []
        while let p = f.fetcher.next(timeout: 1) { pending.append(p) }
        #expect(pending.count == 3)
        // Answered in reverse order: the waiter wakes only when the last one is there.
        for (n, p) in pending.reversed().enumerated() {
            #expect(calls.withLock { $0.isEmpty }, "woken after \(n) of 3 parts")
            f.fetcher.serve(p, f.parts[part(p)])
            if n < 2 {
                // Each download ends (its part committed) before the next is answered.
                let sum = f.pipeline.template.parts.checksum(part(p))
                #expect(waitUntil { f.cache.contains(sum, length: Int64(f.parts[0].count)) })
            }
        }
        #expect(woken.wait(timeout: .now() + 20) == .success)
        #expect(calls.withLock { $0.count } == 1 && calls.withLock { $0.first! } == nil, "one call, no error")
        // The request's next round reads every byte without waiting.
        let bytes = try ReadContext.withoutWaiting { try image.read(at: 0, count: size) }
        #expect(bytes == f.parts.flatMap { $0 })
        #expect(f.fetcher.requested.count == 3)
    }
}

/// The part a fake request asks for (`.../p<i>`).
private func part(_ p: FakeFetcher.Pending) -> Int { Int(p.request.url.split(separator: "p").last!)! }

/// Polls `condition` until it holds (false after 20 s): for a download's end, which the fake's
/// completion runs on another queue.
private func waitUntil(_ condition: () -> Bool) -> Bool {
    let deadline = Date(timeIntervalSinceNow: 20)
    while !condition() {
        if Date() > deadline { return false }
        usleep(2_000)
    }
    return true
}
