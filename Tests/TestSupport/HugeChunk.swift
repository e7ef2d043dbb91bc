import Foundation
import JigdoFormat
import Synchronization

/// A .jigdo and template whose image is one huge template chunk (zlib DATA or bzip2 BZIP) of
/// zeros, as jigdo-file writes for a long zero run, with an 8-byte marker at every MiB (the
/// MiB's index, scrambled) so that a read from the wrong place cannot pass as right.
/// Made by Tests/Fixtures/make-huge-chunk.py (python's zlib/bz2, not our code); no parts.
public struct HugeChunkImage: Sendable {
    public let jigdo: String
    public let template: String
    public let size: Int64

    public static let mib: Int64 = 1 << 20

    private static let made = Mutex<[String: HugeChunkImage]>([:])

    /// The standard ones, made once per test process: 1 GiB of zlib, 256 MiB of bzip2.
    public static func shared(bzip2: Bool) throws -> HugeChunkImage {
        try made.withLock { all in
            let key = bzip2 ? "bzip2" : "zlib"
            if let m = all[key] { return m }
            let dir = try ProcessTemp.directory("huge-" + key)
            chmod(dir, 0o755)
            let m = try make(in: dir, size: bzip2 ? 256 << 20 : 1 << 30, bzip2: bzip2)
            all[key] = m
            return m
        }
    }

    /// - Parameter bzip2: a BZIP chunk instead of DATA.
    public static func make(in dir: String, size: Int64, bzip2: Bool = false) throws -> HugeChunkImage {
        let script = Fixtures.testsDirectory + "/Fixtures/make-huge-chunk.py"
        let r = try Subprocess.run("/usr/bin/python3", [script, dir, bzip2 ? "bzip2" : "zlib", String(size)])
        guard r.status == 0 else { throw FixtureError("huge chunk fixture: \(r.stderr)") }
        return HugeChunkImage(jigdo: dir + "/huge.jigdo", template: dir + "/huge.template", size: size)
    }

    /// The image byte at `offset`.
    public static func byte(at offset: Int64) -> UInt8 {
        let inMiB = offset % mib
        guard inMiB < 8 else { return 0 }
        let marker = UInt64(offset / mib) ^ 0x5A5A_5A5A_5A5A_5A5A
        return UInt8(truncatingIfNeeded: marker >> (8 * UInt64(inMiB)))
    }

    /// Offsets of random 4 KiB reads: half at a marker (a MiB start, or just before one), half anywhere.
    public static func randomReads(_ count: Int, size: Int64, seed: UInt64) -> [Int64] {
        var rng = SeededRandom(seed: seed)
        return (0..<count).map { i in
            let mibIndex = Int64(rng.next() % UInt64(size / mib))
            switch i % 3 {
            case 0: return mibIndex * mib
            case 1: return max(0, mibIndex * mib - 2000)
            default: return Int64(rng.next() % UInt64(size - 4096))
            }
        }
    }
}
