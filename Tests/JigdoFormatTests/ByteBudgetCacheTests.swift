import JigdoFormat
import Testing

/// ByteBudgetCache on its own: what it keeps within its budget, and which entry goes first.
@Suite("ByteBudgetCache: byte budget and least-recently-used eviction")
struct ByteBudgetCacheTests {
    @Test("inserts past the budget evict the oldest entries; the total stays within the budget")
    func staysWithinBudget() {
        let cache = ByteBudgetCache<Int, String>(budget: 10)
        cache.insert("a", for: 1, cost: 4)
        cache.insert("b", for: 2, cost: 4)
        #expect(cache.totalCost == 8)
        #expect(cache.count == 2)
        cache.insert("c", for: 3, cost: 4)
        // 12 > 10: the least recently used (1) is dropped, nothing else.
        #expect(cache.totalCost == 8)
        #expect(cache.count == 2)
        #expect(cache.value(for: 1) == nil)
        #expect(cache.value(for: 2) == "b")
        #expect(cache.value(for: 3) == "c")
        // One entry that needs room for itself evicts as many as it takes.
        cache.insert("d", for: 4, cost: 9)
        #expect(cache.totalCost == 9)
        #expect(cache.count == 1)
        #expect(cache.value(for: 4) == "d")
        #expect(cache.value(for: 2) == nil)
        #expect(cache.value(for: 3) == nil)
    }

    @Test("a lookup makes an entry recently used: the entry not looked up is evicted instead")
    func lookupRefreshesRecency() {
        let cache = ByteBudgetCache<String, Int>(budget: 8)
        cache.insert(1, for: "old", cost: 4)
        cache.insert(2, for: "newer", cost: 4)
        #expect(cache.value(for: "old") == 1)
        cache.insert(3, for: "newest", cost: 4)
        #expect(cache.value(for: "old") == 1)
        #expect(cache.value(for: "newer") == nil)
        #expect(cache.value(for: "newest") == 3)
        #expect(cache.totalCost == 8)
    }

    @Test("a value larger than the whole budget is not kept and evicts nothing")
    func oversizedValueIsNotKept() {
        let cache = ByteBudgetCache<Int, String>(budget: 10)
        cache.insert("small", for: 1, cost: 3)
        cache.insert("huge", for: 2, cost: 11)
        #expect(cache.value(for: 2) == nil)
        #expect(cache.value(for: 1) == "small")
        #expect(cache.totalCost == 3)
        #expect(cache.count == 1)
        // Exactly the budget is kept (alone).
        cache.insert("full", for: 3, cost: 10)
        #expect(cache.value(for: 3) == "full")
        #expect(cache.totalCost == 10)
        #expect(cache.count == 1)
    }

    @Test("replacing a key counts only the new cost; remove gives its cost back")
    func replaceAndRemoveKeepTheTotal() {
        let cache = ByteBudgetCache<Int, String>(budget: 10)
        cache.insert("a", for: 1, cost: 4)
        cache.insert("a2", for: 1, cost: 6)
        #expect(cache.totalCost == 6)
        #expect(cache.count == 1)
        #expect(cache.value(for: 1) == "a2")
        cache.insert("b", for: 2, cost: 4)
        #expect(cache.totalCost == 10)
        cache.remove(1)
        #expect(cache.totalCost == 4)
        #expect(cache.value(for: 1) == nil)
        #expect(cache.value(for: 2) == "b")
        // Room again for 6 without evicting 2.
        cache.insert("c", for: 3, cost: 6)
        #expect(cache.value(for: 2) == "b")
        #expect(cache.totalCost == 10)
    }

    @Test("random inserts, lookups and removals keep exactly what a plain least-recently-used list keeps")
    func matchesAReferenceModel() {
        // The reference: entries ordered from least to most recently used, evicted from the front.
        var model: [(key: Int, value: Int, cost: Int)] = []
        let budget = 40
        let cache = ByteBudgetCache<Int, Int>(budget: budget)
        var rng = SplitMix(seed: 0x5EED)
        for step in 0..<20_000 {
            let key = Int(rng.next() % 24)
            switch rng.next() % 8 {
            case 0...3:
                let cost = Int(rng.next() % 12) + 1
                cache.insert(step, for: key, cost: cost)
                model.removeAll { $0.key == key }
                model.append((key, step, cost))
                while model.reduce(0, { $0 + $1.cost }) > budget, model.count > 1 { model.removeFirst() }
            case 4...6:
                let got = cache.value(for: key)
                if let at = model.firstIndex(where: { $0.key == key }) {
                    let e = model.remove(at: at)
                    model.append(e)
                    #expect(got == e.value, "step \(step): key \(key)")
                } else {
                    #expect(got == nil, "step \(step): key \(key) should have been evicted")
                }
            default:
                cache.remove(key)
                model.removeAll { $0.key == key }
            }
            #expect(cache.count == model.count, "step \(step)")
            #expect(cache.totalCost == model.reduce(0, { $0 + $1.cost }), "step \(step)")
            if cache.count != model.count { return }
        }
    }
}

/// A small seeded generator, so a failure repeats.
private struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
