#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import ImageAssembly
import JigdoFormat
import Logging
import Synchronization

/// The part source of an image with downloads: local copies first (`LocalParts`), then the
/// part cache, then the jigdo's servers.
///
/// A read of a part that is neither local nor cached blocks only that read until the part is
/// downloaded and verified; reads of other parts go on meanwhile. Each part (by checksum) has
/// one life at a time: missing -> downloading -> done | failed; every reader of a part being
/// downloaded waits for that one download. After a failure the waiting readers get the error
/// (naming each URL tried) and the next read starts over.
///
/// Sequential reading is detected and the next parts are fetched ahead, within a window bounded
/// in parts and bytes. Downloads go to files in the cache, never to memory.
public final class PartStore: PartSource, @unchecked Sendable {
    public struct Options: Sendable {
        /// Never download (`--offline`): parts must be local or cached.
        public var offline = false
        /// Read-ahead window once sequential reading is seen: at most this many parts ...
        public var readAheadParts = 32
        /// ... and this many bytes ahead of the read position.
        public var readAheadBytes: Int64 = 128 << 20
        /// Verified parts held in memory when the cache disk is full (ENOSPC): the read is
        /// still served, only caching is lost. Least recently used go first.
        public var memoryBudget = 256 << 20
        public init() {}
    }

    private enum PartState {
        /// A download is running (or waiting for a retry); `transfer` is the current queued id.
        case downloading(attempt: UInt64, prefetch: Bool, transfer: UInt64)
        /// The part is in the cache.
        case done
        /// The last attempt failed; waiters of that attempt get the error, a new read retries.
        case failed(attempt: UInt64, JigdoError)
    }

    /// The download of one part, passed along the chain of locations and retries.
    private struct Job: Sendable {
        var index: Int
        var checksum: Checksum
        var length: Int64
        var attempt: UInt64
        var prefetch: Bool
        var urls: [String]
        var urlIndex = 0
        var tries = 0
        var restartedFromZero = false
        var errors: [String] = []
        /// Descriptor holding the lock of the partial file (-1: not taken yet).
        var lockFD: Int32 = -1
    }

    private struct State {
        var parts: [Checksum: PartState] = [:]
        var nextAttempt: UInt64 = 1
        // Sequential read detection.
        var lastRead = -10
        var sequentialRun = 0
        var readAheadFrontier = 0
        // Figures for `status`.
        var bytesDownloaded: Int64 = 0
        var partsDownloaded = 0
        var failuresByHost: [String: Int] = [:]
        /// Failures in a row per host and when the last one was: a host that keeps failing
        /// is tried last for a while.
        var failingHosts: [String: (inARow: Int, last: DispatchTime)] = [:]
        /// URL prefix -> prefix it redirected to (a mirror redirector's answer), and until when
        /// it is used instead of asking the redirector again.
        var redirects: [String: (target: String, until: DispatchTime)] = [:]
    }

    /// How long a redirector's answer is remembered.
    static let redirectLifetime: UInt64 = 600 * 1_000_000_000

    /// A host with this many failures in a row is tried after the others ...
    static let failingHostThreshold = 3
    /// ... for this long after its last failure.
    static let failingHostPenalty: UInt64 = 300 * 1_000_000_000

    public let template: TemplateInfo
    public let resolver: LocationResolver
    public let local: (any PartSource)?
    public let cache: PartCache?
    public let downloader: HTTPDownloader?
    public let options: Options
    public let downloadConfig: DownloadConfig
    private let logger: Logger
    // Lock order: `condition` is taken alone; never held across I/O, a libcurl call, or a
    // call into `local`/`cache`/`downloader` (their own locks are leaves).
    private let condition = NSCondition()
    private var state = State()
    private let openFiles = ByteBudgetCache<Checksum, ReadOnlyFile>(budget: 64)
    private let memoryParts: ByteBudgetCache<Checksum, [UInt8]>

    /// - Parameters:
    ///   - local: parts found on disk (`--scan`, `--map`, local locations, old images); may be nil.
    ///   - cache: the part cache; nil means no cache and no downloads.
    ///   - downloader: nil means no downloads (as `--offline`).
    public init(
        template: TemplateInfo, resolver: LocationResolver, local: (any PartSource)?, cache: PartCache?,
        downloader: HTTPDownloader?, options: Options = Options(),
        logger: Logger = Logger(label: "jigdofs.download")
    ) {
        self.template = template
        self.resolver = resolver
        self.local = local
        self.cache = cache
        self.downloader = cache == nil ? nil : downloader
        self.options = options
        self.memoryParts = ByteBudgetCache(budget: options.memoryBudget)
        self.downloadConfig = downloader?.config ?? DownloadConfig()
        self.logger = logger
    }

    private var downloadsEnabled: Bool { !options.offline && downloader != nil && cache != nil }

    // MARK: PartSource

    public func isLocallyAvailable(_ index: Int) -> Bool {
        if local?.isLocallyAvailable(index) == true { return true }
        let part = template.parts[index]
        return cache?.contains(part.checksum, length: part.length) == true
    }

    public func readPart(_ index: Int, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        noteRead(index)
        var localFailure: JigdoError?
        if let local, local.isLocallyAvailable(index) {
            do {
                try local.readPart(index, at: offset, into: buffer)
                return
            } catch let e as JigdoError where e.kind == .partUnavailable {
                // A local location that failed its check: fall back to cache and download.
                localFailure = e
            }
        }
        let loaded: Loaded
        do {
            loaded = try cachedFile(index)
        } catch let e as JigdoError where e.kind == .partUnavailable && localFailure != nil {
            // Say why the local copy was refused: that is what the user can fix.
            throw JigdoError(.partUnavailable, path: localFailure!.path, "\(localFailure!.message); no other source: \(e.message)")
        }
        switch loaded {
        case .file(let file):
            try file.read(at: offset, into: buffer)
        case .memory(let bytes):
            bytes.withUnsafeBytes { src in
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[Int(offset)..<Int(offset) + buffer.count]))
            }
        }
    }

    /// Where the verified bytes of a downloaded part are.
    private enum Loaded {
        case file(ReadOnlyFile)
        case memory([UInt8])
    }

    // MARK: public helpers for prefetch / make-image / status

    /// The remote URLs of a part, in the order they are tried.
    public func urls(forPart index: Int) -> [String] {
        resolver.locations(forPart: template.parts[index].checksum).compactMap {
            if case .remote(let u) = $0 { return u }
            return nil
        }
    }

    /// Parts neither local nor cached.
    public func missingParts() -> [Int] {
        template.parts.indices.filter { template.parts[$0].length > 0 && !isLocallyAvailable($0) }
    }

    /// Starts read-ahead downloads of these parts (not waiting); parts already local, cached or
    /// being downloaded are skipped.
    public func prefetch(_ indices: [Int]) {
        guard downloadsEnabled else { return }
        for i in indices where !isLocallyAvailable(i) { startIfIdle(i, prefetch: true) }
    }

    /// Waits until the part is local or cached, downloading it if needed.
    public func ensureAvailable(_ index: Int) throws {
        if local?.isLocallyAvailable(index) == true { return }
        _ = try cachedFile(index)
    }

    public struct Statistics: Sendable {
        public var partsDownloaded: Int
        public var bytesDownloaded: Int64
        public var downloading: Int
        public var failuresByHost: [String: Int]
    }

    /// Parts (distinct checksums with bytes) by where they are now; stats every cache file, so
    /// for a status display, not for the read path.
    public struct Availability: Sendable, Equatable {
        public var total = 0
        public var local = 0
        public var cached = 0
        public var inMemory = 0
        public var missing = 0
    }

    public func availability() -> Availability {
        var a = Availability()
        var seen = Set<Checksum>()
        for (i, part) in template.parts.enumerated() where part.length > 0 && seen.insert(part.checksum).inserted {
            a.total += 1
            if local?.isLocallyAvailable(i) == true {
                a.local += 1
            } else if cache?.contains(part.checksum, length: part.length) == true {
                a.cached += 1
            } else if memoryParts.value(for: part.checksum) != nil {
                a.inMemory += 1
            } else {
                a.missing += 1
            }
        }
        return a
    }

    public func statistics() -> Statistics {
        condition.lock(); defer { condition.unlock() }
        let inFlight = state.parts.values.filter { if case .downloading = $0 { return true }; return false }.count
        return Statistics(partsDownloaded: state.partsDownloaded, bytesDownloaded: state.bytesDownloaded,
                          downloading: inFlight, failuresByHost: state.failuresByHost)
    }

    // MARK: reading from the cache, waiting for downloads

    private func cachedFile(_ index: Int) throws -> Loaded {
        let part = template.parts[index]
        if let f = openFiles.value(for: part.checksum) { return .file(f) }
        if let m = memoryParts.value(for: part.checksum) { return .memory(m) }
        guard let cache else { throw unavailable(part, "has no local copy") }
        var f: ReadOnlyFile?
        for _ in 0..<3 where f == nil {
            if let m = memoryParts.value(for: part.checksum) { return .memory(m) }
            if !cache.contains(part.checksum, length: part.length) {
                guard downloadsEnabled else {
                    throw unavailable(part, options.offline ? "has no local copy and is not in the cache (downloads are off: --offline)" : "has no local copy")
                }
                forgetEvicted(part.checksum)
                try waitForDownload(index)
                if let m = memoryParts.value(for: part.checksum) { return .memory(m) }
            }
            // The part may be evicted (--cache-size) between its download and this open.
            f = try? ReadOnlyFile(path: cache.path(for: part.checksum))
            if f == nil, let m = memoryParts.value(for: part.checksum) { return .memory(m) }
        }
        guard let f else { throw unavailable(part, "was evicted from the cache before it could be read (--cache-size too small?)") }
        if cache.sizeLimit != nil { cache.touch(part.checksum) }
        guard f.size == part.length else {
            throw JigdoError(.io, path: f.path, "cached part changed size (\(f.size) bytes, part is \(part.length))")
        }
        openFiles.insert(f, for: part.checksum, cost: 1)
        return .file(f)
    }

    private func unavailable(_ part: TemplatePart, _ why: String) -> JigdoError {
        JigdoError(.partUnavailable, "part \(part.checksum.base64) (\(part.length) bytes) \(why)")
    }

    /// A part marked done whose cache file is gone (evicted) is missing again.
    private func forgetEvicted(_ sum: Checksum) {
        condition.lock()
        if case .done? = state.parts[sum] { state.parts[sum] = nil }
        condition.unlock()
    }

    /// Blocks until the part is in the cache; starts its download unless one is running.
    private func waitForDownload(_ index: Int) throws {
        let sum = template.parts[index].checksum
        condition.lock()
        var waitingOn: UInt64?
        while true {
            switch state.parts[sum] {
            case .done?:
                condition.unlock()
                return
            case .downloading(let attempt, let prefetch, let transfer)?:
                waitingOn = attempt
                if prefetch {
                    state.parts[sum] = .downloading(attempt: attempt, prefetch: false, transfer: transfer)
                    condition.unlock()
                    downloader?.promote(transfer)
                    condition.lock()
                    continue
                }
                condition.wait()
            case .failed(_, let error)? where waitingOn != nil:
                condition.unlock()
                throw error
            case .failed?, nil:
                let attempt = state.nextAttempt
                state.nextAttempt += 1
                state.parts[sum] = .downloading(attempt: attempt, prefetch: false, transfer: 0)
                waitingOn = attempt
                condition.unlock()
                begin(index: index, attempt: attempt, prefetch: false)
                condition.lock()
            }
        }
    }

    /// Starts a download of the part unless one is running or it is done.
    private func startIfIdle(_ index: Int, prefetch: Bool) {
        let sum = template.parts[index].checksum
        condition.lock()
        let attempt: UInt64?
        switch state.parts[sum] {
        case .downloading?, .done?:
            attempt = nil
        case .failed?, nil:
            attempt = state.nextAttempt
            state.nextAttempt += 1
            state.parts[sum] = .downloading(attempt: attempt!, prefetch: prefetch, transfer: 0)
        }
        condition.unlock()
        if let attempt { begin(index: index, attempt: attempt, prefetch: prefetch) }
    }

    // MARK: read-ahead

    private func noteRead(_ index: Int) {
        guard downloadsEnabled, options.readAheadParts > 0 else { return }
        condition.lock()
        if index >= state.lastRead && index <= state.lastRead + 2 {
            state.sequentialRun += index == state.lastRead ? 0 : 1
        } else {
            state.sequentialRun = 0
            state.readAheadFrontier = index + 1
        }
        state.lastRead = index
        var range: Range<Int>?
        if state.sequentialRun >= 2 {
            // Extend the window from the frontier up to N parts / M bytes past this read.
            let start = max(state.readAheadFrontier, index + 1)
            var end = start
            var bytes: Int64 = 0
            for i in (index + 1)..<min(template.parts.count, index + 1 + options.readAheadParts) {
                bytes += template.parts[i].length
                if bytes > options.readAheadBytes && i > index + 1 { break }
                end = i + 1
            }
            if end > start {
                range = start..<end
                state.readAheadFrontier = end
            }
        }
        condition.unlock()
        if let range { prefetch(Array(range)) }
    }

    // MARK: the download of one part

    private func begin(index: Int, attempt: UInt64, prefetch: Bool) {
        let part = template.parts[index]
        let job = Job(index: index, checksum: part.checksum, length: part.length, attempt: attempt,
                      prefetch: prefetch, urls: orderedByHealth(urls(forPart: index)))
        if job.urls.isEmpty {
            finish(job, error: unavailable(part, "has no local copy and no download location in the .jigdo"))
            return
        }
        tryLocation(job)
    }

    private func tryLocation(_ job: Job) {
        var job = job
        guard job.urlIndex < job.urls.count, let cache, let downloader else {
            let part = template.parts[job.index]
            let detail = job.errors.isEmpty ? "" : ": " + job.errors.joined(separator: "; ")
            finish(job, error: unavailable(part, "could not be downloaded from any location\(detail)"))
            return
        }
        if job.lockFD < 0 {
            // Already there (another process sharing the cache finished it): done, without
            // making a lock file that this process might exit before removing.
            if cache.contains(job.checksum, length: job.length) {
                finish(job, error: nil)
                return
            }
            do {
                guard let fd = try cache.lockPartial(for: job.checksum) else {
                    // Another process sharing the cache is downloading it: look again shortly.
                    let retry = job
                    DispatchQueue.global().asyncAfter(deadline: .now() + max(downloadConfig.retryDelay, 0.2)) { self.tryLocation(retry) }
                    return
                }
                job.lockFD = fd
            } catch let e as JigdoError {
                finish(job, error: e)
                return
            } catch {
                finish(job, error: JigdoError(.io, "\(error)"))
                return
            }
        }
        if cache.contains(job.checksum, length: job.length) {
            // Another process sharing the cache finished it meanwhile.
            unlink(cache.partialPath(for: job.checksum))
            finish(job, error: nil)
            return
        }
        let partial = cache.partialPath(for: job.checksum)
        var resume = fileSize(partial) ?? 0
        if resume > job.length {
            unlink(partial)
            resume = 0
        }
        if resume == job.length && job.length > 0 {
            verify(job, partial: partial, resumedFrom: resume)
            return
        }
        let url = job.urls[job.urlIndex]
        let requestURL = applyRedirect(url)
        let store = self
        job.prefetch = currentlyPrefetch(job)
        let submitted = job
        let resumeFrom = resume
        let id = downloader.submit(
            url: requestURL, to: partial, resumeFrom: resumeFrom, maxLength: job.length,
            priority: job.prefetch ? .prefetch : .demand
        ) { result in
            store.transferDone(submitted, requestURL: requestURL, partial: partial, resumedFrom: resumeFrom, result: result)
        }
        condition.lock()
        var promoted = false
        if case .downloading(let a, let p, _)? = state.parts[job.checksum], a == job.attempt {
            state.parts[job.checksum] = .downloading(attempt: a, prefetch: p, transfer: id)
            promoted = job.prefetch && !p
        }
        condition.unlock()
        // A reader started waiting while this was being submitted.
        if promoted { downloader.promote(id) }
    }

    /// Whether nobody waits for the part yet (its download may queue behind demand reads).
    private func currentlyPrefetch(_ job: Job) -> Bool {
        condition.lock(); defer { condition.unlock() }
        if case .downloading(let a, let p, _)? = state.parts[job.checksum], a == job.attempt { return p }
        return false
    }

    private func transferDone(_ job: Job, requestURL: String, partial: String, resumedFrom: Int64, result: Result<TransferSummary, TransferError>) {
        var job = job
        let url = job.urls[job.urlIndex]
        switch result {
        case .success(let summary):
            recordDownloaded(summary.received)
            if summary.effectiveURL != requestURL { learnRedirect(from: requestURL, to: summary.effectiveURL) }
            verify(job, partial: partial, resumedFrom: resumedFrom)
        case .failure(let error):
            if requestURL != url {
                // The remembered redirect target failed: ask the original server again.
                forgetRedirect(for: url)
                tryLocation(job)
                return
            }
            switch error.reason {
            case .rangeRefused where !job.restartedFromZero:
                unlink(partial)
                job.restartedFromZero = true
                tryLocation(job)
                return
            case .diskFull:
                unlink(partial)
                downloadIntoMemory(job, requestURL: requestURL, cause: error)
                return
            case .tooLong:
                unlink(partial)
                logger.warning("\(url): \(error); not used")
            case .cancelled:
                job.urlIndex = job.urls.count
                job.errors.append("\(url): \(error)")
                tryLocation(job)
                return
            default:
                break
            }
            job.tries += 1
            if error.isTransient && job.tries < downloadConfig.attemptsPerLocation {
                let delay = downloadConfig.retryDelay * Double(1 << min(job.tries - 1, 6))
                logger.info("\(url): \(error); retrying in \(delay) s")
                let retry = job
                DispatchQueue.global().asyncAfter(deadline: .now() + delay) { self.tryLocation(retry) }
                return
            }
            nextLocation(job, failed: "\(url): \(error)", mirrorFault: true)
        }
    }

    /// The cache disk is full: fetch the part into memory, check it there and serve it from
    /// memory (caching is lost, correctness is not).
    private func downloadIntoMemory(_ job: Job, requestURL: String, cause: TransferError) {
        let url = job.urls[job.urlIndex]
        guard job.length <= Int64(options.memoryBudget), let downloader else {
            nextLocation(job, failed: "\(url): \(cause) (cache disk full; the part is too large to keep in memory)", mirrorFault: false)
            return
        }
        // Without the part or its path, so a mount's log says it once (repeats are folded).
        logger.warning("part cache disk full: downloaded parts are kept in memory instead")
        logger.debug("\(cause): part \(job.checksum.base64) is kept in memory")
        let store = self
        let submitted = job
        downloader.submit(url: requestURL, to: nil, maxLength: job.length, priority: .demand) { result in
            store.memoryDone(submitted, result: result)
        }
    }

    private func memoryDone(_ job: Job, result: Result<TransferSummary, TransferError>) {
        let url = job.urls[job.urlIndex]
        switch result {
        case .success(let summary):
            let body = summary.body ?? []
            recordDownloaded(summary.received)
            var hasher = ChecksumHasher(job.checksum.kind ?? template.checksumKind)
            hasher.update(body)
            let sum = hasher.finalize()
            if sum == job.checksum && Int64(body.count) == job.length {
                noteSuccess(url)
                memoryParts.insert(body, for: job.checksum, cost: body.count)
                finish(job, error: nil)
                return
            }
            logger.error("\(url): served wrong bytes for part \(job.checksum.base64) (checksum \(sum.base64)); discarded")
            nextLocation(job, failed: "\(url): wrong checksum \(sum.base64)", mirrorFault: true)
        case .failure(let error):
            nextLocation(job, failed: "\(url): \(error)", mirrorFault: true)
        }
    }

    /// Gives up on the current location of `job` (recording why, and whether the mirror was to
    /// blame) and tries the next one.
    private func nextLocation(_ job: Job, failed: String, mirrorFault: Bool) {
        var job = job
        if mirrorFault {
            noteFailure(job.urls[job.urlIndex])
            // Once per location and error in a mount's log (LogSetup folds repeats).
            logger.warning("download failed: \(failed)")
        }
        job.errors.append(failed)
        job.urlIndex += 1
        job.tries = 0
        tryLocation(job)
    }

    /// Checks the downloaded file; a match goes into the cache, a mismatch is thrown away.
    private func verify(_ job: Job, partial: String, resumedFrom: Int64) {
        var job = job
        let url = job.urls[job.urlIndex]
        let kind = job.checksum.kind ?? template.checksumKind
        let sum: Checksum
        do {
            sum = try ReadOnlyFile(path: partial).checksum(kind)
        } catch {
            nextLocation(job, failed: "\(url): \(error)", mirrorFault: false)
            return
        }
        guard sum == job.checksum else {
            unlink(partial)
            if resumedFrom > 0 && !job.restartedFromZero {
                // The first bytes may have come from another mirror or an older attempt.
                job.restartedFromZero = true
                tryLocation(job)
                return
            }
            logger.error("\(url): served wrong bytes for part \(job.checksum.base64) (checksum \(sum.base64)); discarded")
            nextLocation(job, failed: "\(url): wrong checksum \(sum.base64)", mirrorFault: true)
            return
        }
        noteSuccess(url)
        do {
            try cache?.commit(partial: partial, as: job.checksum)
            finish(job, error: nil)
            cache?.noteAdded(bytes: job.length)
        } catch {
            // E.g. no room for a new cache directory: serve the verified bytes from memory.
            if job.length <= Int64(options.memoryBudget), let bytes = try? ReadOnlyFile(path: partial).readAll(),
               Int64(bytes.count) == job.length {
                logger.warning("the part cache cannot store parts (\(String(describing: error).split(separator: ":").last.map { $0.trimmingPrefix(" ") } ?? "")); they are kept in memory instead")
                logger.debug("\(error); part \(job.checksum.base64) is kept in memory")
                memoryParts.insert(bytes, for: job.checksum, cost: bytes.count)
                unlink(partial)
                finish(job, error: nil)
            } else {
                finish(job, error: (error as? JigdoError) ?? JigdoError(.io, "\(error)"))
            }
        }
    }

    private func finish(_ job: Job, error: JigdoError?) {
        if job.lockFD >= 0 {
            // An empty partial file (made to hold the lock) is not worth keeping.
            if let cache, fileSize(cache.partialPath(for: job.checksum)) == 0 { unlink(cache.partialPath(for: job.checksum)) }
            close(job.lockFD)
        }
        condition.lock()
        var readerWaits = false
        if case .downloading(let a, let prefetch, _)? = state.parts[job.checksum], a == job.attempt {
            state.parts[job.checksum] = error.map { .failed(attempt: a, $0) } ?? .done
            readerWaits = !prefetch
        }
        if error == nil { state.partsDownloaded += 1 }
        condition.broadcast()
        condition.unlock()
        // A failed read-ahead is retried when the part is read. A failing read throws the error
        // to its reader, which reports it (the CLI's one line, the mount's EIO log line).
        if let error { logger.info("\(readerWaits ? "" : "read-ahead: ")\(error)") }
    }

    private func recordDownloaded(_ bytes: Int64) {
        condition.lock()
        state.bytesDownloaded += bytes
        condition.unlock()
    }

    private func noteFailure(_ url: String) {
        let host = hostOf(url)
        condition.lock()
        state.failuresByHost[host, default: 0] += 1
        state.failingHosts[host] = ((state.failingHosts[host]?.inARow ?? 0) + 1, .now())
        condition.unlock()
    }

    private func noteSuccess(_ url: String) {
        let host = hostOf(url)
        condition.lock()
        state.failingHosts[host] = nil
        condition.unlock()
    }

    /// Remembers that `from` redirected to `to`, as a mapping of their prefixes before the
    /// common tail (the part's path below the mirror root).
    private func learnRedirect(from: String, to: String) {
        let a = from.split(separator: "/", omittingEmptySubsequences: false)
        let b = to.split(separator: "/", omittingEmptySubsequences: false)
        var common = 0
        while common < a.count - 3 && common < b.count - 3 && a[a.count - 1 - common] == b[b.count - 1 - common] { common += 1 }
        guard common >= 1 else { return }
        let prefixA = a[0..<(a.count - common)].joined(separator: "/") + "/"
        let prefixB = b[0..<(b.count - common)].joined(separator: "/") + "/"
        guard prefixA != prefixB, isRemoteURL(prefixB) else { return }
        condition.lock()
        state.redirects[prefixA] = (prefixB, DispatchTime(uptimeNanoseconds: DispatchTime.now().uptimeNanoseconds + Self.redirectLifetime))
        condition.unlock()
        logger.info("\(prefixA) redirects to \(prefixB); remembered for a while")
    }

    /// The URL to ask: a remembered redirect target, or `url` itself.
    private func applyRedirect(_ url: String) -> String {
        let now = DispatchTime.now()
        condition.lock(); defer { condition.unlock() }
        guard !state.redirects.isEmpty else { return url }
        var best: (String, String)?
        for (prefix, r) in state.redirects where r.until > now && url.hasPrefix(prefix) {
            if best == nil || prefix.count > best!.0.count { best = (prefix, r.target) }
        }
        guard let (prefix, target) = best else { return url }
        return target + url.dropFirst(prefix.count)
    }

    private func forgetRedirect(for url: String) {
        condition.lock()
        for prefix in state.redirects.keys where url.hasPrefix(prefix) { state.redirects[prefix] = nil }
        condition.unlock()
    }

    /// The URLs in the .jigdo's order, except that hosts which keep failing go last.
    private func orderedByHealth(_ urls: [String]) -> [String] {
        guard urls.count > 1 else { return urls }
        let now = DispatchTime.now().uptimeNanoseconds
        condition.lock()
        // No subtraction: another thread may record a failure stamped after `now`.
        let bad = Set(state.failingHosts.filter {
            $0.value.inARow >= Self.failingHostThreshold && now < $0.value.last.uptimeNanoseconds + Self.failingHostPenalty
        }.keys)
        condition.unlock()
        guard !bad.isEmpty else { return urls }
        return urls.filter { !bad.contains(hostOf($0)) } + urls.filter { bad.contains(hostOf($0)) }
    }
}

/// `scheme://host[:port]` of a URL (for per-mirror figures).
func hostOf(_ url: String) -> String {
    guard let r = url.range(of: "://") else { return url }
    let rest = url[r.upperBound...]
    let end = rest.firstIndex(of: "/") ?? rest.endIndex
    return String(url[..<end])
}

extension PartStore: PartStatisticsProvider {
    /// For `jigdofs status`: where the parts are now, and what the downloads did.
    public func statistics(template: TemplateInfo) -> PartStatistics {
        let a = availability()
        let s = statistics()
        var out = PartStatistics()
        out.partsTotal = a.total
        out.partsLocal = a.local
        out.partsCached = a.cached + a.inMemory
        out.partsMissing = a.missing
        out.bytesDownloaded = s.bytesDownloaded
        out.transfersInFlight = s.downloading
        out.failuresByMirror = s.failuresByHost
        return out
    }
}
