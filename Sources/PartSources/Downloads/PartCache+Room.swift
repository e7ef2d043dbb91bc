#if canImport(Glibc)
import Glibc
#endif
import JigdoFormat
import Logging
import Synchronization

extension PartCache {
    // MARK: --cache-size: room for new parts, pins of parts being read
    //
    // The limit holds for the parts no reader pins: at any moment the bytes under `parts/` are at
    // most `sizeLimit` plus the parts pinned by reads in progress. A part is made room for
    // *before* it is renamed in (least recently used unpinned parts are removed down to 90%),
    // and a part nobody pins that would not fit beside the pinned ones is not kept at all. A
    // reader's pin is taken before it looks for the part (or waits for its download), so the
    // eviction after a download never removes the part a waiting reader is about to be told
    // is ready; when the last pin of a part goes and the cache is over its limit, it is
    // evicted then. `room` is a leaf lock, held for bookkeeping only: never across a listing
    // or an unlink.

    /// Pins a part for a reader (whether or not it is in the cache yet): eviction skips it until
    /// `unpin`. No-op without `sizeLimit`.
    public func pin(_ sum: Checksum) {
        guard sizeLimit != nil else { return }
        let key = path(for: sum)
        room.withLock { $0.pins[key, default: 0] += 1 }
    }

    /// Releases a pin. When that was the part's last and the cache is over its limit, evicts
    /// (on the calling thread, so the reader that leaves finds the cache within its bound).
    public func unpin(_ sum: Checksum) {
        guard let limit = sizeLimit else { return }
        let key = path(for: sum)
        let over = room.withLock { r -> Bool in
            guard let n = r.pins[key] else { return false }
            r.pins[key] = n > 1 ? n - 1 : nil
            return n == 1 && r.isOver(limit)
        }
        if over { _ = makeRoom(adding: 0, for: nil) }
    }

    /// Moves a verified partial file into the cache, after making room for it (`--cache-size`).
    /// Returns false, and removes the partial file, when the part is not kept: nobody pins it
    /// and it does not fit beside the parts that are pinned.
    public func store(partial: String, as sum: Checksum, length: Int64) throws -> Bool {
        guard makeRoom(adding: length, for: sum) else {
            Syscalls.unlink(partial)
            return false
        }
        do {
            try commit(partial: partial, as: sum)
        } catch {
            if sizeLimit != nil { room.withLock { $0.added(length, renamed: false) } }
            throw error
        }
        if sizeLimit != nil { room.withLock { $0.added(length, renamed: true) } }
        return true
    }

    /// Reserves `adding` bytes (the part `sum`, nil: none) and evicts unpinned parts, least
    /// recently used first, when the cache would be over its limit, down to 90% of it. Returns
    /// whether the part is to be kept (a part nobody pins only if it fits); when false, its
    /// reservation is already released.
    func makeRoom(adding: Int64, for sum: Checksum?) -> Bool {
        guard let limit = sizeLimit else { return true }
        let key = sum.map { path(for: $0) }
        let renamedBefore = room.withLock { r -> Int64? in
            r.reserved += adding
            return r.isOver(limit) ? r.renamed : nil
        }
        guard let renamedBefore else { return true }
        let parts = entries().sorted { $0.lastUseNs < $1.lastUseNs }
        var total = parts.reduce(Int64(0)) { $0 + $1.size }
        let target = limit / 10 * 9
        for e in parts {
            // The pin is looked at just before the unlink: a reader pinning the part after this
            // instant may still see it go (it then fetches the part again, pinned).
            let (enough, pinned) = room.withLock { r in (total + r.reserved <= target, r.pins[e.path] != nil) }
            if enough { break }
            if pinned || e.path == key { continue }
            if Syscalls.unlink(e.path) == 0 { total -= e.size }
        }
        return room.withLock { r -> Bool in
            // What was renamed in while the listing ran may be missing from it: counted on top
            // (an overestimate only makes the next eviction come sooner).
            r.known = total + (r.renamed - renamedBefore)
            let keep = key.map { r.pins[$0] != nil || total + r.reserved <= limit } ?? true
            if !keep { r.reserved -= adding }
            return keep
        }
    }
}

/// The bookkeeping behind `--cache-size` (no I/O; `PartCache.room` holds it).
struct CacheRoom {
    /// Bytes under `parts/` as far as this process knows; nil until first listed. Never less
    /// than what this process put there (another process's parts are seen at the next listing).
    var known: Int64?
    /// Bytes of parts made room for and not renamed in yet.
    var reserved: Int64 = 0
    /// Bytes renamed in so far (a counter: an eviction adds what came in while it listed).
    var renamed: Int64 = 0
    /// Readers pinning each part, by its path.
    var pins: [String: Int] = [:]

    /// Whether the parts, with those being added, may be over `limit` (unknown counts as over).
    func isOver(_ limit: Int64) -> Bool {
        known.map { $0 + reserved > limit } ?? true
    }

    /// A reserved part was renamed in (or given up).
    mutating func added(_ bytes: Int64, renamed done: Bool) {
        reserved -= bytes
        guard done else { return }
        renamed += bytes
        known = known.map { $0 + bytes }
    }
}
