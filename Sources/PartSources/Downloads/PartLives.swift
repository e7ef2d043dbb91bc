/// The life of every part (by key: its checksum) as a value type with no I/O:
///
///     (missing) --demand/prefetch--> downloading(attempt, prefetch?, transfer)
///     downloading(prefetch) --demand--> downloading(demand)      (promote the queued transfer)
///     downloading --finished(ok)--> done          waiters get nil (read again)
///     downloading --finished(error)--> failed     waiters get the error
///     failed --demand/prefetch--> downloading(new attempt)
///     done --evicted--> (missing)
///
/// Events return what the caller must do (start an attempt, promote a transfer, call waiters);
/// `PartPipeline` applies them under its lock and acts after releasing it. Results of an older
/// attempt (a transfer still finishing after a newer attempt began) change nothing.
public struct PartLives<Key: Hashable & Sendable, Failure, Waiter> {
    public enum Life {
        /// A download is running (or waiting for a retry); `transfer` is its queued id (0:
        /// not submitted yet).
        case downloading(attempt: UInt64, prefetch: Bool, transfer: UInt64)
        case done
        /// The last attempt failed; a new demand starts another.
        case failed(attempt: UInt64, Failure)
    }

    private var lives: [Key: Life] = [:]
    private var waiters: [Key: [Waiter]] = [:]
    private var nextAttempt: UInt64 = 1

    public init() {}

    public func life(_ key: Key) -> Life? { lives[key] }

    /// Parts being downloaded now.
    public var downloading: Int {
        lives.values.count { if case .downloading = $0 { return true } else { return false } }
    }

    /// The parts being downloaded now (for `status --map`).
    public var downloadingKeys: Set<Key> {
        Set(lives.compactMap { if case .downloading = $0.value { return $0.key } else { return nil } })
    }

    /// A reader of another image needs the part this one is fetching ahead: the download
    /// becomes a demand. Returns the queued transfer to promote (nil: none, or not a read-ahead).
    public mutating func promoteIfPrefetch(_ key: Key) -> UInt64? {
        guard case .downloading(let a, true, let transfer)? = lives[key] else { return nil }
        lives[key] = .downloading(attempt: a, prefetch: false, transfer: transfer)
        return transfer == 0 ? nil : transfer
    }

    /// What a demand (a reader needs the part) asks for.
    public struct Demand: Equatable {
        /// The attempt the reader waits for.
        public var attempt: UInt64
        /// Start this attempt (`begin`): none was running.
        public var start: Bool
        /// Move this queued read-ahead transfer before the others.
        public var promote: UInt64?
    }

    /// A reader needs the part: joins the running download (promoting a read-ahead one) or
    /// starts a new attempt.
    public mutating func demand(_ key: Key) -> Demand {
        switch lives[key] {
        case .downloading(let a, let prefetch, let transfer)?:
            if prefetch {
                lives[key] = .downloading(attempt: a, prefetch: false, transfer: transfer)
                return Demand(attempt: a, start: false, promote: transfer == 0 ? nil : transfer)
            }
            return Demand(attempt: a, start: false, promote: nil)
        case .done?, .failed?, nil:
            let a = newAttempt(key, prefetch: false)
            return Demand(attempt: a, start: true, promote: nil)
        }
    }

    /// Read-ahead: the attempt to start, or nil when the part is done or already downloading.
    public mutating func prefetch(_ key: Key) -> UInt64? {
        switch lives[key] {
        case .downloading?, .done?: return nil
        case .failed?, nil: return newAttempt(key, prefetch: true)
        }
    }

    private mutating func newAttempt(_ key: Key, prefetch: Bool) -> UInt64 {
        let a = nextAttempt
        nextAttempt += 1
        lives[key] = .downloading(attempt: a, prefetch: prefetch, transfer: 0)
        return a
    }

    /// The attempt's transfer was queued as `transfer` (priority: `asPrefetch`). Returns
    /// whether to promote it: a reader started waiting meanwhile.
    public mutating func submitted(_ key: Key, attempt: UInt64, transfer: UInt64, asPrefetch: Bool) -> Bool {
        guard case .downloading(let a, let p, _)? = lives[key], a == attempt else { return false }
        lives[key] = .downloading(attempt: a, prefetch: p, transfer: transfer)
        return asPrefetch && !p
    }

    /// Whether nobody waits for this attempt yet (its transfer may queue behind demand).
    public func isPrefetch(_ key: Key, attempt: UInt64) -> Bool {
        if case .downloading(let a, let p, _)? = lives[key], a == attempt { return p }
        return false
    }

    /// What an attempt's end asks for.
    public struct Finish {
        /// Call each with the error (nil: the part is there).
        public var waiters: [Waiter]
        /// A reader waited for it (else it was read-ahead).
        public var readerWaited: Bool
    }

    /// The attempt ended: done, or failed with `error`.
    public mutating func finished(_ key: Key, attempt: UInt64, error: Failure?) -> Finish {
        var readerWaited = false
        if case .downloading(let a, let prefetch, _)? = lives[key], a == attempt {
            lives[key] = error.map { .failed(attempt: a, $0) } ?? .done
            readerWaited = !prefetch
        }
        // Waiters of a newer attempt still running stay for it.
        if case .downloading? = lives[key] { return Finish(waiters: [], readerWaited: readerWaited) }
        return Finish(waiters: waiters.removeValue(forKey: key) ?? [], readerWaited: readerWaited)
    }

    public enum Registration {
        /// Called when the download ends.
        case registered
        /// Already over: call the waiter now with this (nil: read again).
        case now(Failure?)
    }

    /// A waiter for the end of `attempt` (or a later one) of the part.
    public mutating func register(_ key: Key, attempt: UInt64, _ waiter: Waiter) -> Registration {
        switch lives[key] {
        case .downloading?:
            waiters[key, default: []].append(waiter)
            return .registered
        case .failed(let a, let error)? where a >= attempt:
            return .now(error)
        default:
            return .now(nil)
        }
    }

    /// A done part whose bytes are gone (evicted, failed its check) is missing again.
    public mutating func forget(_ key: Key) {
        if case .done? = lives[key] { lives[key] = nil }
    }

    /// Whether a download of the part is running or it is done (read-ahead starts neither).
    public func isBusyOrDone(_ key: Key) -> Bool {
        switch lives[key] {
        case .downloading?, .done?: return true
        case .failed?, nil: return false
        }
    }

    public func isDone(_ key: Key) -> Bool {
        if case .done? = lives[key] { return true }
        return false
    }
}
