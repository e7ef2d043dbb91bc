#if canImport(Glibc)
import Glibc
#endif
import CCurl
import Dispatch
import Foundation
import JigdoFormat
import Logging
import Synchronization

/// Settings of the transfer engine (`--jobs`, `--cacert`, timeouts).
public struct DownloadConfig: Sendable {
    /// Transfers running at once at most (`--jobs`), the ceiling over all mirrors; transfers a
    /// reader waits for may use two more. Each mirror location starts with
    /// `initialPerLocation` and is given more while its throughput grows (`ConcurrencyGovernor`).
    public var jobs = 32
    public var initialPerLocation = 8
    /// Seconds to wait for a connection to be set up.
    public var connectTimeout: Double = 15
    /// A transfer slower than `lowSpeedLimit` bytes/s for `lowSpeedTime` seconds is aborted
    /// (this also catches a server that accepts the connection and then never answers).
    public var lowSpeedLimit = 1024
    public var lowSpeedTime = 20
    public var maxRedirects = 10
    /// A CA bundle to trust instead of the system store (`--cacert`).
    public var caFile: String?
    public var userAgent = "jigdofs/0.1"
    /// Attempts per location for errors that may go away (timeouts, resets, 5xx, short bodies).
    public var attemptsPerLocation = 3
    /// Delay before the first retry of a location; doubled for each further one.
    public var retryDelay: Double = 0.5
    /// All transfers together at most this many bytes/s (`--limit-rate`); 0: no limit.
    public var limitRate: Int64 = 0
    /// Transfers to one host at once (`--max-per-host`), the polite cap the growth stops at.
    public var maxPerHost = 32
    /// Credentials from ~/.netrc, or from `netrcFile` (`--netrc`, `--netrc-file`).
    public var netrc = false
    public var netrcFile: String?

    public init() {}
}

/// Why one transfer failed.
/// Why one transfer failed. A type of its own, not a `JigdoError`: its `reason` drives the
/// download walk (retry, demote a stalled mirror, reopen a spoiled connection), which needs
/// the HTTP status or libcurl code as values. What reaches a reader is the walk's
/// `JigdoError(.partUnavailable)` naming every URL tried and why.
public struct TransferError: Error, Sendable, CustomStringConvertible {
    public enum Reason: Sendable, Equatable {
        /// The server answered with this HTTP (or FTP) status.
        case status(Int)
        /// libcurl gave up: connection, timeout, TLS, short body...
        case curl(code: Int, text: String)
        /// The server sent more bytes than the part has.
        case tooLong(Int64)
        /// The partial file could not be written.
        case local(String)
        /// The partial file cannot be written for a reason that costs only caching: the disk is
        /// full (ENOSPC, EDQUOT), read-only (EROFS) or not ours (EACCES, EPERM).
        case diskFull(String)
        /// The response breaks HTTP for this request (a Content-Length other than the bytes
        /// asked for, a wrong Content-Range): the connection is closed, never reused.
        case protocolViolation(String)
        /// The server does not do ranges, or the range was wrong: start again from 0.
        case rangeRefused
        /// The downloader was shut down.
        case cancelled
    }
    public var reason: Reason

    public init(reason: Reason) {
        self.reason = reason
    }

    /// Whether trying the same URL again later may help.
    public var isTransient: Bool {
        switch reason {
        case .status(let s): return s >= 500 || s == 408 || s == 429
        case .curl(let code, _):
            let c = CURLcode(UInt32(code))
            // A connection spoiled by an earlier response on it ("Received HTTP/0.9", a weird
            // reply) is worth one more try on a fresh connection.
            return [CURLE_COULDNT_CONNECT, CURLE_RECV_ERROR, CURLE_SEND_ERROR,
                    CURLE_PARTIAL_FILE, CURLE_GOT_NOTHING, CURLE_HTTP2, CURLE_HTTP2_STREAM,
                    CURLE_SSL_CONNECT_ERROR, CURLE_WEIRD_SERVER_REPLY, CURLE_UNSUPPORTED_PROTOCOL].contains(c)
        case .tooLong, .local, .diskFull, .cancelled, .protocolViolation: return false
        case .rangeRefused: return true
        }
    }

    /// The transfer stalled: no progress above the low-speed limit (or no answer at all) for
    /// the low-speed time. The mirror is demoted at once rather than retried.
    public var isStall: Bool {
        if case .curl(let code, _) = reason { return CURLcode(UInt32(code)) == CURLE_OPERATION_TIMEDOUT }
        return false
    }

    /// The mirror is overloaded: it stalled, or said it has too many requests (429, 503).
    /// Its concurrency is halved (`ConcurrencyGovernor`).
    public var signalsOverload: Bool {
        if case .status(let s) = reason, s == 429 || s == 503 { return true }
        return isStall
    }

    /// Whether the connection this ran on may be unusable: the retry opens a fresh one.
    public var spoilsConnection: Bool {
        switch reason {
        case .protocolViolation, .tooLong, .rangeRefused: return true
        case .curl(let code, _):
            let c = CURLcode(UInt32(code))
            return [CURLE_PARTIAL_FILE, CURLE_WEIRD_SERVER_REPLY, CURLE_UNSUPPORTED_PROTOCOL, CURLE_RECV_ERROR,
                    CURLE_GOT_NOTHING, CURLE_HTTP2, CURLE_HTTP2_STREAM, CURLE_OPERATION_TIMEDOUT].contains(c)
        default: return false
        }
    }

    public var description: String {
        switch reason {
        case .status(let s): return "HTTP status \(s)"
        case .curl(_, let text): return text
        case .tooLong(let n): return "sent more than the part's \(n) bytes"
        case .local(let text), .diskFull(let text): return text
        case .protocolViolation(let text): return text
        case .rangeRefused: return "range request refused"
        case .cancelled: return "cancelled"
        }
    }
}

/// What a finished transfer did.
public struct TransferSummary: Sendable {
    /// Bytes received in this transfer.
    public var received: Int64
    /// Size of the file after the transfer.
    public var fileSize: Int64
    /// The URL after redirects.
    public var effectiveURL: String
    /// The body, for a transfer into memory.
    public var body: [UInt8]?
    /// The checksum of the whole file (the resumed prefix included), when a hasher was given:
    /// the bytes were hashed as they arrived, never read back.
    public var checksum: Checksum?
    /// The server's Last-Modified (seconds since the epoch), when `TransferRequest.remoteTime`
    /// asked for it and the server sent one.
    public var remoteTime: Int64? = nil
}

/// What one transfer asks for (`HTTPDownloader.submit`).
public struct TransferRequest: Sendable {
    public var url: String
    /// The file to write; nil: keep the body in memory.
    public var path: String?
    /// Bytes of the file before this (kept; a range request asks for the rest).
    public var resumeFrom: Int64 = 0
    /// The file may not grow past this (a longer body is cut off with `.tooLong`).
    public var maxLength: Int64?
    /// The file must end up exactly `maxLength` long: a response announcing another length is
    /// refused before its body is written (`.protocolViolation`).
    public var exactLength = false
    /// Open a new connection instead of reusing one (a retry after a broken response).
    public var freshConnect = false
    /// Hashes the body as it arrives; primed with the resumed prefix by the caller.
    public var hasher: ChecksumHasher?
    /// The mirror location this transfer counts against for concurrency (the URL prefix a
    /// label expands to); nil: the URL's host.
    public var location: String?
    /// Ask for the server's Last-Modified (`TransferSummary.remoteTime`).
    public var remoteTime = false

    public init(url: String, path: String?) {
        self.url = url
        self.path = path
    }
}

/// One transfer in flight; owned by the worker thread once started.
final class Transfer: @unchecked Sendable {
    let id: UInt64
    let request: TransferRequest
    var url: String { request.url }
    /// Keys of `ConcurrencyGovernor`: the mirror location and the host (scheme, host, port).
    let location: String
    let host: String
    /// The file to write; nil: keep the body in memory (`body`).
    var path: String? { request.path }
    var resumeFrom: Int64 { request.resumeFrom }
    var maxLength: Int64? { request.maxLength }
    let completion: @Sendable (Result<TransferSummary, TransferError>) -> Void
    // Touched only by the worker thread.
    var easy: UnsafeMutableRawPointer?
    var fd: Int32 = -1
    var offset: Int64
    var received: Int64 = 0
    /// Bytes received and not yet told to the governor (it measures a location's rate by the
    /// bytes arriving, not by the sizes of the transfers that happen to end).
    var unreported: Int64 = 0
    var tooLong = false
    var headersChecked = false
    var violation: String?
    /// A lane's write of the file failed (an errno; 0: none): the transfer is stopped.
    let writeError = Atomic<Int32>(0)
    /// Hashes and writes the body of a file transfer (nil for one into memory).
    var writeBehind: WriteBehind?
    /// The buffer `writeBehind` is filling with this transfer's body, not yet queued.
    struct Filling {
        var piece: Piece
        var count: Int
        var at: Int64
        var fd: Int32
        /// When its first piece came (monotonic nanoseconds).
        var since: UInt64
    }
    var filling: Filling?
    var body: [UInt8] = []
    var hasher: ChecksumHasher?
    let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)

    init(id: UInt64, request: TransferRequest,
         completion: @escaping @Sendable (Result<TransferSummary, TransferError>) -> Void) {
        self.id = id
        self.request = request
        self.offset = request.resumeFrom
        self.hasher = request.hasher
        self.completion = completion
        self.host = hostOf(request.url)
        self.location = request.location ?? self.host
        errorBuffer.initialize(to: 0)
    }

    deinit { errorBuffer.deallocate() }
}

/// Hands the body to `WriteBehind`, which hashes it and writes it into the partial file (no
/// part is ever held in memory whole), or keeps a body meant for memory, hashing it here.
/// Returning less than `n` makes libcurl abort the transfer and close its connection, which is
/// what a response that breaks HTTP needs.
private let writeToFile: jfs_curl_write_callback = { data, size, count, context in
    let t = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
    let n = size * count
    if !t.headersChecked {
        t.headersChecked = true
        if t.request.exactLength, let max = t.maxLength, let easy = t.easy {
            // The body must be exactly the bytes asked for: a server whose Content-Length is
            // shorter or longer than that would leave the connection out of step.
            var announced: curl_off_t = -1
            if jfs_curl_easy_getinfo_off(easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced) == CURLE_OK,
               announced >= 0, Int64(announced) != max - t.resumeFrom {
                t.violation = "Content-Length \(announced) for a request of \(max - t.resumeFrom) bytes"
                return 0
            }
        }
    }
    if let max = t.maxLength, t.offset + Int64(n) > max {
        t.tooLong = true
        return 0
    }
    if t.path == nil {
        if n > 0 { t.hasher?.update(UnsafeRawBufferPointer(start: data, count: n)) }
        t.body.append(contentsOf: UnsafeRawBufferPointer(start: data, count: n))
        t.offset += Int64(n)
        t.received += Int64(n)
        t.unreported += Int64(n)
        DownloadRateLimit.shared.consume(n)
        return n
    }
    // A piece that could not be written stops the transfer: the rest has nowhere to go.
    guard t.writeError.load(ordering: .relaxed) == 0, let writeBehind = t.writeBehind else { return 0 }
    if n > 0 { writeBehind.write(t, fd: t.fd, data!, count: n, at: t.offset) }
    t.offset += Int64(n)
    t.received += Int64(n)
    t.unreported += Int64(n)
    DownloadRateLimit.shared.consume(n)
    return n
}

/// Downloads URLs into files with libcurl's multi interface, on one worker thread: up to
/// `jobs` transfers at once over reused connections; demand transfers go before read-ahead.
///
/// Each transfer appends to (or resumes, with a range request) a file; the caller verifies the
/// result. Completions run on a global dispatch queue, never on the worker thread.
public final class HTTPDownloader: @unchecked Sendable {
    public enum Priority: Sendable { case demand, prefetch }

    private struct Queues {
        var demand: [Transfer] = []
        var prefetch: [Transfer] = []
        var nextID: UInt64 = 1
        var stopping = false
        var started = false
        var governor: ConcurrencyGovernor
    }

    public let config: DownloadConfig
    // Lock order: `queues` is a leaf lock; never held while calling libcurl (except the
    // thread-safe curl_multi_wakeup) or a completion.
    private let queues: Mutex<Queues>
    private let logger: Logger
    /// Nanoseconds on a monotonic clock (a test may pass its own).
    private let clock: @Sendable () -> UInt64
    private let multi: UnsafeMutableRawPointer
    private let stopped = DispatchSemaphore(value: 0)
    private let writeBehind = WriteBehind()
    // Worker-thread state.
    private var active: [UnsafeMutableRawPointer: Transfer] = [:]

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
        self.queues = Mutex(Queues(governor: ConcurrencyGovernor(settings: settings)))
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
            let t = Transfer(id: q.nextID, request: request, completion: completion)
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

    /// Per mirror location: the transfers it may run at once and its last measured rate
    /// (bytes/s), for `jigdofs status`.
    public func concurrency() -> [String: (limit: Int, rate: Double?)] {
        queues.withLock { q in q.governor.locations.mapValues { ($0.limit, $0.lastRate) } }
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
    /// location's and host's limit (`ConcurrencyGovernor`); read-ahead fills `jobs` slots, a
    /// reader that waits may use two more, so it never queues behind a full window of
    /// read-ahead. Called under `queues`.
    private func takeStartable(_ q: inout Queues, busy: Int) -> [Transfer] {
        var out: [Transfer] = []
        let now = clock()
        for demand in [true, false] {
            let ceiling = config.jobs + (demand ? 2 : 0)
            var i = 0
            while busy + out.count < ceiling {
                let count = demand ? q.demand.count : q.prefetch.count
                guard i < count else { break }
                let t = demand ? q.demand[i] : q.prefetch[i]
                guard q.governor.mayStart(t.location, host: t.host, demand: demand) else { i += 1; continue }
                if demand { q.demand.remove(at: i) } else { q.prefetch.remove(at: i) }
                q.governor.started(t.location, host: t.host, now: now)
                out.append(t)
            }
        }
        return out
    }

    private func run() {
        var running: Int32 = 0
        while true {
            let (start, stop) = queues.withLock { q -> ([Transfer], Bool) in
                guard !q.stopping else { return ([], true) }
                for t in active.values where t.unreported > 0 {
                    q.governor.received(t.location, bytes: t.unreported)
                    t.unreported = 0
                }
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

    private func complete(_ t: Transfer, _ result: Result<TransferSummary, TransferError>) {
        let completion = t.completion
        DispatchQueue.global().async { completion(result) }
    }

    /// Completes a transfer whose file `fd` (-1: none) a lane may still be writing: once its
    /// last piece is written, with the lane's checksum, and a failed write as the result.
    private func deliver(_ t: Transfer, _ result: Result<TransferSummary, TransferError>, fd: Int32) {
        guard fd >= 0 else { return complete(t, result) }
        let completion = t.completion
        let path = t.path ?? ""
        writeBehind.finish(t, fd: fd) { error, checksum in
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
    private func release(_ t: Transfer, measured: Bool, result: Result<TransferSummary, TransferError>? = nil) {
        var congestion = false
        if case .failure(let e)? = result { congestion = e.signalsOverload }
        let now = clock()
        let bytes = measured ? t.unreported : 0
        t.unreported = 0
        let changed = queues.withLock { q in
            q.governor.ended(t.location, host: t.host, bytes: bytes, congestion: congestion,
                             measured: measured, now: now).map { ($0, q.governor.locations[t.location]?.lastRate) }
        }
        if let (limit, rate) = changed {
            let speed = rate.map { String(format: ", %.1f MB/s", $0 / 1e6) } ?? ""
            logger.debug("\(t.location): \(limit) transfers at once\(congestion ? " (it stalled or is overloaded)" : speed)")
        }
    }

    /// A transfer that could not be started: its slot is free again, it fails.
    private func failEarly(_ t: Transfer, _ error: TransferError) {
        release(t, measured: false)
        complete(t, .failure(error))
    }

    private func begin(_ t: Transfer) {
        if let path = t.path {
            // O_NOFOLLOW: a symlink planted in the cache is never written through.
            let fd = Syscalls.open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard fd >= 0 else {
                failEarly(t, Self.writeFailure(path, "cannot open", errno))
                return
            }
            var st = stat()
            guard Syscalls.fstat(fd, &st) == 0, PartCache.isOwnRegularFile(st) else {
                Syscalls.close(fd)
                failEarly(t, TransferError(reason: .diskFull("\(path): not a regular file of this user")))
                return
            }
            // Drop anything beyond the resume point (a previous, longer attempt). Only when
            // there is something to drop: ext4 starts writing back, on close, a file truncated
            // to 0 (its "replace by truncate" safety), which put a disk flush on this thread
            // for every part.
            if Int64(st.st_size) != t.resumeFrom, Syscalls.ftruncate(fd, off_t(t.resumeFrom)) != 0 {
                let e = errno
                Syscalls.close(fd)
                failEarly(t, Self.writeFailure(path, "cannot truncate", e))
                return
            }
            t.fd = fd
            t.writeBehind = writeBehind
        } else if let max = t.maxLength, max <= 256 << 20 {
            t.body.reserveCapacity(Int(max))
        }
        guard let easy = curl_easy_init() else {
            if t.fd >= 0 { Syscalls.close(t.fd) }
            failEarly(t, TransferError(reason: .local("libcurl: cannot create a transfer")))
            return
        }
        t.easy = easy
        do {
            try configure(easy, for: t)
        } catch {
            curl_easy_cleanup(easy)
            if t.fd >= 0 { Syscalls.close(t.fd) }
            t.fd = -1
            failEarly(t, TransferError(reason: .local("\(error)")))
            return
        }
        active[easy] = t
        let added = curl_multi_add_handle(multi, easy)
        if added != CURLM_OK {
            active[easy] = nil
            curl_easy_cleanup(easy)
            if t.fd >= 0 { Syscalls.close(t.fd) }
            t.fd = -1
            failEarly(t, TransferError(reason: .local("libcurl: cannot start a transfer: \(String(cString: curl_multi_strerror(added)))")))
        }
    }

    /// A failure to write the partial file: one that costs only caching (full, read-only,
    /// not ours) is `.diskFull`, so the part is fetched into memory instead.
    static func writeFailure(_ path: String, _ what: String, _ code: Int32) -> TransferError {
        let text = "\(path): \(what): \(errnoText(code))"
        return TransferError(reason: PartCache.costsOnlyCaching(code) ? .diskFull(text) : .local(text))
    }

    /// THE one place an easy handle is configured. Every option's result is checked: a
    /// libcurl that refuses one (the protocol restriction above all) fails the transfer
    /// instead of running it with weaker settings.
    private func configure(_ easy: UnsafeMutableRawPointer, for t: Transfer) throws {
        let c = config
        func check(_ code: CURLcode, _ name: String) throws {
            guard code == CURLE_OK else {
                throw JigdoError(.io, path: t.url, "libcurl refused option \(name): \(String(cString: curl_easy_strerror(code)))")
            }
        }
        try check(jfs_curl_easy_setopt_string(easy, CURLOPT_URL, encodeURLForCurl(t.url)), "URL")
        try check(jfs_curl_easy_setopt_string(easy, CURLOPT_PROTOCOLS_STR, "http,https,ftp"), "PROTOCOLS_STR")
        try check(jfs_curl_easy_setopt_string(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https,ftp"), "REDIR_PROTOCOLS_STR")
        try check(jfs_curl_easy_setopt_write_function(easy, CURLOPT_WRITEFUNCTION, writeToFile), "WRITEFUNCTION")
        try check(jfs_curl_easy_setopt_pointer(easy, CURLOPT_WRITEDATA, Unmanaged.passUnretained(t).toOpaque()), "WRITEDATA")
        try check(jfs_curl_easy_setopt_pointer(easy, CURLOPT_ERRORBUFFER, UnsafeMutableRawPointer(t.errorBuffer)), "ERRORBUFFER")
        try check(jfs_curl_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1), "NOSIGNAL")
        try check(jfs_curl_easy_setopt_long(easy, CURLOPT_FAILONERROR, 1), "FAILONERROR")
        try check(jfs_curl_easy_setopt_long(easy, CURLOPT_FOLLOWLOCATION, 1), "FOLLOWLOCATION")
        try check(jfs_curl_easy_setopt_long(easy, CURLOPT_MAXREDIRS, c.maxRedirects), "MAXREDIRS")
        try check(jfs_curl_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, Int(c.connectTimeout * 1000)), "CONNECTTIMEOUT_MS")
        try check(jfs_curl_easy_setopt_long(easy, CURLOPT_LOW_SPEED_LIMIT, c.lowSpeedLimit), "LOW_SPEED_LIMIT")
        try check(jfs_curl_easy_setopt_long(easy, CURLOPT_LOW_SPEED_TIME, max(1, c.lowSpeedTime)), "LOW_SPEED_TIME")
        try check(jfs_curl_easy_setopt_long(easy, CURLOPT_TCP_KEEPALIVE, 1), "TCP_KEEPALIVE")
        try check(jfs_curl_easy_setopt_string(easy, CURLOPT_USERAGENT, c.userAgent), "USERAGENT")
        // HTTP/2 where a TLS server offers it (ALPN), so one connection carries many parts.
        try check(jfs_curl_easy_setopt_long(easy, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_2TLS)), "HTTP_VERSION")
        // Over TLS, wait for the first connection's ALPN answer rather than opening one per
        // transfer: an HTTP/2 server then carries every part as a stream of one connection.
        // Not for plain http (HTTP/1.1 only), where waiting would queue transfers behind a
        // connection that may stall.
        if t.url.lowercased().hasPrefix("https://") {
            try check(jfs_curl_easy_setopt_long(easy, CURLOPT_PIPEWAIT, 1), "PIPEWAIT")
        }
        if let ca = c.caFile { try check(jfs_curl_easy_setopt_string(easy, CURLOPT_CAINFO, ca), "CAINFO") }
        if c.netrc { try check(jfs_curl_easy_setopt_long(easy, CURLOPT_NETRC, 1 /* CURL_NETRC_OPTIONAL */), "NETRC") }
        if let f = c.netrcFile { try check(jfs_curl_easy_setopt_string(easy, CURLOPT_NETRC_FILE, f), "NETRC_FILE") }
        if t.resumeFrom > 0 { try check(jfs_curl_easy_setopt_off(easy, CURLOPT_RESUME_FROM_LARGE, curl_off_t(t.resumeFrom)), "RESUME_FROM_LARGE") }
        if let max = t.maxLength {
            // A Content-Length over the bound fails before any byte is written.
            try check(jfs_curl_easy_setopt_off(easy, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(max - t.resumeFrom)), "MAXFILESIZE_LARGE")
        }
        // A piece of the body per WriteBehind buffer: fewer, larger receives and writes.
        if t.path != nil { try check(jfs_curl_easy_setopt_long(easy, CURLOPT_BUFFERSIZE, WriteBehind.pieceSize), "BUFFERSIZE") }
        if t.request.freshConnect { try check(jfs_curl_easy_setopt_long(easy, CURLOPT_FRESH_CONNECT, 1), "FRESH_CONNECT") }
        if t.request.remoteTime { try check(jfs_curl_easy_setopt_long(easy, CURLOPT_FILETIME, 1), "FILETIME") }
    }

    private func finish(_ easy: UnsafeMutableRawPointer, _ code: CURLcode) {
        guard let t = active.removeValue(forKey: easy) else { return }
        var status = 0
        _ = jfs_curl_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
        var effective: UnsafeMutablePointer<CChar>?
        _ = jfs_curl_easy_getinfo_string(easy, CURLINFO_EFFECTIVE_URL, &effective)
        let effectiveURL = effective.map { String(cString: $0) } ?? t.url
        var fileTime: curl_off_t = -1
        if t.request.remoteTime { _ = jfs_curl_easy_getinfo_off(easy, CURLINFO_FILETIME_T, &fileTime) }
        curl_multi_remove_handle(multi, easy)
        curl_easy_cleanup(easy)
        // From here the file belongs to the lane that writes it (`deliver`).
        let fd = t.fd
        t.fd = -1
        let result: Result<TransferSummary, TransferError>
        if code == CURLE_OK, t.request.exactLength, let max = t.maxLength, t.offset != max {
            result = .failure(TransferError(reason: .protocolViolation("body ended at byte \(t.offset) of \(max)")))
        } else if code == CURLE_OK {
            result = .success(TransferSummary(received: t.received, fileSize: t.offset, effectiveURL: effectiveURL,
                                              body: t.path == nil ? t.body : nil,
                                              checksum: fd >= 0 ? nil : t.hasher?.finalize(),
                                              remoteTime: fileTime >= 0 ? Int64(fileTime) : nil))
        } else if let violation = t.violation {
            result = .failure(TransferError(reason: .protocolViolation(violation)))
        } else if code == CURLE_FILESIZE_EXCEEDED {
            result = .failure(TransferError(reason: .tooLong(t.maxLength ?? 0)))
        } else if t.tooLong {
            result = .failure(TransferError(reason: .tooLong(t.maxLength ?? 0)))
        } else if case let e = t.writeError.load(ordering: .relaxed), e != 0 {
            result = .failure(Self.writeFailure(t.path ?? "", "write failed", e))
        } else if code == CURLE_RANGE_ERROR || (code == CURLE_HTTP_RETURNED_ERROR && status == 416) {
            result = .failure(TransferError(reason: .rangeRefused))
        } else if code == CURLE_HTTP_RETURNED_ERROR {
            result = .failure(TransferError(reason: .status(status)))
        } else {
            var text = String(cString: t.errorBuffer)
            if text.isEmpty { text = String(cString: curl_easy_strerror(code)) }
            text = ProxyEnvironment.annotate(text, code: code, url: t.url)
            result = .failure(TransferError(reason: .curl(code: Int(code.rawValue), text: text)))
        }
        release(t, measured: true, result: result)
        deliver(t, result, fd: fd)
    }
}

/// Percent-encodes the bytes libcurl refuses in a URL (blanks, non-ASCII, quotes), keeping the
/// URL's structure and any escapes already present.
public func encodeURLForCurl(_ url: String) -> String {
    // Most URLs need nothing (once per transfer and several times per part: no copy then).
    if url.utf8.allSatisfy(isSafeInCurlURL) { return url }
    let hex = Array("0123456789ABCDEF".utf8)
    var out = [UInt8]()
    out.reserveCapacity(url.utf8.count + 16)
    for b in url.utf8 {
        if isSafeInCurlURL(b) {
            out.append(b)
        } else {
            out += [UInt8(ascii: "%"), hex[Int(b >> 4)], hex[Int(b & 15)]]
        }
    }
    return String(decoding: out, as: UTF8.self)
}

/// Printable ASCII other than space and the characters RFC 3986 never allows unencoded.
@inline(__always) private func isSafeInCurlURL(_ b: UInt8) -> Bool {
    switch b {
    case UInt8(ascii: "\""), UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "\\"), UInt8(ascii: "^"),
         UInt8(ascii: "`"), UInt8(ascii: "{"), UInt8(ascii: "|"), UInt8(ascii: "}"):
        return false
    default:
        return b > 0x20 && b < 0x7F
    }
}
