import Glibc
import ImageAssembly
import JigdoFormat
// libFuzzer target: the template reader (header, DESC, chunk headers) and the raw data
// reader (DATA/zlib and BZIP/bzip2 chunks, streamed large chunks).
// Built only by scripts/fuzz.sh (JIGDOFS_FUZZ=1, -sanitize=fuzzer).

let inputPath = (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") + "/jigdofs-fuzz-template-\(getpid())"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTemplate(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    // The reader takes a file: the input is written to one per process (in /dev/shm, memory).
    let fd = open(inputPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { fatalError("cannot write \(inputPath)") }
    var written = 0
    while written < size {
        let n = write(fd, data! + written, size - written)
        guard n > 0 else { fatalError("write to \(inputPath) failed") }
        written += n
    }
    close(fd)
    guard let file = try? ReadOnlyFile(path: inputPath),
          let info = try? TemplateInfo.read(file) else { return 0 }
    // Small thresholds so that small inputs take the streamed (large chunk) path too.
    for (threshold, window) in [(4 << 20, 1 << 20), (256, 64)] {
        let reader = TemplateDataReader(file: file, info: info, cacheBudget: 1 << 20,
                                        largeChunkThreshold: threshold, windowSize: window)
        // The first 256 KiB, then 4 KiB at a few places (behind the streams, at the end).
        let total = info.templateDataLength
        var buffer = [UInt8](repeating: 0, count: 4096)
        var offset: Int64 = 0
        while offset < min(total, 256 << 10) {
            let n = Int(min(Int64(buffer.count), total - offset))
            guard (try? buffer.withUnsafeMutableBytes { try reader.read(at: offset, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<n])) }) != nil else { break }
            offset += Int64(n)
        }
        for at: Int64 in [total / 2, total - 1, total / 3, 0] where at >= 0 && at < total {
            let n = Int(min(Int64(buffer.count), total - at))
            _ = try? buffer.withUnsafeMutableBytes { try reader.read(at: at, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<n])) }
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
let status = runFuzzerDriver(&argc, &argv, fuzzTemplate)
unlink(inputPath)
exit(status)
