import Synchronization

/// A least-recently-used cache bounded by the total byte cost of its values, safe to use from
/// many threads. Lookups and inserts hold the lock only for bookkeeping: values are computed by
/// the caller outside the lock.
public final class ByteBudgetCache<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private struct Entry {
        var value: Value
        var cost: Int
        var stamp: UInt64
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        var total = 0
        var clock: UInt64 = 0
    }

    public let budget: Int
    private let state = Mutex(State())

    public init(budget: Int) {
        self.budget = budget
    }

    public func value(for key: Key) -> Value? {
        state.withLock { s in
            guard var e = s.entries[key] else { return nil }
            s.clock += 1
            e.stamp = s.clock
            s.entries[key] = e
            return e.value
        }
    }

    /// Inserts a value; evicts the least recently used entries to stay within the budget.
    /// A value larger than the whole budget is not kept.
    public func insert(_ value: Value, for key: Key, cost: Int) {
        guard cost <= budget else { return }
        state.withLock { s in
            s.clock += 1
            if let old = s.entries.updateValue(Entry(value: value, cost: cost, stamp: s.clock), forKey: key) {
                s.total -= old.cost
            }
            s.total += cost
            while s.total > budget, s.entries.count > 1 {
                // Linear scan: a few hundred entries at most for template windows and open
                // files; more only for parts kept in memory when the cache disk is full.
                guard let victim = s.entries.min(by: { $0.value.stamp < $1.value.stamp }) else { break }
                s.total -= victim.value.cost
                s.entries.removeValue(forKey: victim.key)
            }
        }
    }

    /// Drops one entry (e.g. a file that changed since it was checked).
    public func remove(_ key: Key) {
        state.withLock { s in
            if let old = s.entries.removeValue(forKey: key) { s.total -= old.cost }
        }
    }

    public var totalCost: Int { state.withLock { $0.total } }
    public var count: Int { state.withLock { $0.entries.count } }
}
