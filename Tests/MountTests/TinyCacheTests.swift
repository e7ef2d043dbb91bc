import Foundation
import JigdoFormat
import Synchronization
import TestSupport
import Testing

// Issue 20, "a small cache fails reads under load": a 2 MiB `--cache-size` (smaller than the
// fixture's largest parts, up to 3 MiB) under 16 concurrent random readers. A full or tiny
// cache must cost caching, not correctness: no EIO, no short read before the end of the image,
// no wrong byte; and the parts under `parts/` stay within the limit plus the parts pinned by
// reads in flight (the bound the Downloads README documents).

/// The reads in flight now and those that ended recently, for the cache-size bound: a part
/// can be pinned only by a read in flight.
private struct InFlight {
    var clock: UInt64 = 0
    var active: [Int: (offset: Int64, count: Int)] = [:]
    var ended: [(at: UInt64, offset: Int64, count: Int)] = []
}

/// Bytes of the regular files under `dir` that were there through two walks one after the
/// other (same path, same inode): all of them existed at once when the first walk ended, so
/// the sum is a lower bound of the directory's size at that instant (a single walk could count
/// a file removed during it together with one added after that).
private func stableSize(under dir: String) -> Int64 {
    func walk() -> [String: (ino: UInt64, size: Int64)] {
        var out: [String: (UInt64, Int64)] = [:]
        for path in regularFiles(under: dir) {
            var st = stat()
            if lstat(path, &st) == 0 { out[path] = (UInt64(st.st_ino), Int64(st.st_size)) }
        }
        return out
    }
    let first = walk()
    let second = walk()
    var total: Int64 = 0
    for (path, a) in first where second[path].map({ $0.ino == a.ino }) == true { total += a.size }
    return total
}

@Suite(.serialized, .enabled(if: Harness.canMount, "needs root, /dev/fuse and fusermount3"))
struct TinyCacheTests {
    @Test("--cache-size 2M, 16 concurrent random readers: no EIO, no short read, no wrong byte; parts/ within the limit plus the parts of reads in flight")
    func tinyCacheUnderLoad() throws {
        let cold = try ColdRelease()
        defer { cold.remove() }
        let limit: Int64 = 2 << 20
        let info = try TemplateInfo.read(path: cold.dir + "/release.template")
        let largest = info.parts.map(\.length).max() ?? 0
        // The case of the issue: parts larger than the whole cache.
        #expect(largest > limit)
        let readers = 16, readsPerReader = 8
        try Harness.withMount([cold.jigdo], options: cold.options + ["--cache-size", "2M"]) { mnt in
            let image = mnt + "/release.iso"
            let original = open(cold.iso, O_RDONLY)
            try #require(original >= 0)
            defer { close(original) }
            let size = cold.size(cold.iso)
            try #require(cold.size(image) == size)

            let inFlight = Mutex(InFlight())
            let failures = Mutex<[String]>([])
            let worst = Mutex<(excess: Int64, sample: String)>((0, ""))
            /// The bytes of the distinct parts a read of `offset..<offset+count` can pin (the
            /// range rounded out to pages: the kernel asks for whole pages).
            @Sendable func partBytes(_ ranges: [(offset: Int64, count: Int)]) -> Int64 {
                var sums = Set<Checksum>()
                var bytes: Int64 = 0
                for r in ranges {
                    let start = r.offset / 4096 * 4096
                    let end = (r.offset + Int64(r.count) + 4095) / 4096 * 4096
                    for p in info.partsCovering(offset: start, count: end - start) where sums.insert(info.parts[p].checksum).inserted {
                        bytes += info.parts[p].length
                    }
                }
                return bytes
            }
            /// Measures parts/ against the limit plus every part a read in flight meanwhile
            /// may hold.
            @Sendable func sample() {
                let since = inFlight.withLock { s -> UInt64 in s.clock += 1; return s.clock }
                let cached = stableSize(under: cold.cacheDir + "/parts")
                let ranges = inFlight.withLock { s in
                    Array(s.active.values) + s.ended.filter { $0.at >= since }.map { ($0.offset, $0.count) }
                }
                let pinnable = partBytes(ranges)
                if cached > limit + pinnable {
                    failures.withLock { $0.append("parts/ holds \(cached) bytes: more than the limit \(limit) + \(pinnable) bytes of parts that reads in flight may pin") }
                }
                worst.withLock { w in
                    if cached - limit > w.excess { w = (cached - limit, "\(cached) bytes with \(ranges.count) reads in flight (\(pinnable) bytes of parts)") }
                }
            }

            onReaderThreads(readers, of: image, failed: { m in failures.withLock { $0.append(m) } }) { t, fd in
                // Exactly the pages asked for reach the daemon (no kernel read-ahead), so
                // the reads in flight bound what can be pinned.
                _ = posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM)
                var rng = SeededRandom(seed: UInt64(t + 101))
                var buf = [UInt8](repeating: 0, count: 1 << 20)
                for _ in 0..<readsPerReader {
                    let offset = Int64.random(in: 0..<size, using: &rng)
                    let count = Int(min(Int64.random(in: 1...(1 << 20), using: &rng), size - offset))
                    inFlight.withLock { $0.active[t] = (offset, count) }
                    // One pread: a regular file's read returns less than asked only at the
                    // end of the file (or on an error, as -1), so any short count here is
                    // a short reply from the daemon.
                    let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, count, off_t(offset)) }
                    let code = errno
                    inFlight.withLock { s in
                        s.active[t] = nil
                        s.clock += 1
                        s.ended.append((s.clock, offset, count))
                    }
                    if n < 0 {
                        failures.withLock { $0.append("read at \(offset)+\(count): errno \(code)") }
                    } else if n != count {
                        failures.withLock { $0.append("short read at \(offset): \(n) of \(count) bytes (the image has \(size))") }
                    } else if case .success(let want) = preadFile(original, at: offset, count: count),
                              !bytesEqual(Array(buf[0..<count]), want[...]) {
                        failures.withLock { $0.append("wrong bytes at \(offset)+\(count)") }
                    }
                    // Drop these pages, so that later reads of them reach the daemon again.
                    _ = posix_fadvise(fd, off_t(offset), off_t(count), POSIX_FADV_DONTNEED)
                    sample()
                }
            }
            let found = failures.withLock { $0 }
            #expect(found.isEmpty, "\(found.count) failures: \(found.prefix(20))")
            print("tiny cache: worst excess over the limit \(worst.withLock { $0 })")
            // Still the right image afterwards, and a read once the mount is idle leaves the
            // cache within the limit (nothing is pinned then).
            try Harness.check(["cmp", image, cold.iso])
            #expect(stableSize(under: cold.cacheDir + "/parts") <= limit)
        }
    }
}
