import Foundation
import JigdoFormat
import PartSources
import TestSupport
import Testing

/// `--cache-size` with pins (issue 20): the parts under `parts/` stay within the limit plus the
/// parts readers pin; a pinned part is never evicted; a part nobody pins is kept only if it fits.
@Suite struct PartCachePinTests {
    private static func sum(_ n: UInt8) -> Checksum { Checksum([UInt8](repeating: n, count: 16)) }

    /// Stores a verified part of `size` bytes through a partial file, as a download does.
    @discardableResult
    private static func store(_ cache: PartCache, _ n: UInt8, size: Int) throws -> Bool {
        let partial = cache.partialPath(for: sum(n))
        try writeBytes([UInt8](repeating: n, count: size), to: partial)
        let kept = try cache.store(partial: partial, as: sum(n), length: Int64(size))
        #expect(!FileManager.default.fileExists(atPath: partial))
        return kept
    }

    private static func has(_ cache: PartCache, _ n: UInt8) -> Bool {
        FileManager.default.fileExists(atPath: cache.path(for: sum(n)))
    }

    private static func bytes(_ cache: PartCache) -> Int64 {
        cache.entries().reduce(Int64(0)) { $0 + $1.size }
    }

    @Test func aPinnedPartIsNotEvictedAndGoesWhenUnpinned() throws {
        let dir = try TemporaryDirectory()
        let cache = try PartCache(directory: dir.path, sizeLimit: 1000)
        try Self.store(cache, 1, size: 400)
        cache.pin(Self.sum(1))
        try Self.store(cache, 2, size: 400)
        // Over the limit with the third: the least recently used unpinned part goes, not the
        // pinned one (older still).
        #expect(try Self.store(cache, 3, size: 400))
        #expect(Self.has(cache, 1) && !Self.has(cache, 2) && Self.has(cache, 3))
        // A part bigger than the whole limit, pinned by a reader waiting for it: kept while pinned.
        cache.pin(Self.sum(4))
        #expect(try Self.store(cache, 4, size: 1500))
        #expect(Self.has(cache, 4) && Self.has(cache, 1))
        #expect(Self.bytes(cache) <= 1000 + 400 + 1500)
        // Unpinned, over the limit: evicted at once, down to the limit.
        cache.unpin(Self.sum(4))
        cache.unpin(Self.sum(1))
        #expect(!Self.has(cache, 4))
        #expect(Self.bytes(cache) <= 1000)
    }

    @Test func aPartNobodyPinsIsKeptOnlyIfItFits() throws {
        let dir = try TemporaryDirectory()
        let cache = try PartCache(directory: dir.path, sizeLimit: 1000)
        // Larger than the limit, no reader: not kept.
        #expect(try !Self.store(cache, 1, size: 1500))
        #expect(!Self.has(cache, 1))
        // Beside pinned parts that fill the cache: not kept either.
        cache.pin(Self.sum(2))
        try Self.store(cache, 2, size: 800)
        #expect(try !Self.store(cache, 3, size: 300))
        #expect(Self.has(cache, 2) && !Self.has(cache, 3))
        // Once the pin is gone it fits again (the old part makes room).
        cache.unpin(Self.sum(2))
        #expect(try Self.store(cache, 3, size: 300))
        #expect(Self.bytes(cache) <= 1000)
    }

    @Test func pinsCountPerReader() throws {
        let dir = try TemporaryDirectory()
        let cache = try PartCache(directory: dir.path, sizeLimit: 1000)
        cache.pin(Self.sum(1))
        cache.pin(Self.sum(1))
        try Self.store(cache, 1, size: 1200)
        cache.unpin(Self.sum(1))
        // One reader still holds it.
        #expect(Self.has(cache, 1))
        cache.unpin(Self.sum(1))
        #expect(!Self.has(cache, 1))
    }
}
