#if canImport(Glibc)
import Glibc
#endif
import CCurl
import CPosix
import Dispatch
import Foundation
import JigdoFormat
import Logging
import Synchronization

/// Downloads URLs into files with libcurl's multi interface, on one worker thread: up to
/// `jobs` transfers at once over reused connections; demand transfers go before read-ahead.
///
/// Each transfer appends to (or resumes, with a range request) a file; the caller verifies the
/// result. Completions run on a global dispatch queue, never on the worker thread.
public final class HTTPDownloader: PartFetcher, @unchecked Sendable {
    public typealias Priority = TransferPriority

    private struct Queues {
        var demand: [Transfer] = []
        var prefetch: [Transfer] = []
        var nextID: UInt64 = 1
        var stopping = false
        var started = false
    }

    public let config: DownloadConfig
    /// What the process knows about its mirrors, this fetcher's concurrency per location among
    /// it (`MirrorBook.governor`); the pipelines over this fetcher note and read mirror health
    /// and redirects in it.
    public let mirrors: SharedMirrorBook
    // Lock order: `queues`, then `mirrors` (a leaf); `queues` is never held while calling
    // libcurl (except the thread-safe curl_multi_wakeup) or a completion.
    private let queues: Mutex<Queues>
    let logger: Logger
    /// Nanoseconds on a monotonic clock (a test may pass its own).
    private let clock: @Sendable () -> UInt64
    let multi: UnsafeMutableRawPointer
    private let stopped = DispatchSemaphore(value: 0)
    let writeBehind = WriteBehind()
    let arriving = ArrivingBytes()
    // Worker-thread state.
    var active: [UnsafeMutableRawPointer: Transfer] = [:]

    private static let globalInit: Bool = { jfs_curl_global_init() == CURLE_OK }()

    public init(config: DownloadConfig = DownloadConfig(), logger: Logger = Logger(label: "jigdofs.download"),
                clock: @escaping @Sendable () -> UInt64 = { DispatchTime.now().uptimeNanoseconds }) throws {
        guard Self.globalInit, let multi = curl_multi_init() else {
            throw JigdoError(.io, "libcurl could not be initialised")
        }
        self.config = config
        self.multi = multi
        self.logger = logger
        self.clock = clock
        var settings = ConcurrencyGovernor.Settings()
        settings.ceiling = max(1, config.jobs)
        settings.perHost = config.maxPerHost > 0 ? config.maxPerHost : Int.max / 2
        settings.initial = max(1, config.initialPerLocation)
        settings.rateCeiling = Double(max(0, config.limitRate))
        self.mirrors = SharedMirrorBook(MirrorBook(governor: settings))
        self.queues = Mutex(Queues())
        _ = jfs_curl_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, max(4, config.jobs * 2))
        // A backstop under the governor's own per-host count (which allows demand reads 2 more).
        if config.maxPerHost > 0 { _ = jfs_curl_multi_setopt_long(multi, CURLMOPT_MAX_HOST_CONNECTIONS, config.maxPerHost + 2) }
        DownloadRateLimit.shared.setRate(config.limitRate)
    }

    /// Starts the worker on first use, so a process may create the downloader and then fork
    /// (a daemon going to the background) before anything is downloaded.
    private func startWorkerIfNeeded() {
        let start = queues.withLock { q -> Bool in
            defer { q.started = true }
            return !q.started
        }
        guard start else { return }
        // The worker keeps the downloader alive until `shutdown`.
        let thread = Thread { self.run() }
        thread.name = "jigdofs-curl"
        thread.stackSize = 1 << 20
        thread.start()
    }

    deinit {
        curl_multi_cleanup(multi)
    }

    /// Stops the worker: transfers in flight and queued complete with `.cancelled`.
    public func shutdown() {
        let (already, started) = queues.withLock { q -> (Bool, Bool) in
            defer { q.stopping = true }
            return (q.stopping, q.started)
        }
        guard !already, started else { return }
        curl_multi_wakeup(multi)
        stopped.wait()
    }

    /// Queues a download of `url` into the file at `path`, starting at `resumeFrom` (the file's
    /// bytes before that are kept; a range request asks for the rest). With `path` nil the body
    /// is kept in memory and handed over in the summary. A body that would make the file longer
    /// than `maxLength` is cut off with `.tooLong`. Returns an id for `promote`.
    @discardableResult
    public func submit(
        url: String, to path: String?, resumeFrom: Int64 = 0, maxLength: Int64? = nil,
        priority: Priority = .demand,
        completion: @escaping @Sendable (Result<TransferSummary, TransferError>) -> Void
    ) -> UInt64 {
        var request = TransferRequest(url: url, path: path)
        request.resumeFrom = resumeFrom
        request.maxLength = maxLength
        return submit(request, priority: priority, completion: completion)
    }

    /// Queues a transfer (see `TransferRequest`). Returns an id for `promote`.
    @discardableResult
    public func submit(
        _ request: TransferRequest, priority: Priority = .demand,
        completion: @escaping @Sendable (Result<TransferSummary, TransferError>) -> Void
    ) -> UInt64 {
        let accepted = queues.withLock { q -> UInt64? in
            guard !q.stopping else { return nil }
            let t = Transfer(id: q.nextID, request: request, arriving: arriving, completion: completion)
            q.nextID += 1
            if priority == .demand { q.demand.append(t) } else { q.prefetch.append(t) }
            return t.id
        }
        guard let id = accepted else {
            DispatchQueue.global().async { completion(.failure(TransferError(reason: .cancelled))) }
            return 0
        }
        startWorkerIfNeeded()
        curl_multi_wakeup(multi)
        return id
    }

    /// Moves a queued read-ahead transfer to the demand queue (a reader waits for it): it goes
    /// before every read-ahead transfer and may use the two slots kept for demand.
    public func promote(_ id: UInt64) {
        queues.withLock { q in
            if let i = q.prefetch.firstIndex(where: { $0.id == id }) {
                q.demand.append(q.prefetch.remove(at: i))
            }
        }
    }

    /// Downloads a file (a .jigdo, a template) of at most `maxLength` bytes and waits for it;
    /// a longer body (or a Content-Length over the bound) fails, and nothing is left at `path`
    /// on failure. The file gets the server's Last-Modified as its mtime, as `wget -N` and
    /// `curl -R` do (a mounted image's time is its template's: the same on every machine that
    /// fetches it, and across fetches). Not for FUSE threads.
    public func fetch(url: String, to path: String, maxLength: Int64) throws {
        Syscalls.unlink(path)
        let done = DispatchSemaphore(value: 0)
        let result = Mutex<Result<TransferSummary, TransferError>?>(nil)
        var request = TransferRequest(url: url, path: path)
        request.maxLength = maxLength
        request.remoteTime = true
        submit(request) { r in
            result.withLock { $0 = r }
            done.signal()
        }
        done.wait()
        switch result.withLock({ $0 })! {
        case .failure(let e):
            Syscalls.unlink(path)
            throw JigdoError(.io, path: url, "download failed: \(e)", underlying: e)
        case .success(let summary):
            // Best effort: without it the file keeps the time of the download.
            if let seconds = summary.remoteTime {
                let times = [timespec(tv_sec: Int(seconds), tv_nsec: 0), timespec(tv_sec: Int(seconds), tv_nsec: 0)]
                _ = utimensat(AT_FDCWD, path, times, 0)
            }
        }
    }

    // MARK: worker thread

    /// The transfers to start now, taken out of the queues: demand first, each within its
    /// location's and host's limit (`ConcurrencyGovernor`, in the book); read-ahead fills `jobs`
    /// slots, a reader that waits may use two more, so it never queues behind a full window of
    /// read-ahead. Called under `queues`; takes the book's lock once (a leaf).
    private func takeStartable(_ q: inout Queues, busy: Int) -> [Transfer] {
        guard !q.demand.isEmpty || !q.prefetch.isEmpty, busy < config.jobs + 2 else { return [] }
        let now = clock()
        return mirrors.withBook { book in takeStartable(&q, book: &book, busy: busy, now: now) }
    }

    private func takeStartable(_ q: inout Queues, book: inout MirrorBook, busy: Int, now: UInt64) -> [Transfer] {
        var out: [Transfer] = []
        for demand in [true, false] {
            let ceiling = config.jobs + (demand ? 2 : 0)
            var i = 0
            while busy + out.count < ceiling {
                let count = demand ? q.demand.count : q.prefetch.count
                guard i < count else { break }
                let t = demand ? q.demand[i] : q.prefetch[i]
                guard book.mayStart(t.location, host: t.host, demand: demand) else { i += 1; continue }
                if demand { q.demand.remove(at: i) } else { q.prefetch.remove(at: i) }
                book.started(t.location, host: t.host, now: now)
                out.append(t)
            }
        }
        return out
    }

    private func run() {
        // Foundation's `Thread.name` does not reach the kernel; `top -H` and `perf` show this one.
        _ = jfs_name_this_thread("jigdofs-curl")
        var running: Int32 = 0
        while true {
            if active.values.contains(where: { $0.unreported > 0 }) {
                mirrors.withBook { book in
                    for t in active.values where t.unreported > 0 {
                        book.received(t.location, bytes: t.unreported)
                        t.unreported = 0
                    }
                }
            }
            let (start, stop) = queues.withLock { q -> ([Transfer], Bool) in
                guard !q.stopping else { return ([], true) }
                return (takeStartable(&q, busy: active.count), false)
            }
            if stop { break }
            for t in start { begin(t) }
            curl_multi_perform(multi, &running)
            var finishedAny = false
            var left: Int32 = 0
            while let msg = curl_multi_info_read(multi, &left) {
                guard msg.pointee.msg == CURLMSG_DONE, let easy = msg.pointee.easy_handle else { continue }
                finish(easy, jfs_curl_msg_result(msg))
                finishedAny = true
            }
            // Bytes of a slow or stalled transfer go to its partial file within about 0.2 s.
            writeBehind.flush(olderThan: 200_000_000)
            if finishedAny { continue }
            curl_multi_poll(multi, nil, 0, writeBehind.isFilling ? 100 : 1000, nil)
        }
        // Shut down: fail everything.
        for (easy, t) in active {
            curl_multi_remove_handle(multi, easy)
            curl_easy_cleanup(easy)
            let fd = t.fd
            t.fd = -1
            deliver(t, .failure(TransferError(reason: .cancelled)), fd: fd)
        }
        active.removeAll()
        let rest = queues.withLock { q -> [Transfer] in
            defer { q.demand.removeAll(); q.prefetch.removeAll() }
            return q.demand + q.prefetch
        }
        for t in rest { complete(t, .failure(TransferError(reason: .cancelled))) }
        stopped.signal()
    }

    public var bytesArriving: Int64 { arriving.bytes }

    func complete(_ t: Transfer, _ result: Result<TransferSummary, TransferError>) {
        let completion = t.completion
        let (arriving, received) = (t.arriving, t.received)
        DispatchQueue.global().async {
            arriving.ended(received)
            completion(result)
        }
    }

    /// Completes a transfer whose file `fd` (-1: none) a lane may still be writing: once its
    /// last piece is written, with the lane's checksum, and a failed write as the result.
    func deliver(_ t: Transfer, _ result: Result<TransferSummary, TransferError>, fd: Int32) {
        guard fd >= 0 else { return complete(t, result) }
        let completion = t.completion
        let path = t.path ?? ""
        let (arriving, received) = (t.arriving, t.received)
        writeBehind.finish(t, fd: fd) { error, checksum in
            // Just before the completion counts them as downloaded (or drops them).
            arriving.ended(received)
            if error != 0 {
                completion(.failure(Self.writeFailure(path, "write failed", error)))
            } else if case .success(var summary) = result {
                summary.checksum = checksum
                completion(.success(summary))
            } else {
                completion(result)
            }
        }
    }

    /// A started transfer's slot is free again. `measured`: it ran (its bytes and outcome
    /// feed the location's rate); otherwise it never reached the network.
    func release(_ t: Transfer, measured: Bool, result: Result<TransferSummary, TransferError>? = nil) {
        var congestion = false
        if case .failure(let e)? = result { congestion = e.signalsOverload }
        let now = clock()
        let bytes = measured ? t.unreported : 0
        t.unreported = 0
        let changed = mirrors.withBook { book in
            book.ended(t.location, host: t.host, bytes: bytes, congestion: congestion, measured: measured, now: now)
        }
        if let (limit, rate) = changed {
            let speed = rate.map { String(format: ", %.1f MB/s", $0 / 1e6) } ?? ""
            logger.debug("\(t.location): \(limit) transfers at once\(congestion ? " (it stalled or is overloaded)" : speed)")
        }
    }

    /// A transfer that could not be started: its slot is free again, it fails.
    func failEarly(_ t: Transfer, _ error: TransferError) {
        release(t, measured: false)
        complete(t, .failure(error))
    }
}
