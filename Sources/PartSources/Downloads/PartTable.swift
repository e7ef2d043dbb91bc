import JigdoFormat

/// The one record of every part of an image in its pipeline, by part number (the first part of
/// its checksum: parts that share a checksum share an entry), as a value type with no I/O.
/// `PartPipeline` applies events under its lock and carries out what they return after
/// releasing it (close files, call waiters, start or promote transfers).
///
/// A part with no entry is not known yet: a read asks the local sources, then the cache.
///
///     (none) --local source hands over its checked file--> localFile(file, base, identity)
///     (none) --local source has it, not as a plain file--> local
///     (none)|failed|landed|verified --cache file checked--> open(file, identity)
///     (none)|failed --demand/prefetch--> fetching(attempt, prefetch?, transfer)
///     landed|verified --demand (its file not found)--> fetching(attempt, false, transfer)
///     fetching(prefetch) --demand--> fetching(demand)        (promote the queued transfer)
///     fetching --finished(ok, file)--> open    --(ok, bytes)--> memory   --(ok)--> landed
///     fetching --finished(error)--> failed                   waiters get the error
///     open --64 files open: the least recently read closed--> verified(identity)
///     localFile --64 files open: the least recently read closed--> (none)
///     verified --opened again, same identity--> open         (no second check)
///     memory --over the memory budget, least recently read--> (none)
///     open|verified --identity changed / check failed--> (none)
///     localFile --identity changed--> (none)                 (the source checks it again)
///     local --the local source refused its copy--> (none)
///     landed|verified --evicted from the cache--> (none)
///
/// `landed`: the part's download ended well, or another process put it in the cache; its file
/// is checked when it is first read. Results of an older attempt (a transfer still finishing
/// after a newer attempt began) change nothing. Parts read from local sources are checked by
/// those sources (`LocalParts`, `ISOImageParts`), which hand over the checked file
/// (`LocalCopySource`): the table keeps it open among the cache's files (one bound for both),
/// and a read of it is this lookup and a `pread`. A source that has no such file (a part of
/// another jigdo image, a file of several extents in an old image) serves its part itself
/// (`local`). A local file closed over the bound is forgotten: its source still knows its
/// check, so the next read costs an open and an `fstat`, not a hash.
struct PartTable<Handle, Failure, Waiter> {
    enum State {
        /// A local source (another jigdo image's part, a file of several extents in an old
        /// image) serves it.
        case local
        /// A local source's checked file (scanned or mapped file, `file:` location, one extent
        /// of an old image file): the part is `base...` of it, as it was at `identity`.
        case localFile(Handle, base: Int64, FileIdentity)
        /// A download is running (or waiting for a retry); `transfer` is its queued id (0:
        /// not submitted yet).
        case fetching(attempt: UInt64, prefetch: Bool, transfer: UInt64)
        /// The last attempt failed; a new demand starts another.
        indirect case failed(attempt: UInt64, Failure)
        /// Downloaded (or found in the cache after another process's download): in the
        /// cache, not yet checked by this process.
        case landed
        /// A cache file this process checked, as it was then; not open now.
        case verified(FileIdentity)
        /// A cache file this process checked (or wrote from bytes it hashed), open, with its
        /// identity as checked (or as this process touched it since).
        case open(Handle, FileIdentity)
        /// Verified bytes held in memory (the cache could not be written).
        case memory([UInt8])
    }

    private var entries: [Int32: State] = [:]
    private var waiters: [Int32: [Waiter]] = [:]
    private var nextAttempt: UInt64 = 1
    /// Parts `open` or `localFile`, least recently read first (at most `openLimit`).
    private var openOrder = RecencyList<Int32>()
    /// Parts in `memory`, by their byte count (at most `memoryBudget` bytes).
    private var memoryOrder = RecencyList<Int32>()
    let openLimit: Int
    let memoryBudget: Int

    init(openLimit: Int = 64, memoryBudget: Int = 256 << 20) {
        self.openLimit = openLimit
        self.memoryBudget = memoryBudget
    }

    func state(_ key: Int32) -> State? { entries[key] }

    // MARK: reads

    /// What a read of the part finds: the state, and the part marked as just read.
    mutating func read(_ key: Int32) -> State? {
        let s = entries[key]
        switch s {
        case .open?, .localFile?: openOrder.touch(key)
        case .memory?: memoryOrder.touch(key)
        default: break
        }
        return s
    }

    /// A local source has the part (nothing changes when another state holds it).
    mutating func foundLocal(_ key: Int32) {
        if entries[key] == nil { entries[key] = .local }
    }

    /// The local source refused its copy (it failed its check): the part is looked for
    /// elsewhere.
    mutating func localRefused(_ key: Int32) {
        if case .local? = entries[key] { entries[key] = nil }
    }

    /// A local source handed over its checked file: reads go to it (`base` + their offset)
    /// while its identity stays. Returns the files to close (the least recently read beyond
    /// `openLimit`; this one when another state holds the part now).
    mutating func foundLocalFile(_ key: Int32, _ handle: Handle, base: Int64, _ identity: FileIdentity) -> [Handle] {
        switch entries[key] {
        case nil, .local?: break
        default: return [handle]
        }
        entries[key] = .localFile(handle, base: base, identity)
        return admitOpen(key)
    }

    /// A read of the local file checked at `identity` found it changed: the entry goes (if it
    /// is still that one) and the source is asked again, which checks the file again. Returns
    /// the file to close.
    mutating func localFileChanged(_ key: Int32, checked identity: FileIdentity) -> Handle? {
        guard case .localFile(let h, _, let id)? = entries[key], id == identity else { return nil }
        openOrder.remove(key)
        entries[key] = nil
        return h
    }

    /// A cache file was checked (or its identity matched the one checked before): it is open
    /// and served without another check while its identity stays. Returns the files to close
    /// (the least recently read beyond `openLimit`, and one this replaces), after the lock.
    mutating func opened(_ key: Int32, _ handle: Handle, _ identity: FileIdentity) -> [Handle] {
        switch entries[key] {
        // (A failed attempt is over: the file, checked, is the better truth.)
        case .fetching?, .memory?: return [handle]
        default: break
        }
        var close: [Handle] = []
        switch entries[key] {
        case .open(let old, _)?, .localFile(let old, _, _)?: close.append(old)
        default: break
        }
        entries[key] = .open(handle, identity)
        return close + admitOpen(key)
    }

    /// `key` (now `open` or `localFile`) as the most recently read open file; the least
    /// recently read beyond `openLimit` are closed (returned): a cache file stays verified by
    /// its identity, a local file is forgotten (its source still knows its check).
    private mutating func admitOpen(_ key: Int32) -> [Handle] {
        var close: [Handle] = []
        openOrder.add(key, cost: 1)
        while openOrder.total > openLimit, let oldest = openOrder.oldest, oldest != key {
            openOrder.remove(oldest)
            switch entries[oldest] {
            case .open(let h, let id)?:
                close.append(h)
                entries[oldest] = .verified(id)
            case .localFile(let h, _, _)?:
                close.append(h)
                entries[oldest] = nil
            default: break
            }
        }
        return close
    }

    /// The identity this process checked the part's cache file at (open or not).
    func verifiedIdentity(_ key: Int32) -> FileIdentity? {
        switch entries[key] {
        case .open(_, let id)?, .verified(let id)?: return id
        default: return nil
        }
    }

    /// A read found the cache file's identity `now` after reading it. Returns whether its bytes
    /// stand: the identity is the one checked (or touched since, by this process). Otherwise
    /// the entry goes (the file is checked again, or the part fetched again) and `close` is
    /// the file to close.
    mutating func confirm(_ key: Int32, identity now: FileIdentity?) -> (stands: Bool, close: Handle?) {
        if let now, verifiedIdentity(key) == now { return (true, nil) }
        return (false, forgetFile(key))
    }

    /// The cache file failed its check or was removed: the part is missing (unless a download
    /// of it runs). Returns the file to close.
    @discardableResult
    mutating func forgetFile(_ key: Int32) -> Handle? {
        switch entries[key] {
        case .open(let h, _)?:
            openOrder.remove(key)
            entries[key] = nil
            return h
        case .verified?, .landed?:
            entries[key] = nil
        default: break
        }
        return nil
    }

    /// Verified bytes kept in memory. Returns the files to close (an open one this replaces).
    mutating func kept(_ key: Int32, bytes: [UInt8]) -> Handle? {
        guard bytes.count <= memoryBudget else { return nil }
        var close: Handle?
        switch entries[key] {
        case .open(let h, _)?, .localFile(let h, _, _)?:
            openOrder.remove(key)
            close = h
        default: break
        }
        if case .fetching? = entries[key] {
            // Stays fetching until the attempt's end (`finished` with the bytes).
            return close
        }
        entries[key] = .memory(bytes)
        memoryOrder.add(key, cost: bytes.count)
        while memoryOrder.total > memoryBudget, let oldest = memoryOrder.oldest, oldest != key {
            memoryOrder.remove(oldest)
            if case .memory? = entries[oldest] { entries[oldest] = nil }
        }
        return close
    }

    // MARK: downloads

    /// Parts being downloaded now.
    var fetching: Int {
        entries.values.count { if case .fetching = $0 { return true } else { return false } }
    }

    /// The parts being downloaded now (for `status --map`).
    var fetchingKeys: Set<Int32> {
        Set(entries.compactMap { if case .fetching = $0.value { return $0.key } else { return nil } })
    }

    /// The parts held in memory (for `status`).
    var memoryKeys: Set<Int32> {
        Set(entries.compactMap { if case .memory = $0.value { return $0.key } else { return nil } })
    }

    /// Whether a download of the part is running, or it is here (read-ahead starts neither).
    func isBusyOrHere(_ key: Int32) -> Bool {
        switch entries[key] {
        case .failed?, nil: return false
        default: return true
        }
    }

    /// Whether the part's download ended well or it is here (not local).
    func isHere(_ key: Int32) -> Bool {
        switch entries[key] {
        case .landed?, .verified?, .open?, .memory?: return true
        default: return false
        }
    }

    /// A reader of another image needs the part this one is fetching ahead: the download
    /// becomes a demand. Returns the queued transfer to promote (nil: none, or not a read-ahead).
    mutating func promoteIfPrefetch(_ key: Int32) -> UInt64? {
        guard case .fetching(let a, true, let transfer)? = entries[key] else { return nil }
        entries[key] = .fetching(attempt: a, prefetch: false, transfer: transfer)
        return transfer == 0 ? nil : transfer
    }

    /// What a demand (a reader needs the part) asks for.
    struct Demand: Equatable {
        /// The attempt the reader waits for.
        var attempt: UInt64
        /// Start this attempt (`begin`): none was running.
        var start: Bool
        /// Move this queued read-ahead transfer before the others.
        var promote: UInt64?
    }

    /// A reader needs the part: joins the running download (promoting a read-ahead one) or
    /// starts a new attempt (the caller looked and did not find it). A part open or in memory
    /// (another reader just put it there) starts nothing: its waiter is answered at once
    /// (attempt 0), and the reader reads again.
    mutating func demand(_ key: Int32) -> Demand {
        switch entries[key] {
        case .fetching(let a, let prefetch, let transfer)?:
            if prefetch {
                entries[key] = .fetching(attempt: a, prefetch: false, transfer: transfer)
                return Demand(attempt: a, start: false, promote: transfer == 0 ? nil : transfer)
            }
            return Demand(attempt: a, start: false, promote: nil)
        case .open?, .memory?, .localFile?:
            return Demand(attempt: 0, start: false, promote: nil)
        default:
            let a = newAttempt(key, prefetch: false)
            return Demand(attempt: a, start: true, promote: nil)
        }
    }

    /// Read-ahead: the attempt to start, or nil when the part is here or already downloading.
    mutating func prefetch(_ key: Int32) -> UInt64? {
        isBusyOrHere(key) ? nil : newAttempt(key, prefetch: true)
    }

    private mutating func newAttempt(_ key: Int32, prefetch: Bool) -> UInt64 {
        let a = nextAttempt
        nextAttempt += 1
        // (Never over `open`, `localFile` or `memory`: `demand` and `prefetch` start nothing
        // there.)
        entries[key] = .fetching(attempt: a, prefetch: prefetch, transfer: 0)
        return a
    }

    /// The attempt's transfer was queued as `transfer` (priority: `asPrefetch`). Returns
    /// whether to promote it: a reader started waiting meanwhile.
    mutating func submitted(_ key: Int32, attempt: UInt64, transfer: UInt64, asPrefetch: Bool) -> Bool {
        guard case .fetching(let a, let p, _)? = entries[key], a == attempt else { return false }
        entries[key] = .fetching(attempt: a, prefetch: p, transfer: transfer)
        return asPrefetch && !p
    }

    /// Whether nobody waits for this attempt yet (its transfer may queue behind demand).
    func isPrefetch(_ key: Int32, attempt: UInt64) -> Bool {
        if case .fetching(let a, let p, _)? = entries[key], a == attempt { return p }
        return false
    }

    /// How an attempt ended.
    enum Outcome {
        /// Committed to the cache and opened (the bytes were hashed as they arrived).
        case opened(Handle, FileIdentity)
        /// Kept in memory (the cache could not store it).
        case inMemory([UInt8])
        /// There (another process's download), or not kept (no room): looked for when read.
        case landed
        case failed(Failure)
    }

    /// What an attempt's end asks for.
    struct Finish {
        /// Call each with the error (nil: the part is there).
        var waiters: [Waiter]
        /// A reader waited for it (else it was read-ahead).
        var readerWaited: Bool
        /// Files to close.
        var close: [Handle]
    }

    /// The attempt ended.
    mutating func finished(_ key: Int32, attempt: UInt64, _ outcome: Outcome) -> Finish {
        var readerWaited = false
        var close: [Handle] = []
        if case .fetching(let a, let prefetch, _)? = entries[key], a == attempt {
            readerWaited = !prefetch
            switch outcome {
            case .opened(let h, let id):
                entries[key] = .landed
                close = opened(key, h, id)
            case .inMemory(let bytes):
                entries[key] = .landed
                if let h = kept(key, bytes: bytes) { close.append(h) }
            case .landed:
                entries[key] = .landed
            case .failed(let e):
                entries[key] = .failed(attempt: a, e)
            }
        } else if case .opened(let h, _) = outcome {
            close.append(h)
        }
        // Waiters of a newer attempt still running stay for it.
        if case .fetching? = entries[key] { return Finish(waiters: [], readerWaited: readerWaited, close: close) }
        return Finish(waiters: waiters.removeValue(forKey: key) ?? [], readerWaited: readerWaited, close: close)
    }

    enum Registration {
        /// Called when the download ends.
        case registered
        /// Already over: call the waiter now with this (nil: read again).
        case now(Failure?)
    }

    /// A waiter for the end of `attempt` (or a later one) of the part.
    mutating func register(_ key: Int32, attempt: UInt64, _ waiter: Waiter) -> Registration {
        switch entries[key] {
        case .fetching?:
            waiters[key, default: []].append(waiter)
            return .registered
        case .failed(let a, let error)? where a >= attempt:
            return .now(error)
        default:
            return .now(nil)
        }
    }
}

/// Keys from least to most recently used, each with a cost: the order of a bounded set
/// (`PartTable`'s open files and parts in memory). Every operation is O(1).
struct RecencyList<Key: Hashable> {
    private struct Node {
        var cost: Int
        var newer: Key?
        var older: Key?
    }
    private var nodes: [Key: Node] = [:]
    private(set) var newest: Key?
    private(set) var oldest: Key?
    private(set) var total = 0

    var count: Int { nodes.count }

    /// Adds `key` as the newest (or moves it there, with its new cost).
    mutating func add(_ key: Key, cost: Int) {
        remove(key)
        nodes[key] = Node(cost: cost, newer: nil, older: newest)
        if let n = newest { nodes[n]!.newer = key } else { oldest = key }
        newest = key
        total += cost
    }

    /// Marks `key` as just used (nothing when it is not in the list).
    mutating func touch(_ key: Key) {
        guard newest != key, let node = nodes[key] else { return }
        add(key, cost: node.cost)
    }

    mutating func remove(_ key: Key) {
        guard let node = nodes.removeValue(forKey: key) else { return }
        if let n = node.newer { nodes[n]!.older = node.older } else { newest = node.older }
        if let o = node.older { nodes[o]!.newer = node.newer } else { oldest = node.newer }
        total -= node.cost
    }
}
