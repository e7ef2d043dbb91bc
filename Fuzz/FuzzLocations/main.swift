import Glibc
import JigdoFormat
// libFuzzer target: location expansion ([Servers] labels, chains, fallbacks, --map/--server
// overrides, file: and relative locations, confinement to mapped directories).
// Built only by scripts/fuzz.sh (JIGDOFS_FUZZ=1, -sanitize=fuzzer).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLocations(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    let text = String(decoding: bytes, as: UTF8.self)
    for (base, remote) in [("/nonexistent-fuzz/", false), ("http://127.0.0.1:9/dir/", true)] {
        guard let d = try? JigdoDescriptor.parse(text: text, path: "/nonexistent-fuzz/x.jigdo", base: base) else { continue }
        var resolver = LocationResolver(descriptor: d)
        resolver.allowLocalFromJigdo = !remote
        // Overrides on the labels the file uses, as --map/--server/--mirror would add them.
        for label in d.servers.keys.sorted().prefix(4) {
            resolver.prepend[label] = [JigdoLocation(value: "file:/nonexistent-fuzz/map/", base: "/nonexistent-fuzz/map/")]
            resolver.append[label] = [JigdoLocation(value: "http://127.0.0.1:9/mirror/", base: "http://127.0.0.1:9/mirror/")]
        }
        for key in d.parts.keys.sorted().prefix(256) {
            guard let sum = JigdoBase64.decodeChecksum(key) else { continue }
            for location in resolver.locations(forPart: sum) {
                // No location of a --map label leaves its directory.
                if case .local(let p) = location, p.hasPrefix("/nonexistent-fuzz/map"), !p.hasPrefix("/nonexistent-fuzz/map/") {
                    fatalError("location \(p) left the mapped directory")
                }
                if case .local(let p) = location, remote, !p.hasPrefix("/nonexistent-fuzz/map/") {
                    fatalError("a remote .jigdo named the local file \(p)")
                }
            }
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
exit(runFuzzerDriver(&argc, &argv, fuzzLocations))
