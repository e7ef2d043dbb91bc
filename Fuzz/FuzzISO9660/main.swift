import Glibc
import ISO9660
// libFuzzer target: the ISO 9660 reader (volume descriptors, directory records, Rock Ridge
// with CE continuation chains, Joliet, zisofs headers and blocks).
// Built only by scripts/fuzz.sh (JIGDOFS_FUZZ=1, -sanitize=fuzzer).

/// The input as an image.
final class MemoryImage: ImageByteSource, @unchecked Sendable {
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    var size: Int64 { Int64(bytes.count) }
    func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard offset >= 0, offset < size else { return 0 }
        let n = min(buffer.count, bytes.count - Int(offset))
        bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + Int(offset), byteCount: n) }
        return n
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzISO9660(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let image = MemoryImage(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    for (rr, joliet) in [(true, true), (false, true), (false, false)] {
        guard let volume = try? ISO9660Volume.open(image, name: "fuzz.iso", cacheBudget: 1 << 20, useRockRidge: rr, useJoliet: joliet) else { continue }
        var entries = 0
        var buffer = [UInt8](repeating: 0, count: 8192)
        _ = try? ISOListing.walk(volume, from: volume.root, path: "/") { path, _, children in
            for c in children.prefix(2000) {
                entries += 1
                if entries > 5000 { return }
                _ = ISOListing.modeString(c)
                if c.type == .regular {
                    // The first and the last bytes (zisofs: the header, a block pointer, a block).
                    _ = try? buffer.withUnsafeMutableBytes { try volume.read(c, at: 0, into: $0) }
                    _ = try? buffer.withUnsafeMutableBytes { try volume.read(c, at: max(0, c.size - 100), into: $0) }
                    _ = volume.imageRanges(of: c)
                }
            }
            _ = try? volume.lookup(path + "/x", followSymlinks: true)
        }
    }
    return 0
}

// SwiftPM gives every executable a main of its own; it hands over to libFuzzer's driver (linked
// in by -sanitize=fuzzer), which takes libFuzzer's usual options and corpus directories.
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                     _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(runFuzzerDriver(&argc, &argv, fuzzISO9660))
