#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The `[Parts]` section: checksum (jigdo Base64 text) -> locations, in file order. Compact, as
/// a BD's .jigdo has some 50,000 parts: a key that is a checksum in its canonical Base64 is
/// held as its 16 or 32 bytes in one buffer (no String, no `Checksum` value), found through an
/// open-addressing index of 4-byte buckets; the values' text in one byte arena, the `base`
/// of each (one per file read) interned. Once complete (`shrink`), a key's locations are
/// contiguous and a location costs 12 bytes beside its text.
///
/// Per part of one location, once complete (SHA256): 32 bytes of checksum, ~5.3 of index (load
/// 3/4), 4 of slot start, 12 of location, and the text (`Label:path`). Once the image's
/// template is known (`adopt`, when `JigdoImage` opens it), the template's part list holds the
/// checksums and a key keeps a 4-byte part number instead: ~25 bytes beside the text. A
/// `[String: [JigdoLocation]]` cost ~260 bytes a part; a `[UInt64: Int32]` prefix dictionary
/// with a `[Checksum]` copy (40-byte stride) and linked entries ~105.
///
/// Other keys (never looked up by a part: no checksum has them as its Base64) are kept in a
/// dictionary, for the tools that list keys.
public struct JigdoPartsTable: Sendable {
    /// A location while the table grows: linked to the next one of its key.
    private struct Entry {
        var offset: UInt32
        var length: UInt16
        var base: UInt16
        var weight: Int32
        /// The next location of the same key (index into `entries`), -1 for none.
        var next: Int32
    }
    /// A location once the table is complete: those of a key are contiguous, in file order.
    private struct Packed {
        var offset: UInt32
        var length: UInt16
        var base: UInt16
        var weight: Int32
    }
    /// A key's chain while the table grows.
    private struct Key {
        var first: Int32
        var last: Int32
        var count: Int32
    }

    /// Each slot's checksum bytes at `stride` (16, or 32 once a SHA256 key came); zeros for the
    /// slots of `other`. Once a template's part list is adopted: only the checksums it does not
    /// have (`sumRef`).
    private var sums: [UInt8] = []
    /// The part list adopted (`adopt`): it holds the checksums of most keys already.
    private var template: TemplateParts?
    /// With `template`: each slot's checksum, as the index of the first part that has it, or
    /// `external | n` for the n-th checksum in `sums`; `unused` for the slots of `other`.
    private var sumRef: [UInt32] = []
    private static let external: UInt32 = 1 << 31
    private static let unused = UInt32.max
    private var stride = 16
    /// Set when 16-byte keys sit in a buffer of stride 32 (a file that mixes MD5 and SHA256
    /// keys): a bit per slot, set for a 16-byte key.
    private var short: [UInt64] = []
    /// Open addressing, linear probing: a checksum key's slot number + 1 and 8 bits of its hash
    /// (`place`), 0 for an empty bucket. Buckets are picked by a seeded hash of the whole
    /// checksum, so no crafted set of keys makes one long run.
    private var index: [UInt32] = []
    private var checksumSlots = 0
    private var other: [String: Int32] = [:]
    /// While the table grows (`packed` empty): each slot's chain of `entries`.
    private var chains: [Key] = []
    private var entries: [Entry] = []
    /// Once complete (`shrink`): slot s's locations are `packed[starts[s]..<starts[s + 1]]`.
    private var starts: [UInt32] = []
    private var packed: [Packed] = []
    private var arena: [UInt8] = []
    private var bases: [String] = []
    /// Set by `shrink`, cleared by `append`: a second `shrink` (of a copy) changes nothing.
    private var complete = false
    private var baseIndex: [String: UInt16] = [:]

    public init() {}

    /// The table of `parts` (tests, tools).
    public init(_ parts: [String: [JigdoLocation]]) {
        for (key, locations) in parts.sorted(by: { $0.key < $1.key }) {
            for l in locations { try? append(l, for: key) }
        }
        shrink()
    }

    private var isPacked: Bool { !starts.isEmpty }
    private var slotCount: Int { isPacked ? starts.count - 1 : chains.count }

    /// Keys held.
    public var count: Int { slotCount }
    public var isEmpty: Bool { slotCount == 0 }

    private func slot(_ key: String) -> Int? {
        if let sum = JigdoBase64.decodeCanonicalChecksum(key) { return slot(sum) }
        return other[key].map(Int.init)
    }

    private func count(ofSlot s: Int) -> Int {
        isPacked ? Int(starts[s + 1] - starts[s]) : Int(chains[s].count)
    }

    /// How many locations `key` holds.
    public func valueCount(for key: String) -> Int { slot(key).map(count(ofSlot:)) ?? 0 }

    /// The locations of `key`, in file order; nil when it has none.
    public subscript(key: String) -> [JigdoLocation]? { slot(key).map(locations(ofSlot:)) }

    /// The locations of a part, in file order; nil when it has none.
    public func locations(for checksum: Checksum) -> [JigdoLocation]? { slot(checksum).map(locations(ofSlot:)) }

    // MARK: the checksum index

    /// A seeded hash of the whole checksum (its words: no byte loop).
    private static func hash(_ sum: Checksum) -> UInt64 {
        sum.withUnsafeBytes { b in
            var h = Hasher()
            for at in Swift.stride(from: 0, to: b.count, by: 8) { h.combine(b.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
            return UInt64(UInt(bitPattern: h.finalize()))
        }
    }

    /// The bucket of hash `h` among `capacity` (its high bits), and its tag (8 low bits, kept
    /// in the bucket: most probes of other keys end there, without reading their checksum).
    private static func place(_ h: UInt64, _ capacity: Int) -> (bucket: Int, tag: UInt32) {
        (Int(h.multipliedFullWidth(by: UInt64(capacity)).high), UInt32(truncatingIfNeeded: h & 0xFF) << Self.slotBits)
    }
    /// An index bucket: the tag in the high 8 bits, slot number + 1 in the low 24 (0: empty).
    private static let slotBits: UInt32 = 24
    private static let slotMask: UInt32 = (1 << 24) - 1
    /// Keys held at most (a .jigdo's 64 MiB of text holds under 3 million).
    static let maxKeys = Int(slotMask) - 1

    /// Calls `body` with slot `s`'s checksum bytes (a checksum slot's).
    private func withSum<R>(ofSlot s: Int, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        let n = isShort(s) ? 16 : stride
        guard let template else {
            return sums.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[s * stride..<s * stride + n])) }
        }
        let r = sumRef[s]
        if r & Self.external == 0 {
            let k = template.checksumKind.byteCount
            return template.withChecksumBytes { body(UnsafeRawBufferPointer(rebasing: $0[Int(r) * k..<(Int(r) + 1) * k])) }
        }
        let e = Int(r & ~Self.external)
        return sums.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[e * stride..<e * stride + n])) }
    }

    /// Whether slot `s` holds `sum`.
    private func holds(_ s: Int, _ sum: Checksum) -> Bool {
        withSum(ofSlot: s) { have in
            have.count == sum.byteCount && sum.withUnsafeBytes { b in memcmp(have.baseAddress!, b.baseAddress!, b.count) == 0 }
        }
    }

    private func isShort(_ s: Int) -> Bool {
        short.isEmpty ? false : short[s >> 6] & (1 << UInt64(s & 63)) != 0
    }

    private func checksum(ofSlot s: Int) -> Checksum {
        withSum(ofSlot: s) { Checksum(unchecked: $0) }
    }

    private func slot(_ sum: Checksum) -> Int? {
        guard !index.isEmpty, sum.byteCount <= stride else { return nil }
        let (first, tag) = Self.place(Self.hash(sum), index.count)
        var b = first
        while index[b] != 0 {
            let e = index[b]
            if e & ~Self.slotMask == tag, holds(Int(e & Self.slotMask) - 1, sum) { return Int(e & Self.slotMask) - 1 }
            b += 1
            if b == index.count { b = 0 }
        }
        return nil
    }

    /// Puts slot `s` with checksum `sum` into `index`, which has room.
    private static func insert(_ s: Int, _ sum: Checksum, into index: inout [UInt32]) {
        let (first, tag) = place(hash(sum), index.count)
        var b = first
        while index[b] != 0 {
            b += 1
            if b == index.count { b = 0 }
        }
        index[b] = tag | UInt32(s + 1)
    }

    /// Makes the index `capacity` buckets (above the checksum slots' count) and fills it. The
    /// checksums are read in slot order (in bucket order, each was a cache miss).
    private mutating func reindex(capacity: Int) {
        var fresh = [UInt32](repeating: 0, count: capacity)
        let others = Set(other.values)
        for s in 0..<slotCount where !others.contains(Int32(s)) {
            Self.insert(s, checksum(ofSlot: s), into: &fresh)
        }
        index = fresh
    }

    /// Stores `sum` as slot `s`'s checksum (a new slot, the last one).
    private mutating func store(_ sum: Checksum, slot s: Int) {
        if sum.byteCount > stride { widen() }
        sum.withUnsafeBytes { sums.append(contentsOf: $0) }
        if sum.byteCount < stride {
            sums.append(contentsOf: repeatElement(0, count: stride - sum.byteCount))
            if short.isEmpty { short = [UInt64](repeating: 0, count: slotCount / 64 + 1) }
        }
        if !short.isEmpty {
            while short.count <= s >> 6 { short.append(0) }
            if sum.byteCount < stride { short[s >> 6] |= 1 << UInt64(s & 63) }
        }
    }

    /// From stride 16 to 32: every slot so far holds a 16-byte key (or none).
    private mutating func widen() {
        let n = sums.count / 16
        var wide: [UInt8] = []
        wide.reserveCapacity((n + 1) * 32)
        for s in 0..<n {
            wide.append(contentsOf: sums[s * 16..<(s + 1) * 16])
            wide.append(contentsOf: repeatElement(0, count: 16))
        }
        sums = wide
        stride = 32
        short = [UInt64](repeating: 0, count: n / 64 + 1)
        for b in index where b != 0 {
            let s = Int(b & Self.slotMask) - 1
            short[s >> 6] |= 1 << UInt64(s & 63)
        }
    }

    /// The slot of `sum`, made if it has none.
    private mutating func slotMaking(_ sum: Checksum) -> Int {
        if let s = slot(sum) { return s }
        // Grown before the new slot is made: `reindex` puts every checksum slot in.
        if (checksumSlots + 1) * 4 > index.count * 3 { reindex(capacity: max(64, (checksumSlots + 1) * 2)) }
        let s = newSlot()
        store(sum, slot: s)
        checksumSlots += 1
        Self.insert(s, sum, into: &index)
        return s
    }

    private mutating func newSlot() -> Int {
        chains.append(Key(first: -1, last: -1, count: 0))
        return chains.count - 1
    }

    // MARK: reading

    private func location(_ offset: UInt32, _ length: UInt16, _ base: UInt16, _ weight: Int32) -> JigdoLocation {
        let value = arena.withUnsafeBufferPointer {
            String(decoding: UnsafeBufferPointer(rebasing: $0[Int(offset)..<Int(offset) + Int(length)]), as: UTF8.self)
        }
        return JigdoLocation(value: value, base: bases[Int(base)], weight: Int(weight))
    }

    private func locations(ofSlot s: Int) -> [JigdoLocation] {
        var out: [JigdoLocation] = []
        out.reserveCapacity(count(ofSlot: s))
        if isPacked {
            for p in packed[Int(starts[s])..<Int(starts[s + 1])] { out.append(location(p.offset, p.length, p.base, p.weight)) }
            return out
        }
        var e = chains[s].first
        while e >= 0 {
            let entry = entries[Int(e)]
            out.append(location(entry.offset, entry.length, entry.base, entry.weight))
            e = entry.next
        }
        return out
    }

    /// Every checksum key with its slot.
    private var checksumKeys: [(Checksum, Int)] {
        index.compactMap { b in b == 0 ? nil : (checksum(ofSlot: Int(b & Self.slotMask) - 1), Int(b & Self.slotMask) - 1) }
    }

    /// Every key (checksum keys in their Base64), in no particular order.
    public var keys: [String] { checksumKeys.map { $0.0.base64 } + other.keys }

    /// Every key with its locations.
    public var all: [(key: String, value: [JigdoLocation])] {
        checksumKeys.map { ($0.0.base64, locations(ofSlot: $0.1)) } + other.map { ($0.key, locations(ofSlot: Int($0.value))) }
    }

    /// The first `n` of `all`.
    public func prefix(_ n: Int) -> ArraySlice<(key: String, value: [JigdoLocation])> { all.prefix(n) }

    public func mapValues<T>(_ transform: ([JigdoLocation]) throws -> T) rethrows -> [String: T] {
        var out: [String: T] = [:]
        for (k, v) in all { out[k] = try transform(v) }
        return out
    }

    // MARK: growing

    /// Adds a location at the end of `key`'s. Throws when the values' text passes 4 GiB, a value
    /// passes 64 KiB or the files read pass 65,535 (the parser keeps values of at most 16 KiB
    /// from at most 65 files, and the metadata budget refuses far less text first).
    public mutating func append(_ location: JigdoLocation, for key: String) throws {
        let text = location.value.utf8
        guard arena.count + text.count <= Int(UInt32.max), entries.count + packed.count < Int(Int32.max) - 1 else {
            throw JigdoError(.syntax, "[Parts] holds more than 4 GiB of locations")
        }
        guard slotCount < Self.maxKeys else {
            throw JigdoError(.syntax, "[Parts] holds more than \(Self.maxKeys) keys")
        }
        guard text.count <= Int(UInt16.max) else {
            throw JigdoError(.syntax, "[Parts] location of \(text.count) bytes (at most \(UInt16.max) are kept)")
        }
        let base: UInt16
        if let b = baseIndex[location.base] {
            base = b
        } else {
            guard bases.count < Int(UInt16.max) else { throw JigdoError(.syntax, "[Parts] locations of more than \(UInt16.max) files") }
            base = UInt16(bases.count)
            bases.append(location.base)
            baseIndex[location.base] = base
        }
        if template != nil { unadopt() }
        if isPacked { unpack() }
        complete = false
        let e = Int32(entries.count)
        entries.append(Entry(offset: UInt32(arena.count), length: UInt16(text.count), base: base,
                             weight: Int32(clamping: location.weight), next: -1))
        arena.append(contentsOf: text)
        let s: Int
        if let sum = JigdoBase64.decodeCanonicalChecksum(key) {
            s = slotMaking(sum)
        } else if let found = other[key] {
            s = Int(found)
        } else {
            s = newSlot()
            sums.append(contentsOf: repeatElement(0, count: stride))
            if !short.isEmpty, short.count <= s >> 6 { short.append(0) }
            other[key] = Int32(s)
        }
        var k = chains[s]
        if k.last >= 0 { entries[Int(k.last)].next = e } else { k.first = e }
        k.last = e
        k.count += 1
        chains[s] = k
    }

    /// Back to chains, for an `append` after `shrink`.
    private mutating func unpack() {
        chains = []
        chains.reserveCapacity(starts.count - 1)
        entries = []
        entries.reserveCapacity(packed.count)
        for s in 0..<(starts.count - 1) {
            let lo = Int(starts[s]), hi = Int(starts[s + 1])
            chains.append(Key(first: lo < hi ? Int32(lo) : -1, last: lo < hi ? Int32(hi - 1) : -1, count: Int32(hi - lo)))
            for i in lo..<hi {
                let p = packed[i]
                entries.append(Entry(offset: p.offset, length: p.length, base: p.base, weight: p.weight, next: i + 1 < hi ? Int32(i + 1) : -1))
            }
        }
        starts = []
        packed = []
    }

    /// Bytes the table's arrays hold (the few bases and non-checksum keys aside).
    var heldBytes: Int {
        sums.capacity + sumRef.capacity * 4 + short.capacity * 8 + index.capacity * 4 + chains.capacity * MemoryLayout<Key>.stride
            + entries.capacity * MemoryLayout<Entry>.stride + starts.capacity * 4
            + packed.capacity * MemoryLayout<Packed>.stride + arena.capacity
    }

    /// Completes the table: each key's locations made contiguous (12 bytes a location, 4 a key,
    /// where the chains took 16 and 12), the index sized for a load of 3/4, and what the arrays
    /// reserved while they grew given back.
    public mutating func shrink() {
        // Already done: nothing is copied (a table shared by copies stays shared).
        guard !complete else { return }
        complete = true
        func exact<T>(_ a: [T]) -> [T] {
            var out: [T] = []
            out.reserveCapacity(a.count)
            out.append(contentsOf: a)
            return out
        }
        if !isPacked && !chains.isEmpty {
            var starts: [UInt32] = []
            starts.reserveCapacity(chains.count + 1)
            var packed: [Packed] = []
            packed.reserveCapacity(entries.count)
            for k in chains {
                starts.append(UInt32(packed.count))
                var e = k.first
                while e >= 0 {
                    let entry = entries[Int(e)]
                    packed.append(Packed(offset: entry.offset, length: entry.length, base: entry.base, weight: entry.weight))
                    e = entry.next
                }
            }
            starts.append(UInt32(packed.count))
            chains = []
            entries = []
            self.starts = starts
            self.packed = packed
        }
        if checksumSlots > 0 { reindex(capacity: checksumSlots + checksumSlots / 3 + 1) }
        sums = exact(sums)
        arena = exact(arena)
    }

    /// Takes the checksums of the keys that are parts of `parts` (the template's part list,
    /// which holds them anyway) from there: 4 bytes a key instead of its 16 or 32. Lookups
    /// answer as before; the keys it does not have keep their own. Completes the table first.
    /// Changes only what a copy of the table does not share with this one (the index, the
    /// locations and their text stay shared).
    public mutating func adopt(_ parts: TemplateParts) {
        guard template == nil, checksumSlots > 0, parts.count < Int(Self.external) else { return }
        shrink()
        var ref = [UInt32](repeating: Self.unused, count: slotCount)
        for p in parts.indices {
            if let s = slot(parts.checksum(p)), ref[s] == Self.unused { ref[s] = UInt32(p) }
        }
        var own = 0
        for b in index where b != 0 && ref[Int(b & Self.slotMask) - 1] == Self.unused { own += 1 }
        var kept: [UInt8] = []
        kept.reserveCapacity(own * stride)
        for b in index where b != 0 && ref[Int(b & Self.slotMask) - 1] == Self.unused {
            let s = Int(b & Self.slotMask) - 1
            ref[s] = Self.external | UInt32(kept.count / stride)
            kept.append(contentsOf: sums[s * stride..<(s + 1) * stride])
        }
        sums = kept
        sumRef = ref
        template = parts
    }

    /// Every slot's checksum back in `sums`, for an `append` after `adopt`.
    private mutating func unadopt() {
        var all: [UInt8] = []
        all.reserveCapacity(slotCount * stride)
        for s in 0..<slotCount {
            if sumRef[s] != Self.unused { withSum(ofSlot: s) { all.append(contentsOf: $0) } }
            all.append(contentsOf: repeatElement(0, count: stride * (s + 1) - all.count))
        }
        sums = all
        sumRef = []
        template = nil
    }
}
