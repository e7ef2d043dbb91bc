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
/// A read of several parts starts every part it lacks at once and waits once for the set
/// (`reading`, PartPipeline+Reads.swift).
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
    struct Job: Sendable {
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

    struct State {
        /// Every part's life: missing -> downloading -> done | failed (see `PartLives`).
        var parts = PartLives<Checksum, JigdoError, Waiter>()
        // Sequential read detection.
        var streams = ReadStreams()
        // Figures for `status`.
        var bytesDownloaded: Int64 = 0
        var partsDownloaded = 0
        /// Mirrors: failures, health, load and speed, redirects (`MirrorBook`).
        var mirrors = MirrorBook()
        /// The memory fallback was announced (once per store).
        var warnedMemory = false
    }


    // Mirrors that keep failing go last for a while: `MirrorHealth`.

    public let template: TemplateInfo
    public let resolver: LocationResolver
    public let local: (any PartSource)?
    public let cache: PartCache?
    public let downloader: (any PartFetcher)?
    public let options: Options
    public let downloadConfig: DownloadConfig
    let logger: Logger
    /// The time and the delays of retries and polls (`SystemClock`; a test's own).
    let clock: any PipelineClock
    // Lock order: `condition` is taken alone; never held across I/O, a libcurl call, or a
    // call into `local`/`cache`/`downloader` (their own locks are leaves).
    let condition = NSCondition()
    var state = State()
    let openFiles = ByteBudgetCache<Checksum, ReadOnlyFile>(budget: 64)
    let memoryParts: ByteBudgetCache<Checksum, [UInt8]>
    /// Cache files this process checked (or wrote from bytes it hashed), as they were then:
    /// a file whose identity differs is checked again before a byte of it is served.
    let verifiedFiles = Mutex<[Checksum: FileIdentity]>([:])

    /// - Parameters:
    ///   - local: parts found on disk (`--scan`, `--map`, local locations, old images); may be nil.
    ///   - cache: the part cache; nil means no cache and no downloads.
    ///   - downloader: nil means no downloads (as `--offline`).
    public init(
        template: TemplateInfo, resolver: LocationResolver, local: (any PartSource)?, cache: PartCache?,
        downloader: (any PartFetcher)?, options: Options = Options(),
        logger: Logger = Logger(label: "jigdofs.download"), clock: (any PipelineClock)? = nil
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
        self.clock = clock ?? SystemClock()
    }

    var downloadsEnabled: Bool { !options.offline && downloader != nil && cache != nil }

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
    func readPart(_ index: Int, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer, round: Int,
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
    func pinWhileRead(_ sum: Checksum) -> Checksum? {
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
    enum Loaded {
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
    func weightedURLs(forPart index: Int) -> [(url: String, weight: Int)] {
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
        // Parts this process is downloading or has done are skipped under one lock, before
        // any costs a look at the disk: the window moves a part at a time, and a new stream of
        // reads (the kernel's parallel read-ahead starts some) asks for the whole window again
        // (7 of the 17 stats a part downloaded were these). Read-ahead never starts those anyway.
        condition.lock()
        let unknown = indices.filter { !state.parts.isBusyOrDone(template.parts.checksum($0)) }
        condition.unlock()
        for i in unknown where !isLocallyAvailable(i) { startIfIdle(i, prefetch: true) }
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

    // MARK: reading from the cache, waiting for downloads

    func cachedFile(_ index: Int) throws -> Loaded {
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
    func isVerified(_ f: ReadOnlyFile, _ part: TemplatePart) throws -> Bool {
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
    func wouldWait(_ index: Int) -> WouldWait {
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
    func whenFinished(_ sum: Checksum, attempt: UInt64, _ done: @escaping @Sendable (JigdoError?) -> Void) {
        condition.lock()
        let registration = state.parts.register(sum, attempt: attempt, done)
        condition.unlock()
        if case .now(let error) = registration { done(error) }
    }

    func unavailable(_ part: TemplatePart, _ why: String) -> JigdoError {
        JigdoError(.partUnavailable, "part \(part.checksum.base64) (\(part.length) bytes) \(why)")
    }

    /// A part marked done whose cache file is gone (evicted) is missing again.
    /// (A part is marked done only after its file was committed or its bytes kept in memory,
    /// so a done part the cache has is not forgotten: a reader that looked just before the
    /// commit does not start a second download.)
    func forgetEvicted(_ sum: Checksum) {
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
    func waitForDownload(_ index: Int) throws {
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
    func startIfIdle(_ index: Int, prefetch: Bool) {
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

    func noteRead(_ index: Int) {
        guard downloadsEnabled, options.readAheadParts > 0 else { return }
        let parts = template.parts
        let window = { (index: Int) -> Int in
            // N parts / M bytes past this read.
            var end = index + 1
            var bytes: Int64 = 0
            for i in (index + 1)..<min(parts.count, index + 1 + self.options.readAheadParts) {
                bytes += parts.length(i)
                if bytes > self.options.readAheadBytes && i > index + 1 { break }
                end = i + 1
            }
            return end
        }
        condition.lock()
        let range = state.streams.note(index, windowEnd: window)
        condition.unlock()
        if let range { prefetch(Array(range)) }
    }}
