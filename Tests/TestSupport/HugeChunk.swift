import Foundation
import JigdoFormat
import Synchronization

/// A .jigdo and template whose image is one huge template chunk (zlib DATA or bzip2 BZIP) of
/// zeros, as jigdo-file writes for a long zero run, with an 8-byte marker at every MiB (the
/// MiB's index, scrambled) so that a read from the wrong place cannot pass as right.
/// Written by python3's zlib/bz2 (not our code); the .jigdo has no parts.
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
        let script = #"""
        import bz2, hashlib, struct, sys, zlib
        out, kind, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
        MiB = 1 << 20
        c = bz2.BZ2Compressor(9) if kind == "bzip2" else zlib.compressobj(1)
        md5 = hashlib.md5()
        parts = []
        zero = bytes(MiB - 8)
        for i in range(size // MiB):
            piece = struct.pack("<Q", i ^ 0x5A5A5A5A5A5A5A5A) + zero
            md5.update(piece)
            parts.append(c.compress(piece))
        parts.append(c.flush())
        data = b"".join(parts)
        le = lambda v, n: v.to_bytes(n, "little")
        header = b"JigsawDownload template 1.1 jigdo-file/0.8.0\r\nhuge chunk fixture\r\n\r\n"
        chunk = (b"BZIP" if kind == "bzip2" else b"DATA") + le(16 + len(data), 6) + le(size, 6) + data
        entries = bytes([2]) + le(size, 6) + bytes([5]) + le(size, 6) + md5.digest() + le(1024, 4)
        desc = b"DESC" + le(len(entries) + 16, 6) + entries + le(len(entries) + 16, 6)
        open(out + "/huge.template", "wb").write(header + chunk + desc)
        open(out + "/huge.jigdo", "w").write("[Jigdo]\nVersion=1.1\nGenerator=test\n\n[Image]\nFilename=huge.iso\nTemplate=huge.template\n\n[Parts]\n\n[Servers]\n")
        """#
        let r = try Subprocess.run("/usr/bin/python3", ["-c", script, dir, bzip2 ? "bzip2" : "zlib", String(size)])
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
