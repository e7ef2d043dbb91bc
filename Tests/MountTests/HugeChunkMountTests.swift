import Dispatch
import Foundation
import Synchronization
import Testing
import TestSupport

/// Issue 9: a mounted image that is one 1 GiB template chunk of zeros: random 4 KiB reads from
/// 16 threads through the mount are right, and the daemon stays within its memory goal
/// (figures: bench/template-chunk.sh).
@Suite(.serialized, .enabled(if: Harness.canMount, "needs root, /dev/fuse and fusermount3"))
struct HugeChunkMountTests {
    @Test("16 readers of random 4 KiB through the mount: right bytes; the daemon's peak RSS under 64 MiB")
    func randomReadsThroughMount() throws {
        let fixture = try HugeChunkImage.shared(bzip2: false)
        try Harness.withMount([fixture.jigdo]) { mnt in
            let daemon = try #require(Harness.pids(withArgument: mnt).first, "the mount's daemon")
            let path = mnt + "/huge.iso"
            let offsets = [fixture.size - 4096] + HugeChunkImage.randomReads(16 * 10, size: fixture.size, seed: 3)
            let failures = Mutex<[String]>([])
            // The read at the end first (one pass over the chunk), then the random ones.
            for batch in [Array(offsets.prefix(1)), Array(offsets.dropFirst())] {
                DispatchQueue.concurrentPerform(iterations: min(16, batch.count)) { t in
                    let fd = open(path, O_RDONLY)
                    guard fd >= 0 else { return failures.withLock { $0.append("open: \(errno)") } }
                    defer { close(fd) }
                    var buffer = [UInt8](repeating: 0, count: 4096)
                    for i in stride(from: t, to: batch.count, by: 16) {
                        let offset = batch[i]
                        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 4096, off_t(offset)) }
                        guard n == 4096 else {
                            failures.withLock { $0.append("\(offset): read \(n), errno \(errno)") }
                            continue
                        }
                        if let bad = buffer.indices.first(where: { buffer[$0] != HugeChunkImage.byte(at: offset + Int64($0)) }) {
                            failures.withLock { $0.append("byte \(offset + Int64(bad)) wrong") }
                        }
                    }
                }
            }
            #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0.prefix(5) })")
            let status = try String(contentsOfFile: "/proc/\(daemon)/status", encoding: .utf8)
            let hwm = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }
                .flatMap { Int($0.split(separator: " ", omittingEmptySubsequences: true)[1]) }, "VmHWM in \(status)")
            #expect(hwm < 64 << 10, "daemon peak RSS \(hwm / 1024) MiB")
            print("huge chunk mount: daemon peak RSS \(hwm / 1024) MiB")
        }
    }
}
