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
/// downloaded waits for that one download. When it fails, the readers waiting for it are woken
/// with its error (naming each URL tried): a blocking read throws it; a FUSE request (a
/// `WouldWait` waiter) is answered EIO by the bridge, which logs the error. The next read
/// starts a new attempt (a blocking reader that wakes only after it began waits for it).
///
/// Sequential reading is detected and the next parts are fetched ahead, within a window bounded
/// in parts and bytes. Downloads go to files in the cache, never to memory.
public final class PartPipeline: PartSource, @unchecked Sendable {
    public struct Options: Sendable {
        /// Never download (`--offline`): parts must be local or cached.
        public var offline = false
        /// Read-ahead window once sequential reading is seen: at most this many parts ...
        public var readAheadParts = 64
        /// ... and this many bytes ahead of the read position.
        public var readAheadBytes: Int64 = 128 << 20
        /// Verified parts held in memory when the cache disk is full (ENOSPC): the read is
        /// still served, only caching is lost. Least recently used go first.
        public var memoryBudget = 256 << 20
        public init() {}
    }

    /// Requests waiting for a part without blocking a thread (`WouldWait`).
    typealias Waiter = @Sendable (JigdoError?) -> Void

    /// The download of one part, passed along the chain of locations and retries.
    private struct Job: Sendable {
        var index: Int
        var checksum: Checksum
        var length: Int64
        var attempt: UInt64
        var prefetch: Bool
        /// Which location next, retries, fallbacks: the decisions, without I/O.
        var walk: DownloadWalk
        /// Descriptor holding the lock of the partial file (-1: not taken yet).
        var lockFD: Int32 = -1
        /// The location being tried (the walk has one whenever a transfer is started).
        var url: String { walk.currentURL ?? "" }
    }

    private struct State {
        /// Every part's life: missing -> downloading -> done | failed (see `PartLives`).
        var parts = PartLives<Checksum, JigdoError, Waiter>()
        // Sequential read detection.
        var streams = ReadStreams()
        // Figures for `status`.
        var bytesDownloaded: Int64 = 0
        var partsDownloaded = 0
        var failuresByHost: [String: Int] = [:]
        /// Failures per mirror location (URL prefix): a mirror that keeps failing (or stalls
        /// once) is tried last for a while. Per location, not per host: a broken mirror does
        /// not demote a good one on the same host.
        var health = MirrorHealth()
        /// The memory fallback was announced (once per store).
        var warnedMemory = false
        /// URL prefix -> prefix it redirected to (a mirror redirector's answer), and until when
        /// it is used instead of asking the redirector again.
        var redirects: [String: (target: String, until: DispatchTime)] = [:]
    }

    /// How long a redirector's answer is remembered.
    static let redirectLifetime: UInt64 = 600 * 1_000_000_000

    // Mirrors that keep failing go last for a while: `MirrorHealth`.

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
    /// Cache files this process checked (or wrote from bytes it hashed), as they were then:
    /// a file whose identity differs is checked again before a byte of it is served.
    private let verifiedFiles = Mutex<[Checksum: FileIdentity]>([:])

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
        var pinned: Checksum?
        defer { if let pinned { cache?.unpin(pinned) } }
        try readPart(index, at: offset, into: buffer, round: 0, pinned: &pinned)
    }

    /// `pinned`: the part this read pinned in the cache (to unpin when it returns).
    private func readPart(_ index: Int, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer, round: Int,
                          pinned: inout Checksum?) throws {
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
        if pinned == nil { pinned = pinWhileRead(template.parts[index].checksum) }
        let loaded: Loaded
        do {
            loaded = try cachedFile(index)
        } catch let e as JigdoError where e.kind == .partUnavailable && localFailure != nil {
            // Say why the local copy was refused: that is what the user can fix.
            // The line says both; the cause kept is the local refusal (the one to fix).
            throw JigdoError(.partUnavailable, path: localFailure!.path, "\(localFailure!.reason); no other source: \(e.reason)", underlying: localFailure)
        }
        switch loaded {
        case .file(let file):
            try file.read(at: offset, into: buffer)
            let sum = template.parts[index].checksum
            let now = file.currentIdentity()
            // As it was opened, or as this process checked or touched it since (another
            // reader's `touch` of the same file changes its mtime and ctime, not its bytes).
            if now != file.identity, now == nil || verifiedFiles.withLock({ $0[sum] }) != now {
                // Written to since it was checked: these bytes may not be the part's. Check
                // the file again (or fetch the part again) and read once more.
                openFiles.remove(sum)
                verifiedFiles.withLock { _ = $0.removeValue(forKey: sum) }
                guard round < 2 else {
                    throw JigdoError(.io, path: file.path, "cached part keeps changing while it is read")
                }
                try readPart(index, at: offset, into: buffer, round: round + 1, pinned: &pinned)
            }
        case .memory(let bytes):
            bytes.withUnsafeBytes { src in
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[Int(offset)..<Int(offset) + buffer.count]))
            }
        }
    }

    /// Pins the part in the cache for this read (`--cache-size` never evicts a pinned part),
    /// before it is looked for or waited for: the download's commit and the eviction after it
    /// leave it there for this reader. A FUSE request (`ReadContext.holds`) keeps its pins
    /// across its rounds until it is answered; any other read until `readPart` returns (the
    /// checksum returned, to unpin).
    private func pinWhileRead(_ sum: Checksum) -> Checksum? {
        guard let cache, cache.sizeLimit != nil else { return nil }
        if let holds = ReadContext.holds {
            holds.hold(cache.path(for: sum)) {
                cache.pin(sum)
                return { cache.unpin(sum) }
            }
            return nil
        }
        cache.pin(sum)
        return sum
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

    /// `urls(forPart:)` with each URL's total weight (`--try-first`/`--try-last`).
    private func weightedURLs(forPart index: Int) -> [(url: String, weight: Int)] {
        resolver.weightedLocations(forPart: template.parts[index].checksum).compactMap {
            if case .remote(let u) = $0.location { return (u, $0.weight) }
            return nil
        }
    }

    /// Parts neither local nor cached.
    public func missingParts() -> [Int] { missingParts(of: template.parts) }

    /// Starts read-ahead downloads of these parts (not waiting); parts already local, cached or
    /// being downloaded are skipped.
    public func prefetch(_ indices: [Int]) {
        guard downloadsEnabled else { return }
        for i in indices where !isLocallyAvailable(i) { startIfIdle(i, prefetch: true) }
    }

    /// Waits until the part is local or cached, downloading it if needed.
    public func ensureAvailable(_ index: Int) throws {
        if local?.isLocallyAvailable(index) == true { return }
        // Pinned while it is waited for (a part larger than --cache-size is then there when
        // its download ends; it may go again once unpinned).
        let pinned = pinWhileRead(template.parts[index].checksum)
        defer { if let pinned { cache?.unpin(pinned) } }
        _ = try cachedFile(index)
    }

    public struct Statistics: Sendable {
        public var partsDownloaded: Int
        public var bytesDownloaded: Int64
        public var downloading: Int
        public var failuresByHost: [String: Int]
        public var failuresByLocation: [String: Int]
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
        let inFlight = state.parts.downloading
        return Statistics(partsDownloaded: state.partsDownloaded, bytesDownloaded: state.bytesDownloaded,
                          downloading: inFlight, failuresByHost: state.failuresByHost,
                          failuresByLocation: state.health.failures)
    }

    // MARK: reading from the cache, waiting for downloads

    private func cachedFile(_ index: Int) throws -> Loaded {
        let part = template.parts[index]
        if let f = openFiles.value(for: part.checksum) { return .file(f) }
        if let m = memoryParts.value(for: part.checksum) { return .memory(m) }
        guard let cache else { throw unavailable(part, "has no local copy") }
        for _ in 0..<3 {
            if let m = memoryParts.value(for: part.checksum) { return .memory(m) }
            // The part may be evicted (--cache-size) between its download and this open.
            if let f = cache.openPart(part.checksum, length: part.length) {
                if try isVerified(f, part) {
                    var file = f
                    if cache.sizeLimit != nil {
                        // Marks it as just used (LRU by mtime). That changes its identity: the
                        // touched file is taken as verified only if nothing else changed it.
                        cache.touch(part.checksum)
                        guard let g = cache.openPart(part.checksum, length: part.length),
                              g.identity.inode == f.identity.inode, g.identity.device == f.identity.device,
                              f.currentIdentity() == g.identity else { continue }
                        verifiedFiles.withLock { $0[part.checksum] = g.identity }
                        file = g
                    }
                    openFiles.insert(file, for: part.checksum, cost: 1)
                    return .file(file)
                }
                continue
            }
            guard downloadsEnabled else {
                throw unavailable(part, options.offline ? "has no local copy and is not in the cache (downloads are off: --offline)" : "has no local copy")
            }
            forgetEvicted(part.checksum)
            if ReadContext.mustNotWait { throw wouldWait(index) }
            try waitForDownload(index)
        }
        throw unavailable(part, "was evicted from the cache before it could be read (--cache-size too small?)")
    }

    /// Whether a cache file holds the part: checked (hashed) the first time this process
    /// serves it, then remembered by its identity (inode, size, mtime, ctime). A file that
    /// does not match is removed (the part is fetched again) and never served.
    private func isVerified(_ f: ReadOnlyFile, _ part: TemplatePart) throws -> Bool {
        if verifiedFiles.withLock({ $0[part.checksum] }) == f.identity { return true }
        let sum = try f.checksum(part.checksum.kind ?? template.checksumKind)
        if sum == part.checksum, f.currentIdentity() == f.identity {
            verifiedFiles.withLock { $0[part.checksum] = f.identity }
            return true
        }
        logger.warning("\(f.path): cached part does not match its checksum (a damaged or altered cache file); removed, the part is fetched again")
        cache?.remove(part.checksum, ifStill: f.identity)
        verifiedFiles.withLock { _ = $0.removeValue(forKey: part.checksum) }
        forgetEvicted(part.checksum)
        return false
    }

    /// Starts (or joins) the part's download without waiting: the `WouldWait` to throw.
    private func wouldWait(_ index: Int) -> WouldWait {
        let sum = template.parts[index].checksum
        condition.lock()
        let demand = state.parts.demand(sum)
        condition.unlock()
        if let promote = demand.promote { downloader?.promote(promote) }
        if demand.start { begin(index: index, attempt: demand.attempt, prefetch: false) }
        let attempt = demand.attempt
        return WouldWait { [self] done in whenFinished(sum, attempt: attempt, done) }
    }

    /// Calls `done` when the download `attempt` (or a later one) of the part ended.
    private func whenFinished(_ sum: Checksum, attempt: UInt64, _ done: @escaping @Sendable (JigdoError?) -> Void) {
        condition.lock()
        let registration = state.parts.register(sum, attempt: attempt, done)
        condition.unlock()
        if case .now(let error) = registration { done(error) }
    }

    private func unavailable(_ part: TemplatePart, _ why: String) -> JigdoError {
        JigdoError(.partUnavailable, "part \(part.checksum.base64) (\(part.length) bytes) \(why)")
    }

    /// A part marked done whose cache file is gone (evicted) is missing again.
    /// (A part is marked done only after its file was committed or its bytes kept in memory,
    /// so a done part the cache has is not forgotten: a reader that looked just before the
    /// commit does not start a second download.)
    private func forgetEvicted(_ sum: Checksum) {
        condition.lock()
        let done = state.parts.isDone(sum)
        condition.unlock()
        guard done else { return }
        if memoryParts.value(for: sum) != nil { return }
        if let length = template.parts.first(where: { $0.checksum == sum })?.length,
           cache?.contains(sum, length: length) == true, verifiedFiles.withLock({ $0[sum] != nil }) { return }
        condition.lock()
        state.parts.forget(sum)
        condition.unlock()
    }

    /// Blocks until the part is in the cache; starts its download unless one is running.
    private func waitForDownload(_ index: Int) throws {
        let sum = template.parts[index].checksum
        condition.lock()
        var waitingOn: UInt64?
        while true {
            switch state.parts.life(sum) {
            case .done?:
                condition.unlock()
                return
            case .downloading(let attempt, let prefetch, _)?:
                waitingOn = attempt
                if prefetch {
                    let demand = state.parts.demand(sum)
                    condition.unlock()
                    if let promote = demand.promote { downloader?.promote(promote) }
                    condition.lock()
                    continue
                }
                condition.wait()
            case .failed(_, let error)? where waitingOn != nil:
                condition.unlock()
                throw error
            case .failed?, nil:
                let demand = state.parts.demand(sum)
                waitingOn = demand.attempt
                condition.unlock()
                if demand.start { begin(index: index, attempt: demand.attempt, prefetch: false) }
                condition.lock()
            }
        }
    }

    /// Starts a download of the part unless one is running or it is done.
    private func startIfIdle(_ index: Int, prefetch: Bool) {
        let sum = template.parts[index].checksum
        condition.lock()
        let attempt: UInt64?
        if prefetch {
            attempt = state.parts.prefetch(sum)
        } else {
            let demand = state.parts.demand(sum)
            attempt = demand.start ? demand.attempt : nil
        }
        condition.unlock()
        if let attempt { begin(index: index, attempt: attempt, prefetch: prefetch) }
    }

    // MARK: read-ahead

    private func noteRead(_ index: Int) {
        guard downloadsEnabled, options.readAheadParts > 0 else { return }
        let parts = template.parts
        let window = { (index: Int) -> Int in
            // N parts / M bytes past this read.
            var end = index + 1
            var bytes: Int64 = 0
            for i in (index + 1)..<min(parts.count, index + 1 + self.options.readAheadParts) {
                bytes += parts[i].length
                if bytes > self.options.readAheadBytes && i > index + 1 { break }
                end = i + 1
            }
            return end
        }
        condition.lock()
        let range = state.streams.note(index, windowEnd: window)
        condition.unlock()
        if let range { prefetch(Array(range)) }
    }

    // MARK: the download of one part

    private func begin(index: Int, attempt: UInt64, prefetch: Bool) {
        let part = template.parts[index]
        let walk = DownloadWalk(urls: ordered(weightedURLs(forPart: index), part: part),
                                attemptsPerLocation: downloadConfig.attemptsPerLocation, retryDelay: downloadConfig.retryDelay)
        var job = Job(index: index, checksum: part.checksum, length: part.length, attempt: attempt,
                      prefetch: prefetch, walk: walk)
        if walk.urls.isEmpty {
            finish(job, error: unavailable(part, "has no local copy and no download location in the .jigdo"))
            return
        }
        let step = job.walk.start()
        perform(job, step)
    }

    /// Carries out a step of the job's walk: the one place its actions become I/O. Runs with
    /// no lock held.
    private func perform(_ job: Job, _ step: DownloadWalk.Step, cause: TransferError? = nil) {
        let part = template.parts[job.index]
        if let url = step.blame {
            noteFailure(url, part: part, demote: step.demote)
            // A transfer that failed, once per location and error in a mount's log (LogSetup
            // folds repeats; wrong bytes have their own line, with the part).
            if let cause { logger.warning("download failed: \(url): \(cause)") }
        }
        if let url = step.credit { noteSuccess(url, part: part) }
        switch step.action {
        case .fetch(_, let fromZero):
            if fromZero, let cache { Syscalls.unlink(cache.partialPath(for: job.checksum)) }
            tryLocation(job)
        case .retry(let url, let after):
            logger.info("\(url): retrying in \(after) s")
            DispatchQueue.global().asyncAfter(deadline: .now() + after) { self.tryLocation(job) }
        case .memory(let url):
            if let cache { Syscalls.unlink(cache.partialPath(for: job.checksum)) }
            downloadIntoMemory(job, requestURL: applyRedirect(url), cause: cause)
        case .succeeded:
            break
        case .giveUp(let errors):
            let detail = errors.isEmpty ? "" : ": " + errors.joined(separator: "; ")
            finish(job, error: unavailable(part, "could not be downloaded from any location\(detail)"))
        }
    }

    private func tryLocation(_ job: Job) {
        var job = job
        guard let url = job.walk.currentURL, let cache, let downloader else {
            let part = template.parts[job.index]
            let detail = job.walk.errors.isEmpty ? "" : ": " + job.walk.errors.joined(separator: "; ")
            finish(job, error: unavailable(part, "could not be downloaded from any location\(detail)"))
            return
        }
        if job.lockFD < 0 {
            // Already there (another process sharing the cache finished it): done, without
            // making a lock file that this process might exit before removing.
            if cache.contains(job.checksum, length: job.length) {
                finish(job, error: nil, fetched: false)
                return
            }
            if !cache.isWritable {
                downloadIntoMemory(job, requestURL: applyRedirect(url), cause: nil)
                return
            }
            do {
                let sum = job.checksum
                guard let fd = try cache.lockPartial(for: sum, onDemand: { [weak self] in self?.promoteIfPrefetch(sum) }) else {
                    let retry = job
                    // Another image of this mount is downloading it (a part two images of a
                    // release share): go on when it is done, then it is in the cache.
                    if cache.whenReleasedHere(sum, demand: !currentlyPrefetch(job), { self.tryLocation(retry) }) { return }
                    // Another process sharing the cache is downloading it: look again shortly.
                    DispatchQueue.global().asyncAfter(deadline: .now() + max(downloadConfig.retryDelay, 0.2)) { self.tryLocation(retry) }
                    return
                }
                job.lockFD = fd
            } catch let e as JigdoError where PartCache.costsOnlyCaching(e.firstErrno) {
                // A read-only, full or foreign cache: caching is lost, the read is not.
                let code = e.firstErrno!.rawValue
                if code != ENOSPC && code != EDQUOT { cache.noteUnwritable(e.description) }
                downloadIntoMemory(job, requestURL: applyRedirect(url),
                                   cause: TransferError(reason: .diskFull(e.description)))
                return
            } catch let e as JigdoError {
                finish(job, error: e)
                return
            } catch {
                finish(job, error: JigdoError(.io, "\(error)", underlying: error))
                return
            }
        }
        if cache.contains(job.checksum, length: job.length) {
            // Another process sharing the cache finished it meanwhile.
            Syscalls.unlink(cache.partialPath(for: job.checksum))
            finish(job, error: nil, fetched: false)
            return
        }
        let partial = cache.partialPath(for: job.checksum)
        var resume = fileSize(partial) ?? 0
        if resume > job.length {
            Syscalls.unlink(partial)
            resume = 0
        }
        if resume == job.length && job.length > 0 {
            verify(job, partial: partial, resumedFrom: resume, received: nil)
            return
        }
        // Downloads are hashed as they arrive; a resumed file's prefix is hashed once here.
        var hasher = ChecksumHasher(job.checksum.kind ?? template.checksumKind)
        if resume > 0 {
            do {
                let prefix = try ReadOnlyFile(path: partial, extraFlags: O_NOFOLLOW)
                try prefix.hash(count: resume, into: &hasher)
            } catch {
                Syscalls.unlink(partial)
                resume = 0
                hasher = ChecksumHasher(job.checksum.kind ?? template.checksumKind)
            }
        }
        let requestURL = applyRedirect(url)
        let store = self
        job.prefetch = currentlyPrefetch(job)
        let submitted = job
        let resumeFrom = resume
        var request = TransferRequest(url: requestURL, path: partial)
        request.resumeFrom = resumeFrom
        request.maxLength = job.length
        request.exactLength = true
        request.freshConnect = job.walk.freshConnect
        request.hasher = hasher
        request.location = locationPrefix(requestURL, part: template.parts[job.index])
        noteTransferStarted(url, part: template.parts[job.index], bytes: job.length - resumeFrom)
        let id = downloader.submit(request, priority: job.prefetch ? .prefetch : .demand) { result in
            store.transferDone(submitted, requestURL: requestURL, partial: partial, resumedFrom: resumeFrom, result: result)
        }
        condition.lock()
        let promoted = state.parts.submitted(job.checksum, attempt: job.attempt, transfer: id, asPrefetch: job.prefetch)
        condition.unlock()
        // A reader started waiting while this was being submitted.
        if promoted { downloader.promote(id) }
    }

    /// A reader of another image waits for this part, which this image fetches ahead: its
    /// transfer moves before the other read-ahead ones.
    private func promoteIfPrefetch(_ sum: Checksum) {
        condition.lock()
        let promote = state.parts.promoteIfPrefetch(sum)
        condition.unlock()
        if let promote { downloader?.promote(promote) }
    }

    /// Whether nobody waits for the part yet (its download may queue behind demand reads).
    private func currentlyPrefetch(_ job: Job) -> Bool {
        condition.lock(); defer { condition.unlock() }
        return state.parts.isPrefetch(job.checksum, attempt: job.attempt)
    }

    private func transferDone(_ job: Job, requestURL: String, partial: String, resumedFrom: Int64, result: Result<TransferSummary, TransferError>) {
        var job = job
        let url = job.url
        noteTransferEnded(url, part: template.parts[job.index], bytes: job.length - resumedFrom,
                          received: (try? result.get().received) ?? 0)
        switch result {
        case .success(let summary):
            recordDownloaded(summary.received)
            if summary.effectiveURL != requestURL { learnRedirect(from: requestURL, to: summary.effectiveURL) }
            verify(job, partial: partial, resumedFrom: resumedFrom, received: summary.checksum)
        case .failure(let error):
            if requestURL != url {
                // The remembered redirect target failed: ask the original server again.
                forgetRedirect(for: url)
                tryLocation(job)
                return
            }
            switch error.reason {
            case .tooLong, .protocolViolation:
                Syscalls.unlink(partial)
                logger.warning("\(url): \(error); not used")
            default:
                break
            }
            // A mirror that stalls is demoted at once: the others carry the rest.
            if error.isStall { logger.warning("\(url): \(error); this mirror goes last for a while") }
            let step = job.walk.handle(.failed(error))
            if case .retry = step.action { logger.info("\(url): \(error)") }
            perform(job, step, cause: error)
        }
    }

    /// The cache disk is full: fetch the part into memory, check it there and serve it from
    /// memory (caching is lost, correctness is not).
    private func downloadIntoMemory(_ job: Job, requestURL: String, cause: TransferError?) {
        guard job.length <= Int64(options.memoryBudget), let downloader else {
            var job = job
            let step = job.walk.skip("\(cause.map { "\($0)" } ?? "the cache cannot be written") (the part is too large to keep in memory)")
            perform(job, step)
            return
        }
        if let cause {
            // One warning per store: a full disk would otherwise log a line per part.
            condition.lock()
            let first = !state.warnedMemory
            state.warnedMemory = true
            condition.unlock()
            if first {
                logger.warning("\(cause): cache disk full; parts are kept in memory instead (caching is lost, not correctness)")
            } else {
                logger.debug("\(cause): part \(job.checksum.base64) kept in memory")
            }
        }
        let store = self
        let submitted = job
        var request = TransferRequest(url: requestURL, path: nil)
        request.maxLength = job.length
        request.exactLength = true
        request.freshConnect = job.walk.freshConnect
        request.hasher = ChecksumHasher(job.checksum.kind ?? template.checksumKind)
        request.location = locationPrefix(requestURL, part: template.parts[job.index])
        noteTransferStarted(job.url, part: template.parts[job.index], bytes: job.length)
        downloader.submit(request, priority: .demand) { result in
            store.memoryDone(submitted, result: result)
        }
    }

    private func memoryDone(_ job: Job, result: Result<TransferSummary, TransferError>) {
        var job = job
        let url = job.url
        noteTransferEnded(url, part: template.parts[job.index], bytes: job.length, received: (try? result.get().received) ?? 0)
        switch result {
        case .success(let summary):
            let body = summary.body ?? []
            recordDownloaded(summary.received)
            let sum = summary.checksum ?? {
                var hasher = ChecksumHasher(job.checksum.kind ?? template.checksumKind)
                hasher.update(body)
                return hasher.finalize()
            }()
            let matches = sum == job.checksum && Int64(body.count) == job.length
            if matches {
                memoryParts.insert(body, for: job.checksum, cost: body.count)
            } else {
                logger.warning("\(url): served wrong bytes for part \(job.checksum.base64) (checksum \(sum.base64)); discarded")
            }
            let step = job.walk.handle(.transferred(matches: matches, resumed: false))
            perform(job, step)
            if matches { finish(job, error: nil) }
        case .failure(let error):
            perform(job, job.walk.handle(.failed(error)), cause: error)
        }
    }

    /// Checks the downloaded file; a match goes into the cache, a mismatch is thrown away.
    /// `received`: the checksum of the file as its bytes arrived (nil: read it back).
    private func verify(_ job: Job, partial: String, resumedFrom: Int64, received: Checksum?) {
        var job = job
        let url = job.url
        let kind = job.checksum.kind ?? template.checksumKind
        let sum: Checksum
        if let received {
            sum = received
        } else {
            do {
                sum = try ReadOnlyFile(path: partial, extraFlags: O_NOFOLLOW).checksum(kind)
            } catch {
                perform(job, job.walk.skip("\(error)"))
                return
            }
        }
        let step = job.walk.handle(.transferred(matches: sum == job.checksum, resumed: resumedFrom > 0))
        guard sum == job.checksum else {
            Syscalls.unlink(partial)
            if step.blame != nil {
                logger.warning("\(url): served wrong bytes for part \(job.checksum.base64) (checksum \(sum.base64)); discarded")
            }
            perform(job, step)
            return
        }
        perform(job, step)
        do {
            // Made room for (--cache-size) before it is renamed in. A part no reader pins that
            // does not fit beside the pinned ones is not kept: done all the same (caching is
            // lost; a later read finds it missing and fetches it again).
            if let cache, try cache.store(partial: partial, as: job.checksum, length: job.length),
               let f = cache.openPart(job.checksum, length: job.length) {
                // Bytes this process hashed as they arrived: served without another check while
                // the file stays as it is.
                verifiedFiles.withLock { $0[job.checksum] = f.identity }
                openFiles.insert(f, for: job.checksum, cost: 1)
            }
            finish(job, error: nil)
        } catch {
            // E.g. no room for a new cache directory: serve the verified bytes from memory.
            // If the partial file cannot be read back either, its error is dropped: the
            // commit's error (`error`) is the one the job fails with, below.
            if job.length <= Int64(options.memoryBudget), let bytes = try? ReadOnlyFile(path: partial).readAll(),
               Int64(bytes.count) == job.length {
                let why = (error as? JigdoError).map { $0.errno?.text ?? $0.message } ?? "\(error)"
                logger.warning("the part cache cannot store parts (\(why)); they are kept in memory instead")
                logger.debug("\(error); part \(job.checksum.base64) is kept in memory")
                memoryParts.insert(bytes, for: job.checksum, cost: bytes.count)
                Syscalls.unlink(partial)
                finish(job, error: nil)
            } else {
                finish(job, error: (error as? JigdoError) ?? JigdoError(.io, "\(error)", underlying: error))
            }
        }
    }

    /// `fetched`: the part was downloaded by this attempt (not found in the cache).
    private func finish(_ job: Job, error: JigdoError?, fetched: Bool = true) {
        if job.lockFD >= 0 {
            // An empty partial file (made to hold the lock) is not worth keeping.
            if let cache, fileSize(cache.partialPath(for: job.checksum)) == 0 { Syscalls.unlink(cache.partialPath(for: job.checksum)) }
            if let cache { cache.unlockPartial(job.lockFD, for: job.checksum) } else { Syscalls.close(job.lockFD) }
        }
        condition.lock()
        let end = state.parts.finished(job.checksum, attempt: job.attempt, error: error)
        let readerWaits = end.readerWaited
        if error == nil && fetched { state.partsDownloaded += 1 }
        condition.broadcast()
        condition.unlock()
        for w in end.waiters { w(error) }
        // A failed read-ahead is retried when the part is read. A failing read throws the error
        // to its reader, which reports it (the CLI's one line, the mount's EIO log line).
        if let error { logger.info("\(readerWaits ? "" : "read-ahead: ")\(error)") }
    }

    private func recordDownloaded(_ bytes: Int64) {
        condition.lock()
        state.bytesDownloaded += bytes
        condition.unlock()
    }

    /// Counts a failure against the mirror location of `url`; `demote`: at once (a stall).
    private func noteFailure(_ url: String, part: TemplatePart, demote: Bool) {
        let host = hostOf(url)
        let location = locationPrefix(url, part: part)
        let now = DispatchTime.now().uptimeNanoseconds
        condition.lock()
        state.failuresByHost[host, default: 0] += 1
        state.health.noteFailure(location, now: now, demote: demote)
        condition.unlock()
    }

    private func noteSuccess(_ url: String, part: TemplatePart) {
        let location = locationPrefix(url, part: part)
        condition.lock()
        state.health.noteSuccess(location)
        condition.unlock()
    }

    /// The mirror location a part URL comes from: the URL less the part's path below its
    /// label (`Label:path` in [Parts], or the checksum for the MD5Sum:/SHA256Sum: labels).
    func locationPrefix(_ url: String, part: TemplatePart) -> String {
        let key = part.checksum.base64
        var tails: [String] = []
        for entry in resolver.descriptor.parts[key] ?? [] {
            if let colon = entry.value.firstIndex(of: ":") {
                tails.append(String(entry.value[entry.value.index(after: colon)...]))
            }
        }
        tails.append(key)
        // Byte-wise (a URL's path is bytes; Character-wise counting and comparing cost more
        // than the rest of a part's bookkeeping).
        let u = url.utf8
        for tail in tails where !tail.isEmpty {
            let encoded = encodeURLForCurl(tail)
            for candidate in encoded == tail ? [tail] : [tail, encoded] {
                let c = candidate.utf8
                if u.count > c.count, u.suffix(c.count).elementsEqual(c) {
                    return String(decoding: u.dropLast(c.count), as: UTF8.self)
                }
            }
        }
        return directoryOf(url)
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

    /// The URLs in the .jigdo's order, except that mirror locations which keep failing go
    /// last, and that among the first ones of equal weight the one expected to deliver the part
    /// soonest (by its measured speed and what it still has to send) goes first.
    private func ordered(_ urls: [(url: String, weight: Int)], part: TemplatePart) -> [String] {
        guard urls.count > 1 else { return urls.map(\.url) }
        let now = DispatchTime.now().uptimeNanoseconds
        condition.lock()
        let health = state.health
        condition.unlock()
        return health.order(urls, length: part.length, now: now) { self.locationPrefix($0, part: part) }
    }

    /// A transfer of `bytes` from the mirror location of `url` starts / ended (its load and
    /// measured speed, for `ordered`).
    private func noteTransferStarted(_ url: String, part: TemplatePart, bytes: Int64) {
        let location = locationPrefix(url, part: part)
        let now = DispatchTime.now().uptimeNanoseconds
        condition.lock()
        state.health.noteStarted(location, bytes: bytes, now: now)
        condition.unlock()
    }

    private func noteTransferEnded(_ url: String, part: TemplatePart, bytes: Int64, received: Int64) {
        let location = locationPrefix(url, part: part)
        let now = DispatchTime.now().uptimeNanoseconds
        condition.lock()
        state.health.noteEnded(location, bytes: bytes, received: received, now: now)
        condition.unlock()
    }
}

/// `scheme://host[:port]` of a URL (for per-mirror figures).
func hostOf(_ url: String) -> String {
    guard let r = url.range(of: "://") else { return url }
    let rest = url[r.upperBound...]
    let end = rest.firstIndex(of: "/") ?? rest.endIndex
    return String(url[..<end])
}

extension PartPipeline: PartStatisticsProvider {
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
        out.failuresByLocation = s.failuresByLocation
        for (location, figures) in downloader?.concurrency() ?? [:] {
            out.transfersAllowedByLocation[location] = figures.limit
            if let rate = figures.rate { out.speedByLocation[location] = Int64(rate) }
        }
        return out
    }
}

extension PartPipeline: PartStateProvider {
    /// For `jigdofs status --map`: each part local, cached (or in memory), being downloaded, or
    /// missing. Stats the cache files (as `availability()`); never waits for the network.
    public func partStates() -> [PartMap.State] {
        condition.lock()
        let downloading = state.parts.downloadingKeys
        condition.unlock()
        var known: [Checksum: PartMap.State] = [:]
        return template.parts.enumerated().map { i, part in
            guard part.length > 0 else { return .local }
            if let s = known[part.checksum] { return s }
            let s: PartMap.State
            if local?.isLocallyAvailable(i) == true {
                s = .local
            } else if cache?.contains(part.checksum, length: part.length) == true || memoryParts.value(for: part.checksum) != nil {
                s = .cached
            } else {
                s = downloading.contains(part.checksum) ? .inFlight : .missing
            }
            known[part.checksum] = s
            return s
        }
    }
}
