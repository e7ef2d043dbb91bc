import Glibc
import JigdoFormat
// libFuzzer target: the .jigdo reader (gzip detection, sections, [Image], [Parts], [Servers],
// value words). Built only by scripts/fuzz.sh (JIGDOFS_FUZZ=1, -sanitize=fuzzer).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJigdo(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    guard let content = try? Decompression.gunzipConcatenated(bytes, limit: 16 << 20) else { return 0 }
    // A remote .jigdo (no local includes) and a local one.
    let text = String(decoding: content, as: UTF8.self)
    if let d = try? JigdoDescriptor.parse(text: text, path: "/nonexistent-fuzz/x.jigdo", base: "http://127.0.0.1:9/dir/") {
        _ = d.checksumKind
        _ = d.image.templateChecksums.count
    }
    _ = try? JigdoDescriptor.parse(text: text, path: "/nonexistent-fuzz/x.jigdo", base: "/nonexistent-fuzz/")
    return 0
}

// SwiftPM gives every executable a main of its own; it hands over to libFuzzer's driver (linked
// in by -sanitize=fuzzer), which takes libFuzzer's usual options and corpus directories.
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                     _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(runFuzzerDriver(&argc, &argv, fuzzJigdo))
