/// The `[Parts]` section: checksum (jigdo Base64 text) -> locations, in file order. Compact, as
/// a BD's .jigdo has some 50,000 parts: a key that is a checksum in its canonical Base64 is
/// held as a `Checksum` (no String), the values' text in one byte arena, the `base` of each
/// (one per file read) interned, 20 bytes a location beside its text. A `[String:
/// [JigdoLocation]]` cost ~260 bytes a part (a String key, an Array and a String value each).
/// Other keys (never looked up by a part: no checksum has them as its Base64) are kept as
/// they were, for the tools that list keys.
public struct JigdoPartsTable: Sendable {
    private struct Entry {
        var offset: UInt32
        var length: UInt32
        var base: UInt32
        var weight: Int32
        /// The next location of the same key (index into `entries`), -1 for none.
        var next: Int32
    }
    private struct Key {
        var first: Int32
        var last: Int32
        var count: Int32
    }
    /// A checksum's first 8 bytes -> its slot (12 bytes a bucket, where a `Checksum` key took
    /// 44); a checksum whose first 8 bytes another one took first is in `collided`.
    private var byPrefix: [UInt64: Int32] = [:]
    private var collided: [Checksum: Int32] = [:]
    private var other: [String: Int32] = [:]
    private var slots: [Key] = []
    /// Each slot's checksum (a placeholder for the slots of `other`: never reached by a prefix).
    private var slotSums: [Checksum] = []
    private var entries: [Entry] = []
    private var arena: [UInt8] = []
    private var bases: [String] = []
    private var baseIndex: [String: UInt32] = [:]

    public init() {}

    /// The table of `parts` (tests, tools).
    public init(_ parts: [String: [JigdoLocation]]) {
        for (key, locations) in parts.sorted(by: { $0.key < $1.key }) {
            for l in locations { try? append(l, for: key) }
        }
    }

    /// Keys held.
    public var count: Int { slots.count }
    public var isEmpty: Bool { slots.isEmpty }

    private func slot(_ key: String) -> Int32? {
        if let sum = JigdoBase64.decodeCanonicalChecksum(key) { return slot(sum) }
        return other[key]
    }

    /// How many locations `key` holds.
    public func valueCount(for key: String) -> Int { slot(key).map { Int(slots[Int($0)].count) } ?? 0 }

    /// The locations of `key`, in file order; nil when it has none.
    public subscript(key: String) -> [JigdoLocation]? { slot(key).map(locations(ofSlot:)) }

    /// The locations of a part, in file order; nil when it has none.
    public func locations(for checksum: Checksum) -> [JigdoLocation]? { slot(checksum).map(locations(ofSlot:)) }

    private static func prefix(_ sum: Checksum) -> UInt64 { sum.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } }

    private func slot(_ sum: Checksum) -> Int32? {
        if let s = byPrefix[Self.prefix(sum)], slotSums[Int(s)] == sum { return s }
        return collided[sum]
    }

    /// The slot of `sum`, made if it has none.
    private mutating func slotMaking(_ sum: Checksum) -> Int32 {
        let p = Self.prefix(sum)
        guard let s = byPrefix[p] else {
            let s = newSlot(sum)
            byPrefix[p] = s
            return s
        }
        if slotSums[Int(s)] == sum { return s }
        if let c = collided[sum] { return c }
        let c = newSlot(sum)
        collided[sum] = c
        return c
    }

    private var checksumSlots: [(Checksum, Int32)] {
        byPrefix.values.map { (slotSums[Int($0)], $0) } + collided.map { ($0.key, $0.value) }
    }

    private func locations(ofSlot s: Int32) -> [JigdoLocation] {
        var out: [JigdoLocation] = []
        out.reserveCapacity(Int(slots[Int(s)].count))
        var e = slots[Int(s)].first
        while e >= 0 {
            let entry = entries[Int(e)]
            let value = arena.withUnsafeBufferPointer {
                String(decoding: UnsafeBufferPointer(rebasing: $0[Int(entry.offset)..<Int(entry.offset) + Int(entry.length)]), as: UTF8.self)
            }
            out.append(JigdoLocation(value: value, base: bases[Int(entry.base)], weight: Int(entry.weight)))
            e = entry.next
        }
        return out
    }

    /// Every key (checksum keys in their Base64), in no particular order.
    public var keys: [String] { checksumSlots.map { $0.0.base64 } + other.keys }

    /// Every key with its locations.
    public var all: [(key: String, value: [JigdoLocation])] {
        checksumSlots.map { ($0.0.base64, locations(ofSlot: $0.1)) } + other.map { ($0.key, locations(ofSlot: $0.value)) }
    }

    /// The first `n` of `all`.
    public func prefix(_ n: Int) -> ArraySlice<(key: String, value: [JigdoLocation])> { all.prefix(n) }

    public func mapValues<T>(_ transform: ([JigdoLocation]) throws -> T) rethrows -> [String: T] {
        var out: [String: T] = [:]
        for (k, v) in all { out[k] = try transform(v) }
        return out
    }

    /// Adds a location at the end of `key`'s. Throws when the values' text passes 4 GiB (the
    /// metadata budget refuses far less first).
    public mutating func append(_ location: JigdoLocation, for key: String) throws {
        let text = location.value.utf8
        guard arena.count + text.count <= Int(UInt32.max), entries.count < Int(Int32.max) - 1 else {
            throw JigdoError(.syntax, "[Parts] holds more than 4 GiB of locations")
        }
        let base: UInt32
        if let b = baseIndex[location.base] {
            base = b
        } else {
            base = UInt32(bases.count)
            bases.append(location.base)
            baseIndex[location.base] = base
        }
        let e = Int32(entries.count)
        entries.append(Entry(offset: UInt32(arena.count), length: UInt32(text.count), base: base,
                             weight: Int32(clamping: location.weight), next: -1))
        arena.append(contentsOf: text)
        let s: Int32
        if let sum = JigdoBase64.decodeCanonicalChecksum(key) {
            s = slotMaking(sum)
        } else if let found = other[key] {
            s = found
        } else {
            s = newSlot(Checksum([UInt8](repeating: 0, count: 16)))
            other[key] = s
        }
        var k = slots[Int(s)]
        if k.last >= 0 { entries[Int(k.last)].next = e } else { k.first = e }
        k.last = e
        k.count += 1
        slots[Int(s)] = k
    }

    private mutating func newSlot(_ sum: Checksum) -> Int32 {
        slots.append(Key(first: -1, last: -1, count: 0))
        slotSums.append(sum)
        return Int32(slots.count - 1)
    }

    /// Gives back what the arrays reserved while they grew (up to half of each), once the
    /// table is complete.
    public mutating func shrink() {
        func exact<T>(_ a: [T]) -> [T] {
            var out: [T] = []
            out.reserveCapacity(a.count)
            out.append(contentsOf: a)
            return out
        }
        slots = exact(slots)
        slotSums = exact(slotSums)
        entries = exact(entries)
        arena = exact(arena)
    }
}
