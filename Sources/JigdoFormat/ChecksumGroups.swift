#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The parts of a template grouped by checksum, for figures over distinct parts (status): no
/// set or dictionary of checksums, two arrays of 4 bytes a part.
public struct ChecksumGroups: Sendable {
    /// For each part, the index of the first part of nonzero length with the same checksum
    /// (its own index when it is that first one); -1 for a part of length 0.
    public let first: [Int32]
    /// The first parts (of nonzero length) of each checksum, sorted by checksum (`Checksum`'s
    /// `<`, the bytes' `memcmp` order): one entry per distinct part, so several images' lists
    /// merge in one pass.
    public let distinct: [Int32]

    public init(_ parts: TemplateParts) {
        precondition(parts.count < Int(Int32.max), "too many parts")
        var order: [Int32] = []
        order.reserveCapacity(parts.count)
        for i in parts.indices where parts.length(i) > 0 { order.append(Int32(i)) }
        var first = [Int32](repeating: -1, count: parts.count)
        var distinct: [Int32] = []
        let n = parts.checksumKind.byteCount
        parts.withChecksumBytes { sums in
            guard let base = sums.baseAddress else { return }
            func compare(_ a: Int32, _ b: Int32) -> Int32 { memcmp(base + Int(a) * n, base + Int(b) * n, n) }
            // By checksum, then by index: the first of each run is the first occurrence.
            order.sort { a, b in
                let c = compare(a, b)
                return c != 0 ? c < 0 : a < b
            }
            var k = 0
            while k < order.count {
                let head = order[k]
                distinct.append(head)
                while k < order.count, order[k] == head || compare(head, order[k]) == 0 {
                    first[Int(order[k])] = head
                    k += 1
                }
            }
        }
        self.first = first
        self.distinct = distinct
    }

    /// Whether part `index` is the first part of its checksum (and has bytes).
    @inline(__always) public func isFirst(_ index: Int) -> Bool { first[index] == Int32(truncatingIfNeeded: index) }
}

extension TemplateParts {
    /// The parts grouped by checksum (see `ChecksumGroups`); sorts, so compute it once a report.
    public func checksumGroups() -> ChecksumGroups { ChecksumGroups(self) }
}
