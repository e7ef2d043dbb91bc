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
        /// Read-ahead window once sequential reading is seen: `readAheadFirst` parts, two more
        /// for each part the stream reads in order, up to this many parts ...
        public var readAheadParts = 256
        public var readAheadFirst = 16
        /// ... and this many bytes ahead of the read position (a quarter of `--cache-size` at
        /// most).
        public var readAheadBytes: Int64 = 128 << 20
        /// Verified parts held in memory when the cache disk is full (ENOSPC): the read is
        /// still served, only caching is lost. Least recently used go first.
        public var memoryBudget = 256 << 20
        public init() {}
    }

    /// Requests waiting for a part without blocking a thread (`WouldWait`).
    typealias Waiter = @Sendable (JigdoError?) -> Void
    typealias Table = PartTable<ReadOnlyFile, JigdoError, Waiter>

    /// The download of one part, passed along the chain of locations and retries.
    struct Job: Sendable {
        var index: Int
        /// The part's entry in the table (`key(_:)`).
        var key: Int32
        var checksum: Checksum
        var length: Int64
        var attempt: UInt64
        var prefetch: Bool
        /// Which location next, retries, fallbacks: the decisions, without I/O.
        var walk: DownloadWalk
        /// Descriptor holding the lock of the partial file (-1: not taken yet).
        var lockFD: Int32 = -1
        /// The mirror location of the URL last tried (`location(of:_:)`), worked out once.
        var located: (url: String, location: String)?
        /// The location being tried (the walk has one whenever a transfer is started).
        var url: String { walk.currentURL ?? "" }
    }

    struct State {
        /// Every part's truth: local, cached and checked, open, in memory, fetching, failed
        /// (see `PartTable`).
        var table: Table
        // Sequential read detection.
        var streams = ReadStreams()
        // Figures for `status`.
        var bytesDownloaded: Int64 = 0
        var partsDownloaded = 0
        /// The memory fallback was announced (once per store).
        var warnedMemory = false
    }


    // Mirrors that keep failing go last for a while: `MirrorHealth`.

    public let template: TemplateInfo
    public let resolver: LocationResolver
    public let local: (any PartSource)?
    /// `local`, when it hands over checked files (`LocalCopySource`) for the table to read.
    let localCopies: (any LocalCopySource)?
    public let cache: PartCache?
    public let downloader: (any PartFetcher)?
    /// Mirrors: failures, health, load and speed, redirects, concurrency (`MirrorBook`): the
    /// fetcher's, shared by every pipeline over it (its own without a fetcher).
    public let mirrors: SharedMirrorBook
    public let options: Options
    public let downloadConfig: DownloadConfig
    let logger: Logger
    /// The time and the delays of retries and polls (`SystemClock`; a test's own).
    let clock: any PipelineClock
    // Lock order: `condition` is taken alone; never held across I/O, a libcurl call, or a
    // call into `local`/`cache`/`downloader` (their own locks are leaves).
    let condition = NSCondition()
    var state: State
    /// A part that shares its checksum with an earlier one -> that first part: the key of its
    /// entry (`key(_:)`). Only such parts are here (none in most images). Worked out at the
    /// first read (one sort of the part numbers by checksum, 4 bytes a part while it runs),
    /// not at the mount: a folder of four BD images mounts without four sorts of 50,000.
    let sameAs = Mutex<[Int32: Int32]?>(nil)

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
        self.localCopies = local as? any LocalCopySource
        self.cache = cache
        self.downloader = cache == nil ? nil : downloader
        self.mirrors = downloader?.mirrors ?? SharedMirrorBook()
        self.options = options
        self.state = State(table: Table(openLimit: 64, memoryBudget: options.memoryBudget))
        self.downloadConfig = downloader?.config ?? DownloadConfig()
        self.logger = logger
        self.clock = clock ?? SystemClock()
    }

    var downloadsEnabled: Bool { !options.offline && downloader != nil && cache != nil }

    /// The table entry of part `index`: the first part with its checksum.
    func key(_ index: Int) -> Int32 {
        let i = Int32(truncatingIfNeeded: index)
        return sameAs.withLock { map in
            if map == nil {
                var m: [Int32: Int32] = [:]
                for (i, first) in template.parts.checksumGroups().first.enumerated() where first >= 0 && Int(first) != i {
                    m[Int32(i)] = first
                }
                map = m
            }
            return map!.isEmpty ? i : map![i] ?? i
        }
    }

    // MARK: PartSource

    public func isLocallyAvailable(_ index: Int) -> Bool {
        if local?.isLocallyAvailable(index) == true { return true }
        let part = template.parts[index]
        return cache?.contains(part.checksum, length: part.length) == true
    }

    /// A read of a part this process checked (a cache file, or a local source's file the table
    /// keeps) is one locked lookup (which also notes the read for read-ahead), one `pread` and
    /// one `fstat` (its identity: a file changed since its check is not served).
    public func readPart(_ index: Int, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        let key = key(index)
        condition.lock()
        let found = state.table.read(key)
        let ahead = noteRead(index)
        condition.unlock()
        if let ahead { prefetch(Array(ahead)) }
        var pinned: Checksum?
        defer { if let pinned { cache?.unpin(pinned) } }
        try readPart(index, key: key, found: found, at: offset, into: buffer, round: 0, pinned: &pinned)
    }

    /// `found`: the part's state at the read's lookup (nil: not known yet); `pinned`: the part
    /// this read pinned in the cache (to unpin when it returns).
    func readPart(_ index: Int, key: Int32, found: Table.State?, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer,
                  round: Int, pinned: inout Checksum?) throws {
        var localFailure: JigdoError?
        switch found {
        case .localFile(let file, let base, let identity)?:
            return try readLocalFile(index, key: key, file, base: base, identity, at: offset, into: buffer, round: round, pinned: &pinned)
        case .local?, nil:
            // Read from the local source that has it; its copy is checked there (`LocalParts`).
            // A checked file it hands over (asked once, and again after the file changed, for
            // two rounds) is kept by the table and read from there.
            if let local, found != nil || local.isLocallyAvailable(index) {
                var copy: LocalCopy?
                do {
                    if found == nil, round < 2, let c = try localCopies?.checkedCopy(index) {
                        copy = c
                        _ = event { $0.foundLocalFile(key, c.file, base: c.base, c.identity) }
                    } else {
                        try local.readPart(index, at: offset, into: buffer)
                        // (Not after a file that keeps changing: it is asked for its file again.)
                        if found == nil, round < 2 { event { $0.foundLocal(key) } }
                        return
                    }
                } catch let e as JigdoError where e.kind == .partUnavailable {
                    // A local location that failed its check: fall back to cache and download.
                    localFailure = e
                    event { $0.localRefused(key) }
                }
                if let c = copy {
                    return try readLocalFile(index, key: key, c.file, base: c.base, c.identity, at: offset, into: buffer, round: round, pinned: &pinned)
                }
            }
        default:
            break
        }
        if pinned == nil, cache?.sizeLimit != nil { pinned = pinWhileRead(template.parts.checksum(index)) }
        let loaded: Loaded
        do {
            loaded = try cachedFile(index, key: key, found: found)
        } catch let e as JigdoError where e.kind == .partUnavailable && localFailure != nil {
            // Say why the local copy was refused: that is what the user can fix.
            // The line says both; the cause kept is the local refusal (the one to fix).
            throw JigdoError(.partUnavailable, path: localFailure!.path, "\(localFailure!.reason); no other source: \(e.reason)", underlying: localFailure)
        }
        switch loaded {
        case .file(let file, let identity):
            try file.read(at: offset, into: buffer)
            let now = file.currentIdentity()
            guard now != identity else { return }
            // As checked, or as this process touched it since (another reader's `touch` of the
            // same file changes its mtime and ctime, not its bytes)?
            let (stands, _) = event { $0.confirm(key, identity: now) }
            if stands { return }
            // Written to since it was checked: these bytes may not be the part's. Check the
            // file again (or fetch the part again) and read once more.
            guard round < 2 else {
                throw JigdoError(.io, path: file.path, "cached part keeps changing while it is read")
            }
            try readPart(index, key: key, found: nil, at: offset, into: buffer, round: round + 1, pinned: &pinned)
        case .memory(let bytes):
            bytes.withUnsafeBytes { src in
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[Int(offset)..<Int(offset) + buffer.count]))
            }
        }
    }

    /// Applies an event to the table under the lock; what it returns (files to close among
    /// it) is released after the lock.
    @discardableResult
    func event<R>(_ body: (inout Table) -> R) -> R {
        condition.lock()
        let r = body(&state.table)
        condition.unlock()
        return r
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
        /// An open cache file, and the identity it was checked at.
        case file(ReadOnlyFile, FileIdentity)
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
        // Parts this process is downloading or has are skipped under one lock, before any
        // costs a look at the disk: the window moves a part at a time, and a new stream of
        // reads (the kernel's parallel read-ahead starts some) asks for the whole window again
        // (7 of the 17 stats a part downloaded were these). Read-ahead never starts those anyway.
        let keys = indices.map { key($0) }
        condition.lock()
        let unknown = indices.indices.filter { !state.table.isBusyOrHere(keys[$0]) }.map { indices[$0] }
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
        _ = try cachedFile(index, key: key(index), found: nil)
    }

    // MARK: reading from the cache, waiting for downloads

    /// The part's verified bytes: an open cache file or memory. Looks in the cache (checking
    /// a file this process has not checked as it is now), then waits for a download (a FUSE
    /// request throws `WouldWait` instead). `found`: the state the read's lookup saw.
    func cachedFile(_ index: Int, key: Int32, found: Table.State?) throws -> Loaded {
        let part = template.parts[index]
        var found = found
        for round in 0..<3 {
            if round > 0 { found = event { $0.read(key) } }
            switch found {
            case .open(let f, let identity)?: return .file(f, identity)
            case .memory(let bytes)?: return .memory(bytes)
            default: break
            }
            guard let cache else { throw unavailable(part, "has no local copy") }
            // The part may be evicted (--cache-size) between its download and this open.
            if let f = cache.openPart(part.checksum, length: part.length) {
                if let loaded = try admit(f, part, key: key) { return loaded }
                continue
            }
            guard downloadsEnabled else {
                throw unavailable(part, options.offline ? "has no local copy and is not in the cache (downloads are off: --offline)" : "has no local copy")
            }
            forgetEvicted(key)
            if ReadContext.mustNotWait { throw wouldWait(index) }
            try waitForDownload(index)
        }
        throw unavailable(part, "was evicted from the cache before it could be read (--cache-size too small?)")
    }

    /// A cache file just opened, as verified bytes: checked (hashed) the first time this
    /// process serves it, then remembered by its identity (inode, size, mtime, ctime). A file
    /// that does not match is removed (the part is fetched again) and never served: nil (as
    /// when it changed while it was touched; look again).
    func admit(_ f: ReadOnlyFile, _ part: TemplatePart, key: Int32) throws -> Loaded? {
        guard let cache else { return nil }
        if event({ $0.verifiedIdentity(key) }) != f.identity {
            let sum = try f.checksum(part.checksum.kind ?? template.checksumKind)
            guard sum == part.checksum, f.currentIdentity() == f.identity else {
                logger.warning("\(f.path): cached part does not match its checksum (a damaged or altered cache file); removed, the part is fetched again")
                cache.remove(part.checksum, ifStill: f.identity)
                _ = event { $0.forgetFile(key) }
                return nil
            }
        }
        var file = f
        if cache.sizeLimit != nil {
            // Marks it as just used (LRU by mtime). That changes its identity: the touched file
            // is taken as verified only if nothing else changed it.
            cache.touch(part.checksum)
            guard let g = cache.openPart(part.checksum, length: part.length),
                  g.identity.inode == f.identity.inode, g.identity.device == f.identity.device,
                  f.currentIdentity() == g.identity else { return nil }
            file = g
        }
        _ = event { $0.opened(key, file, file.identity) }
        return .file(file, file.identity)
    }

    /// Starts (or joins) the part's download without waiting: the `WouldWait` to throw.
    func wouldWait(_ index: Int) -> WouldWait {
        let key = key(index)
        let demand = event { $0.demand(key) }
        if let promote = demand.promote { downloader?.promote(promote) }
        if demand.start { begin(index: index, attempt: demand.attempt, prefetch: false) }
        let attempt = demand.attempt
        return WouldWait { [self] done in whenFinished(key, attempt: attempt, done) }
    }

    /// Calls `done` when the download `attempt` (or a later one) of the part ended.
    func whenFinished(_ key: Int32, attempt: UInt64, _ done: @escaping @Sendable (JigdoError?) -> Void) {
        let registration = event { $0.register(key, attempt: attempt, done) }
        if case .now(let error) = registration { done(error) }
    }

    func unavailable(_ part: TemplatePart, _ why: String) -> JigdoError {
        JigdoError(.partUnavailable, "part \(part.checksum.base64) (\(part.length) bytes) \(why)")
    }

    /// A part whose download ended (or whose file this process checked) but whose cache file
    /// is gone (evicted) is missing again. (Its entry says so only after its file was committed,
    /// so a reader that looked just before the commit does not start a second download.)
    func forgetEvicted(_ key: Int32) {
        switch event({ $0.state(key) }) {
        case .landed?, .verified?: break
        default: return
        }
        let part = template.parts[Int(key)]
        if cache?.contains(part.checksum, length: part.length) == true { return }
        _ = event { $0.forgetFile(key) }
    }

    /// Blocks until the part is in the cache; starts its download unless one is running.
    func waitForDownload(_ index: Int) throws {
        let key = key(index)
        condition.lock()
        var waitingOn: UInt64?
        while true {
            switch state.table.state(key) {
            case .fetching(let attempt, let prefetch, _)?:
                waitingOn = attempt
                if prefetch {
                    let demand = state.table.demand(key)
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
                let demand = state.table.demand(key)
                waitingOn = demand.attempt
                condition.unlock()
                if demand.start { begin(index: index, attempt: demand.attempt, prefetch: false) }
                condition.lock()
            case .local?, .localFile?, .landed?, .verified?, .open?, .memory?:
                condition.unlock()
                return
            }
        }
    }

    /// Starts a download of the part unless one is running or it is here.
    func startIfIdle(_ index: Int, prefetch: Bool) {
        let key = key(index)
        let attempt: UInt64? = event { t in
            if prefetch { return t.prefetch(key) }
            let demand = t.demand(key)
            return demand.start ? demand.attempt : nil
        }
        if let attempt { begin(index: index, attempt: attempt, prefetch: prefetch) }
    }

    // MARK: read-ahead

    /// Notes a read for read-ahead (under the lock): the parts to fetch ahead, if any.
    func noteRead(_ index: Int) -> Range<Int>? {
        guard downloadsEnabled, options.readAheadParts > 0 else { return nil }
        let parts = template.parts
        // A bounded cache (--cache-size) gets at most a quarter of it fetched ahead: more would
        // evict parts fetched ahead before they are read.
        let maxBytes = min(options.readAheadBytes, cache?.sizeLimit.map { max(1, $0 / 4) } ?? .max)
        let window = { (index: Int, run: Int) -> Int in
            // N parts / M bytes past this read; N grows with the stream (a short run fetches
            // little it will not read; a long one keeps enough parts in flight that one slow
            // part does not leave the mirror idle while the reader waits for it).
            let count = min(self.options.readAheadParts, self.options.readAheadFirst + 2 * run)
            var end = index + 1
            var bytes: Int64 = 0
            for i in (index + 1)..<min(parts.count, index + 1 + count) {
                bytes += parts.length(i)
                if bytes > maxBytes && i > index + 1 { break }
                end = i + 1
            }
            return end
        }
        return state.streams.note(index, windowEnd: window)
    }
}
