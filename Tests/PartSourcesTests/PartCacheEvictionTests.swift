import Foundation
import JigdoFormat
import PartSources
import TestSupport
import Testing

/// `PartCache`'s one least-recently-used eviction (used by `--cache-size` and `cache clean`)
/// and the one unit of `Entry.lastUseNs` in both listings.
@Suite struct PartCacheEvictionTests {
    private static func setMTime(_ path: String, seconds: Int, nanoseconds: Int) {
        var times = [timespec(tv_sec: seconds, tv_nsec: nanoseconds), timespec(tv_sec: seconds, tv_nsec: nanoseconds)]
        #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)
    }

    /// A verified part of `size` bytes with the given mtime (seconds; 123 ns on top).
    private static func addPart(_ cache: PartCache, _ n: UInt8, size: Int, usedAt seconds: Int) throws -> String {
        let sum = Checksum([UInt8](repeating: n, count: 16))
        let path = cache.path(for: sum)
        mkdir(String(path[..<path.lastIndex(of: "/")!]), 0o700)
        try writeBytes([UInt8](repeating: n, count: size), to: path)
        setMTime(path, seconds: seconds, nanoseconds: 123)
        return path
    }

    @Test func evictsOldestFirstDownToTheTarget() throws {
        let dir = try TemporaryDirectory()
        let cache = try PartCache(directory: dir.path)
        let middle = try Self.addPart(cache, 2, size: 100, usedAt: 2_000)
        let oldest = try Self.addPart(cache, 1, size: 100, usedAt: 1_000)
        let newest = try Self.addPart(cache, 3, size: 100, usedAt: 3_000)

        let result = cache.evictLeastRecentlyUsed(downTo: 150)
        #expect(result.removed == 2)
        #expect(result.freed == 200)
        #expect(result.kept == 100)
        #expect(!FileManager.default.fileExists(atPath: oldest))
        #expect(!FileManager.default.fileExists(atPath: middle))
        #expect(FileManager.default.fileExists(atPath: newest))

        let nothing = cache.evictLeastRecentlyUsed(downTo: 100)
        #expect(nothing.removed == 0 && nothing.kept == 100)
    }

    @Test func bothListingsGiveLastUseInNanoseconds() throws {
        let dir = try TemporaryDirectory()
        let cache = try PartCache(directory: dir.path)
        let sum = Checksum([UInt8](repeating: 9, count: 16))
        _ = try Self.addPart(cache, 9, size: 10, usedAt: 5_000)
        let partial = cache.partialPath(for: sum)
        try writeBytes([1, 2, 3], to: partial)
        Self.setMTime(partial, seconds: 6_000, nanoseconds: 456)

        #expect(cache.entries().map(\.lastUseNs) == [5_000 * 1_000_000_000 + 123])
        #expect(cache.partialEntries().map(\.lastUseNs) == [6_000 * 1_000_000_000 + 456])
    }
}

@Suite("PartCache paths")
struct PartCachePathTests {
    @Test("a part's cache path and partial path keep the layout (parts/<kind>/<2 chars>/<b64>, partial/<kind>/<b64>) for MD5 and SHA256 alike, so existing caches keep working")
    func layout() throws {
        let tmp = try TemporaryDirectory()
        let cache = try PartCache(directory: tmp.path + "/c/")
        for kind in ChecksumKind.allCases {
            for seed in 0..<50 {
                let bytes = (0..<kind.byteCount).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ seed &* 101 &+ 7) }
                let sum = Checksum(bytes)
                let b64 = sum.base64
                let dir = kind.rawValue.lowercased()
                #expect(cache.path(for: sum) == "\(tmp.path)/c/parts/\(dir)/\(b64.prefix(2))/\(b64)")
                #expect(cache.partialPath(for: sum) == "\(tmp.path)/c/partial/\(dir)/\(b64)")
            }
        }
    }
}
