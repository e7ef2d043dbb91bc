import Dispatch
import Foundation
import ImageAssembly
@testable import JigdoFormat
import Logging
import PartSources
import Testing

#if canImport(Glibc)
import Glibc
#endif

// PartPipeline driven without nginx: a fake fetcher (`PartFetcher`) that the test answers
// request by request, and a clock whose delayed work runs only when the test advances it.

/// Records each transfer the pipeline asks for; the test answers it (`serve`, `fail`).
final class FakeFetcher: PartFetcher, @unchecked Sendable {
    struct Pending: Sendable {
        let id: UInt64
        let request: TransferRequest
        let priority: TransferPriority
        let completion: @Sendable (Result<TransferSummary, TransferError>) -> Void
    }

    let config: DownloadConfig
    /// The process's book of mirrors, as `HTTPDownloader` has one (the pipelines over this
    /// fetcher share it).
    let mirrors = SharedMirrorBook()
    private let lock = NSCondition()
    private var unanswered: [Pending] = []
    private var nextID: UInt64 = 1
    private var urls: [String] = []

    init(config: DownloadConfig = DownloadConfig()) {
        self.config = config
    }

    func submit(_ request: TransferRequest, priority: TransferPriority,
                completion: @escaping @Sendable (Result<TransferSummary, TransferError>) -> Void) -> UInt64 {
        lock.lock()
        defer { lock.unlock() }
        let id = nextID
        nextID += 1
        unanswered.append(Pending(id: id, request: request, priority: priority, completion: completion))
        urls.append(request.url)
        lock.broadcast()
        return id
    }

    func promote(_ id: UInt64) {}

    /// Every URL asked for so far, in order.
    var requested: [String] {
        lock.lock()
        defer { lock.unlock() }
        return urls
    }

    /// Requests not yet taken by `next`.
    var waiting: Int {
        lock.lock()
        defer { lock.unlock() }
        return unanswered.count
    }

    /// The oldest request not yet answered, once there is one (nil after `timeout` seconds).
    func next(timeout: Double = 20) -> Pending? {
        let deadline = Date(timeIntervalSinceNow: timeout)
        lock.lock()
        defer { lock.unlock() }
        while unanswered.isEmpty {
            if !lock.wait(until: deadline) { break }
        }
        return unanswered.isEmpty ? nil : unanswered.removeFirst()
    }

    /// Answers as `HTTPDownloader` does: the bytes go into the partial file after its resumed
    /// prefix (or into memory), hashed as they are written by the request's hasher.
    /// `effectiveURL`: where the answer came from (a redirector's target), the request's URL
    /// when nil.
    func serve(_ p: Pending, _ bytes: [UInt8], effectiveURL: String? = nil) {
        let request = p.request
        var hasher = request.hasher
        if let path = request.path {
            let fd = Syscalls.open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard fd >= 0 else { return fail(p, Self.writeFailure(path, errno)) }
            defer { Syscalls.close(fd) }
            guard Syscalls.ftruncate(fd, off_t(request.resumeFrom)) == 0 else { return fail(p, Self.writeFailure(path, errno)) }
            let written = bytes.withUnsafeBytes { Syscalls.pwrite(fd, $0.baseAddress!, $0.count, off_t(request.resumeFrom)) }
            guard written == bytes.count else { return fail(p, Self.writeFailure(path, errno)) }
        }
        hasher?.update(bytes)
        let summary = TransferSummary(received: Int64(bytes.count), fileSize: request.resumeFrom + Int64(bytes.count),
                                      effectiveURL: effectiveURL ?? request.url, body: request.path == nil ? bytes : nil,
                                      checksum: hasher?.finalize())
        let completion = p.completion
        DispatchQueue.global().async { completion(.success(summary)) }
    }

    func fail(_ p: Pending, _ reason: TransferError.Reason) {
        fail(p, TransferError(reason: reason))
    }

    func fail(_ p: Pending, _ error: TransferError) {
        let completion = p.completion
        DispatchQueue.global().async { completion(.failure(error)) }
    }

    /// As `HTTPDownloader`: a write that fails for a reason that costs only caching is `.diskFull`.
    static func writeFailure(_ path: String, _ code: Int32) -> TransferError {
        let text = "\(path): write failed: \(errnoText(code))"
        return TransferError(reason: PartCache.costsOnlyCaching(code) ? .diskFull(text) : .local(text))
    }
}

/// A clock that stands still: delayed work runs when the test advances it.
final class ManualClock: PipelineClock, @unchecked Sendable {
    private let lock = NSCondition()
    private var time: UInt64 = 1_000 * 1_000_000_000
    private var scheduled: [(due: UInt64, work: @Sendable () -> Void)] = []

    func now() -> UInt64 {
        lock.lock()
        defer { lock.unlock() }
        return time
    }

    func runAfter(_ seconds: Double, _ work: @escaping @Sendable () -> Void) {
        lock.lock()
        scheduled.append((time + UInt64(max(0, seconds) * 1e9), work))
        lock.broadcast()
        lock.unlock()
    }

    /// Work waiting for the clock.
    var pending: Int {
        lock.lock()
        defer { lock.unlock() }
        return scheduled.count
    }

    /// Waits until some work waits for the clock (false after `timeout` seconds).
    func waitForScheduled(timeout: Double = 20) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout)
        lock.lock()
        defer { lock.unlock() }
        while scheduled.isEmpty {
            if !lock.wait(until: deadline) { break }
        }
        return !scheduled.isEmpty
    }

    /// Moves the time on and runs, on this thread, the work that is due.
    func advance(_ seconds: Double) {
        lock.lock()
        time += UInt64(seconds * 1e9)
        let now = time
        let due = scheduled.filter { $0.due <= now }
        scheduled.removeAll { $0.due <= now }
        lock.unlock()
        for d in due { d.work() }
    }
}

/// A blocking read of a whole part on a thread of its own (it waits for the part's download).
/// Not on a dispatch queue: a blocked reader there holds one of the few threads the fake
/// fetcher's completions need (on 2 cores, two readers waiting for one completion starved it
/// while the whole suite ran).
final class BackgroundRead: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<[UInt8], Error>?

    init(_ pipeline: PartPipeline, part index: Int) {
        let length = Int(pipeline.template.parts[index].length)
        Thread.detachNewThread {
            var buffer = [UInt8](repeating: 0, count: length)
            do {
                try buffer.withUnsafeMutableBytes { try pipeline.readPart(index, at: 0, into: $0) }
                self.result = .success(buffer)
            } catch {
                self.result = .failure(error)
            }
            self.done.signal()
        }
    }

    /// The bytes read, or the read's error; nil if it has not returned after `timeout` seconds.
    func wait(timeout: Double = 20) -> Result<[UInt8], Error>? {
        done.wait(timeout: .now() + timeout) == .success ? result : nil
    }

    func bytes(timeout: Double = 20) -> [UInt8]? {
        if case .success(let b)? = wait(timeout: timeout) { return b }
        return nil
    }
}

/// An image of `count` parts of `length` bytes each (made here, different bytes per part and
/// `seed`), each at two mirrors, `http://one.test/p<i>` then `http://two.test/p<i>` (or the
/// `servers` given), with a cache in a temp dir, a fake fetcher and a manual clock (or those of
/// `sharing`: another image of the same mount, over the same fetcher). With `downloader`, the
/// pipeline uses that one instead of the fake fetcher. `local` makes the pipeline's local
/// source from the template, its resolver and the parts' bytes.
struct FakePipeline {
    let tmp: TempDir
    let parts: [[UInt8]]
    let fetcher: FakeFetcher
    let clock: ManualClock
    let cache: PartCache
    let pipeline: PartPipeline
    var cacheDir: String { tmp.path + "/cache" }

    init(count: Int = 3, length: Int = 5000, cacheSize: Int64? = nil, logger: Logger = Logger(label: "test"),
         seed: Int = 0, servers: [String] = ["http://one.test/", "http://two.test/"], sharing: FakePipeline? = nil,
         downloader: (any PartFetcher)? = nil, sameBytes: [Int: Int] = [:],
         local: ((TemplateInfo, LocationResolver, [[UInt8]]) throws -> any PartSource)? = nil) throws {
        tmp = try TempDir()
        // `sameBytes[i] = j`: part i is a copy of part j (the same checksum twice in the image).
        parts = (0..<count).map { i in
            let j = sameBytes[i] ?? i
            return (0..<length).map { UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761 &+ j &* 97 &+ seed &* 7919) >> 7) }
        }
        let sums = parts.map { bytes -> Checksum in
            var h = ChecksumHasher(.md5)
            h.update(bytes)
            return h.finalize()
        }
        var layout: [LayoutEntry] = []
        for i in 0..<count {
            layout.append(LayoutEntry(imageOffset: Int64(i * length), length: Int64(length), source: .part(i)))
        }
        let template = TemplateInfo(path: "t", formatVersion: "1.1", creator: "test", checksumKind: .md5,
                                    imageLength: Int64(count * length),
                                    imageChecksum: Checksum([UInt8](repeating: 0, count: 16)), rsyncBlockLength: 1024, chunks: [],
                                    parts: TemplateParts(sums.map { TemplatePart(length: Int64(length), checksum: $0) }, checksumKind: .md5),
                                    layout: TemplateLayout(layout), templateDataLength: 0)
        var text = "[Image]\nFilename=x.iso\nTemplate=x.template\n[Parts]\n"
        for (i, sum) in sums.enumerated() { text += "\(sum.base64)=A:p\(i)\n" }
        text += "[Servers]\n" + servers.map { "A=\($0)\n" }.joined()
        let descriptor = try JigdoDescriptor.parse(text: text, path: tmp.path + "/x.jigdo", base: tmp.path + "/")
        fetcher = sharing?.fetcher ?? FakeFetcher()
        clock = sharing?.clock ?? ManualClock()
        cache = try PartCache(directory: tmp.path + "/cache", sizeLimit: cacheSize, logger: logger)
        var options = PartPipeline.Options()
        options.readAheadParts = 0
        let resolver = LocationResolver(descriptor: descriptor)
        pipeline = PartPipeline(template: template, resolver: resolver, local: try local?(template, resolver, parts),
                                cache: cache, downloader: downloader ?? fetcher, options: options, logger: logger, clock: clock)
    }

    func url(_ mirror: String, _ part: Int) -> String { "http://\(mirror).test/p\(part)" }

    /// Reads `part`: the first mirror stalls, the second serves it (the first is demoted).
    func readAfterStall(_ part: Int) throws {
        let read = BackgroundRead(pipeline, part: part)
        let first = try #require(fetcher.next())
        #expect(first.request.url == url("one", part))
        fetcher.fail(first, .timedOut("Operation too slow. Less than 1024 bytes/sec transferred the last 20 seconds"))
        let second = try #require(fetcher.next())
        #expect(second.request.url == url("two", part), "a stall is not retried on its mirror")
        fetcher.serve(second, parts[part])
        #expect(read.bytes() == parts[part])
    }

    /// Reads `part`, served by the first URL asked; returns that URL.
    func readServedAtOnce(_ part: Int) throws -> String {
        let read = BackgroundRead(pipeline, part: part)
        let p = try #require(fetcher.next())
        fetcher.serve(p, parts[part])
        #expect(read.bytes() == parts[part])
        return p.request.url
    }
}

@Suite("PartPipeline with a fake fetcher and a fake clock")
struct FakeFetcherPipelineTests {
    @Test("a transient failure is retried on the same location once the clock reaches the delay, not before")
    func transientRetriedAfterDelay() throws {
        let f = try FakePipeline()
        let read = BackgroundRead(f.pipeline, part: 0)
        let first = try #require(f.fetcher.next())
        #expect(first.request.url == f.url("one", 0))
        f.fetcher.fail(first, .status(503))
        // The retry waits for the clock: no request until it has moved on by the delay.
        #expect(f.clock.waitForScheduled())
        #expect(f.fetcher.waiting == 0)
        let delay = f.fetcher.config.retryDelay
        f.clock.advance(delay / 2)
        #expect(f.fetcher.waiting == 0, "retried before its delay: \(f.fetcher.requested)")
        f.clock.advance(delay)
        let second = try #require(f.fetcher.next())
        #expect(second.request.url == f.url("one", 0))
        f.fetcher.serve(second, f.parts[0])
        #expect(read.bytes() == f.parts[0])
        #expect(f.fetcher.requested == [f.url("one", 0), f.url("one", 0)])
    }

    @Test("a 404 moves on to the next mirror at once")
    func notFoundFallsBack() throws {
        let f = try FakePipeline()
        let read = BackgroundRead(f.pipeline, part: 1)
        let first = try #require(f.fetcher.next())
        f.fetcher.fail(first, .status(404))
        let second = try #require(f.fetcher.next())
        #expect(second.request.url == f.url("two", 1))
        #expect(f.clock.pending == 0, "a 404 is not retried")
        f.fetcher.serve(second, f.parts[1])
        #expect(read.bytes() == f.parts[1])
        #expect(f.fetcher.requested == [f.url("one", 1), f.url("two", 1)])
    }

    @Test("a stall demotes its mirror: the next part asks the other one first, until the penalty ends")
    func stallDemotesMirror() throws {
        let f = try FakePipeline()
        try f.readAfterStall(0)
        #expect(try f.readServedAtOnce(1) == f.url("two", 1), "the stalled mirror still goes first")

        // Once its penalty (5 minutes on the pipeline's clock) is over, it is first again.
        f.clock.advance(301)
        #expect(try f.readServedAtOnce(2) == f.url("one", 2))
    }

    @Test("wrong bytes are discarded and the next location is tried; nothing wrong is served")
    func wrongBytesDiscarded() throws {
        let f = try FakePipeline()
        let wrong = f.parts[0].map { $0 ^ 0x5A }
        let read = BackgroundRead(f.pipeline, part: 0)
        let first = try #require(f.fetcher.next())
        f.fetcher.serve(first, wrong)
        let second = try #require(f.fetcher.next())
        #expect(second.request.url == f.url("two", 0))
        f.fetcher.serve(second, f.parts[0])
        #expect(read.bytes() == f.parts[0])
        #expect(try cacheIsClean(f.cacheDir, kind: .md5))

        // Wrong bytes from every mirror: the read fails, it is not served what came.
        let failing = BackgroundRead(f.pipeline, part: 1)
        for _ in 0..<2 {
            let p = try #require(f.fetcher.next())
            f.fetcher.serve(p, f.parts[1].map { $0 ^ 0x5A })
        }
        let result = try #require(failing.wait())
        guard case .failure(let error) = result else {
            Issue.record("wrong bytes were served")
            return
        }
        #expect("\(error)".contains("wrong checksum"), "\(error)")
        #expect(!FileManager.default.fileExists(atPath: f.cache.path(for: f.pipeline.template.parts[1].checksum)))
    }

    @Test("a cached part rewritten after it was checked is checked again, not served")
    func changedCacheFileCheckedAgain() throws {
        let capture = LogCapture()
        let f = try FakePipeline(logger: capture.logger)
        let read = BackgroundRead(f.pipeline, part: 0)
        f.fetcher.serve(try #require(f.fetcher.next()), f.parts[0])
        #expect(read.bytes() == f.parts[0])

        // Rewritten in place with other bytes of the same length, and a different mtime.
        let path = f.cache.path(for: f.pipeline.template.parts[0].checksum)
        let fd = open(path, O_WRONLY)
        #expect(fd >= 0)
        let wrong = f.parts[0].map { $0 ^ 0x5A }
        #expect(wrong.withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, 0) } == wrong.count)
        let old = timespec(tv_sec: 1_000_000_000, tv_nsec: 0)
        let times = [old, old]
        _ = times.withUnsafeBufferPointer { futimens(fd, $0.baseAddress!) }
        close(fd)

        let again = BackgroundRead(f.pipeline, part: 0)
        let refetch = try #require(f.fetcher.next(), "the rewritten file was served")
        #expect(refetch.request.url == f.url("one", 0))
        f.fetcher.serve(refetch, f.parts[0])
        #expect(again.bytes() == f.parts[0])
        #expect(capture.messages.contains { $0.contains("does not match its checksum") }, "\(capture.messages)")
    }

    @Test("--cache-size below two parts: the first part is evicted, and read again it is fetched again")
    func evictedPartFetchedAgain() throws {
        let f = try FakePipeline(length: 5000, cacheSize: 7500)
        let sum0 = f.pipeline.template.parts[0].checksum
        for i in [0, 1] {
            let read = BackgroundRead(f.pipeline, part: i)
            f.fetcher.serve(try #require(f.fetcher.next()), f.parts[i])
            #expect(read.bytes() == f.parts[i])
        }
        #expect(!FileManager.default.fileExists(atPath: f.cache.path(for: sum0)), "part 0 was not evicted")
        let read = BackgroundRead(f.pipeline, part: 0)
        let again = try #require(f.fetcher.next(), "the evicted part was not fetched again")
        #expect(again.request.url == f.url("one", 0))
        f.fetcher.serve(again, f.parts[0])
        #expect(read.bytes() == f.parts[0])
        #expect(f.fetcher.requested.count == 3)
    }

    @Test("a full cache disk (ENOSPC): the part is fetched into memory and served from there")
    func fullDiskServedFromMemory() throws {
        let capture = LogCapture()
        let f = try FakePipeline(logger: capture.logger)
        let failure = Syscalls.injectFailure([.write], under: f.cacheDir, errno: ENOSPC)
        defer { failure.remove() }
        let read = BackgroundRead(f.pipeline, part: 0)
        let first = try #require(f.fetcher.next())
        #expect(first.request.path != nil)
        f.fetcher.serve(first, f.parts[0])
        let second = try #require(f.fetcher.next())
        #expect(second.request.path == nil, "not fetched into memory")
        #expect(second.request.url == f.url("one", 0))
        f.fetcher.serve(second, f.parts[0])
        #expect(read.bytes() == f.parts[0])
        #expect(!FileManager.default.fileExists(atPath: f.cache.path(for: f.pipeline.template.parts[0].checksum)))
        #expect(capture.messages.filter { $0.contains("kept in memory instead") }.count == 1, "\(capture.messages)")
    }

    @Test("a full cache disk and a mirror that keeps answering 503: its retries are counted (the walk carried on, not a copy from before), then the next mirror serves the part")
    func memoryRetriesAreCounted() throws {
        let f = try FakePipeline()
        let failure = Syscalls.injectFailure([.write], under: f.cacheDir, errno: ENOSPC)
        defer { failure.remove() }
        let read = BackgroundRead(f.pipeline, part: 0)
        var toOne = 0
        var served = false
        // Every transfer into the cache fails to write; every one into memory from the first
        // mirror fails (503), from the second it is served. A walk that forgot its tries after
        // a failure in memory would ask the first mirror for ever (bounded here at 30 requests).
        var requests = 0
        let deadline = Date(timeIntervalSinceNow: 60)
        while !served, requests < 30, Date() < deadline {
            // The pipeline's next move is a request or a retry waiting for the clock.
            guard f.fetcher.waiting > 0, let p = f.fetcher.next(timeout: 1) else {
                if f.clock.pending > 0 { f.clock.advance(120) } else { usleep(1_000) }
                continue
            }
            requests += 1
            if p.request.path != nil {
                // Into the cache: the write fails (ENOSPC), the walk falls back to memory.
                f.fetcher.serve(p, f.parts[0])
            } else if p.request.url == f.url("one", 0) {
                toOne += 1
                f.fetcher.fail(p, .status(503))
            } else {
                f.fetcher.serve(p, f.parts[0])
                served = true
            }
        }
        #expect(served, "the second mirror never served the part into memory; the first was asked \(toOne) times")
        #expect(toOne <= 2 * f.fetcher.config.attemptsPerLocation, "the first mirror was asked \(toOne) times")
        #expect(read.bytes() == f.parts[0])
    }

    @Test("a part whose partial file another process has locked: looked at again when the clock reaches the poll delay, then served from the cache, not fetched")
    func lockedByAnotherProcessPolled() throws {
        let f = try FakePipeline()
        let sum = f.pipeline.template.parts[0].checksum
        let partial = f.cache.partialPath(for: sum)
        // The other process: its own open file description, so its flock excludes this one's.
        let fd = open(partial, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        #expect(flock(fd, LOCK_EX) == 0)
        let read = BackgroundRead(f.pipeline, part: 0)
        #expect(f.clock.waitForScheduled(), "the lock is not looked at again later")
        #expect(f.fetcher.waiting == 0)
        // It finishes the part and lets go of the lock.
        #expect(f.parts[0].withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, 0) } == f.parts[0].count)
        #expect(try f.cache.store(partial: partial, as: sum, length: Int64(f.parts[0].count)))
        close(fd)
        f.clock.advance(max(f.fetcher.config.retryDelay, 0.2))
        #expect(read.bytes() == f.parts[0])
        #expect(f.fetcher.requested.isEmpty, "fetched although another process had it: \(f.fetcher.requested)")
    }

    @Test("a cancelled transfer (the fetcher shut down) ends the attempt: the read fails, no other mirror is asked")
    func cancelledGivesUp() throws {
        let f = try FakePipeline()
        let read = BackgroundRead(f.pipeline, part: 0)
        f.fetcher.fail(try #require(f.fetcher.next()), .cancelled)
        let result = try #require(read.wait())
        guard case .failure(let error) = result else {
            Issue.record("a cancelled transfer served the part")
            return
        }
        #expect("\(error)".contains("cancelled"), "\(error)")
        #expect(f.fetcher.requested == [f.url("one", 0)])
        #expect(f.clock.pending == 0)
    }
}

extension FakeFetcherPipelineTests {
    @Test("a resumed partial file whose bytes turn out wrong is fetched again from byte 0 under the same lock: no other process can lock and write the file at its path meanwhile")
    func restartFromZeroKeepsTheLock() throws {
        let f = try FakePipeline()
        let sum = f.pipeline.template.parts[0].checksum
        let partial = f.cache.partialPath(for: sum)
        // A partial file left by an earlier run, its first 1,000 bytes wrong.
        let stale = [UInt8](repeating: 0xEE, count: 1000)
        #expect(FileManager.default.createFile(atPath: partial, contents: Data(stale), attributes: [.posixPermissions: 0o600]))
        let read = BackgroundRead(f.pipeline, part: 0)
        let first = try #require(f.fetcher.next())
        #expect(first.request.resumeFrom == 1000)
        f.fetcher.serve(first, Array(f.parts[0][1000...]))
        let second = try #require(f.fetcher.next())
        #expect(second.request.resumeFrom == 0)
        // Another process sharing the cache tries to take the part's lock now.
        let fd = open(partial, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        #expect(fd >= 0)
        let locked = flock(fd, LOCK_EX | LOCK_NB)
        let code = errno
        close(fd)
        #expect(locked != 0 && code == EWOULDBLOCK, "the file at the partial path is not the locked one")
        f.fetcher.serve(second, f.parts[0])
        #expect(read.bytes() == f.parts[0])
    }
}

extension FakeFetcherPipelineTests {
    @Test("a prefix directory of the cache removed after this process made it (the cache emptied by hand) is made again when the next part goes in")
    func prefixDirectoryRemovedMeanwhile() throws {
        let f = try FakePipeline()
        let sum = f.pipeline.template.parts[0].checksum
        let read = BackgroundRead(f.pipeline, part: 0)
        f.fetcher.serve(try #require(f.fetcher.next()), f.parts[0])
        #expect(read.bytes() == f.parts[0])
        let target = f.cache.path(for: sum)
        let prefix = String(target[..<target.lastIndex(of: "/")!])
        try FileManager.default.removeItem(atPath: prefix)
        // Read again: the open file is gone from the cache (its identity changed), the part is
        // fetched again and committed into a prefix directory made anew.
        let again = BackgroundRead(f.pipeline, part: 0)
        f.fetcher.serve(try #require(f.fetcher.next()), f.parts[0])
        #expect(again.bytes() == f.parts[0])
        #expect(FileManager.default.fileExists(atPath: target))
    }
}

extension FakeFetcherPipelineTests {
    @Test("a part no mirror has leaves no empty partial file behind (the one made to hold its lock); a part downloaded leaves none either")
    func noEmptyPartialFileLeft() throws {
        let f = try FakePipeline()
        let failing = BackgroundRead(f.pipeline, part: 0)
        f.fetcher.fail(try #require(f.fetcher.next()), .status(404))
        f.fetcher.fail(try #require(f.fetcher.next()), .status(404))
        guard case .failure? = failing.wait() else {
            Issue.record("the read should fail")
            return
        }
        let ok = BackgroundRead(f.pipeline, part: 1)
        f.fetcher.serve(try #require(f.fetcher.next()), f.parts[1])
        #expect(ok.bytes() == f.parts[1])
        let partial = f.cacheDir + "/partial/md5"
        #expect(try FileManager.default.contentsOfDirectory(atPath: partial).isEmpty)
    }
}
