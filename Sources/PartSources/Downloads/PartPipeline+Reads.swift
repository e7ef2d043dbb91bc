import Dispatch
import ImageAssembly
import JigdoFormat
import Synchronization

// Reads planned whole: a read of several parts starts every part it lacks at once and waits
// once, for the set (before, it waited for one part a round: only the next one was started).

extension PartPipeline {
    /// Readies the parts of one read (`ImageReader`, a read of several parts): when some must
    /// be downloaded, every part of the read is pinned (as `readPart` pins), every missing one
    /// is started with demand priority in read order, and the read waits once for all of them.
    ///
    /// A FUSE request (`ReadContext.mustNotWait`) reads as it comes, so that one whose parts
    /// are all here costs nothing more than before; the first part that would wait (its
    /// download started, `WouldWait`) has every other missing part of the read started too, and
    /// the request throws one `WouldWait` for the set (the bytes it read are read again in its
    /// next round, its pins kept). Any other read starts the missing parts first, blocks until
    /// the set is there, then reads.
    public func reading(_ parts: ReadParts, _ read: () throws -> Void) throws {
        guard downloadsEnabled else { return try read() }
        var pinned: [Checksum] = []
        defer { for sum in pinned { cache?.unpin(sum) } }
        if ReadContext.mustNotWait {
            do {
                return try read()
            } catch let first as WouldWait {
                // (No part needs a download any more: the first's wait ends at once.)
                guard let waits = startMissing(of: parts, pinned: &pinned) else { throw first }
                throw WouldWait { [self] done in whenAllFinished(waits, done) }
            }
        }
        if let waits = startMissing(of: parts, pinned: &pinned) {
            let ended = Ended()
            whenAllFinished(waits) { ended.set($0) }
            if let error = ended.wait() { throw error }
        }
        // Each part is read as always (a part evicted meanwhile is waited for again, as before).
        try read()
    }

    /// Pins every part of the read and starts each one that needs a download: the attempts to
    /// wait for (nil: none). Pinned before the downloads start: a FUSE request keeps the pins
    /// across its rounds (its holds), so the parts there now are still there when it runs
    /// again; any other read (`pinned`, to unpin) until it returns.
    func startMissing(of parts: ReadParts, pinned: inout [Checksum]) -> [(key: Int32, attempt: UInt64)]? {
        var missing: [Int] = []
        for index in parts where needsDownload(index) { missing.append(index) }
        guard !missing.isEmpty else { return nil }
        for index in parts {
            if let sum = pinWhileRead(template.parts.checksum(index)) { pinned.append(sum) }
        }
        let waits = demandAll(missing)
        return waits.isEmpty ? nil : waits
    }

    /// Whether part `index` needs a download before it can be read: it is being downloaded, or
    /// it is neither here (open, in memory, local) nor in the cache.
    func needsDownload(_ index: Int) -> Bool {
        let key = key(index)
        switch event({ $0.state(key) }) {
        case .fetching?: return true
        case .open?, .memory?, .local?, .localFile?: return false
        // Nothing evicts it (no --cache-size): there (a file removed by hand is found missing
        // by its read, which waits for it, as before). With --cache-size, the cache says: it
        // may have been evicted, or never kept (it did not fit).
        case .landed?, .verified?: if cache?.sizeLimit == nil { return false }
        case .failed?, nil: break
        }
        return !isLocallyAvailable(index)
    }

    /// Demands the parts (in this order) under one take of the lock, then promotes queued
    /// read-ahead transfers and starts what no one runs yet: the attempts to wait for. A part
    /// here (done meanwhile) is skipped; one done but evicted is missing again.
    func demandAll(_ indices: [Int]) -> [(key: Int32, attempt: UInt64)] {
        var demands: [(index: Int, key: Int32, demand: Table.Demand)] = []
        demands.reserveCapacity(indices.count)
        let keys = indices.map { key($0) }
        for key in keys { forgetEvicted(key) }
        condition.lock()
        for (index, key) in zip(indices, keys) {
            if state.table.isHere(key) { continue }
            demands.append((index, key, state.table.demand(key)))
        }
        condition.unlock()
        for d in demands {
            if let promote = d.demand.promote { downloader?.promote(promote) }
            if d.demand.start { begin(index: d.index, attempt: d.demand.attempt, prefetch: false) }
        }
        return demands.map { ($0.key, $0.demand.attempt) }
    }

    /// Calls `done` once: nil when every attempt (or a later one) ended with its part there,
    /// else as soon as one failed, with its error (later ends are ignored).
    func whenAllFinished(_ waits: [(key: Int32, attempt: UInt64)], _ done: @escaping @Sendable (JigdoError?) -> Void) {
        let all = AllFinished(count: waits.count, done)
        for w in waits { whenFinished(w.key, attempt: w.attempt) { all.ended($0) } }
    }
}

/// One waiter over several downloads: calls `done` once, when the last ended well or the first
/// failed. The waiters left registered for the other parts find it spent; they go with their
/// downloads' ends.
final class AllFinished: Sendable {
    private let state: Mutex<(left: Int, done: (@Sendable (JigdoError?) -> Void)?)>

    init(count: Int, _ done: @escaping @Sendable (JigdoError?) -> Void) {
        state = Mutex((count, done))
    }

    func ended(_ error: JigdoError?) {
        let call = state.withLock { s -> (@Sendable (JigdoError?) -> Void)? in
            guard let done = s.done else { return nil }
            s.left -= 1
            guard error != nil || s.left == 0 else { return nil }
            s.done = nil
            return done
        }
        call?(error)
    }
}

/// A blocking reader's end of `AllFinished`.
private final class Ended: Sendable {
    private let error = Mutex<JigdoError?>(nil)
    private let signal = DispatchSemaphore(value: 0)

    func set(_ e: JigdoError?) {
        error.withLock { $0 = e }
        signal.signal()
    }

    func wait() -> JigdoError? {
        signal.wait()
        return error.withLock { $0 }
    }
}
