#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
import JigdoFormat

/// `jigdofs copy`: the byte copy behind jigdo-write-usb (the write and the read-back), with the
/// same progress display as every other command. Not shown in --help.
struct Copy: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy bytes from INPUT to OUTPUT (a device) with progress; print their SHA-256 with --sha256.",
        discussion: "Used by jigdo-write-usb. Without OUTPUT the input is only read (a read-back check). OUTPUT is never created.",
        shouldDisplay: false)

    @Argument(help: "The file or device to read.")
    var input: String

    @Argument(help: "The file or device to write (must exist).")
    var output: String?

    @Option(name: .long, help: "Read only this many bytes.")
    var count: Int64?

    @Option(name: .long, help: "The progress line's title.")
    var title = "Copying"

    @Flag(name: .long, help: "Print the SHA-256 (hex) of the bytes on standard output.")
    var sha256 = false

    @Option(name: .long, help: "What the interrupt line says was kept.")
    var interruptMessage: String?

    @Option(name: .long, help: ArgumentHelp("auto, bar, plain or none.", valueName: "MODE"))
    var progress: ProgressMode = .auto

    func run() throws {
        ProgressSettings.mode = progress
        let inFD = Syscalls.open(input, O_RDONLY | O_CLOEXEC)
        guard inFD >= 0 else { throw JigdoError(.io, path: input, "cannot open", errno: SystemErrno(errno)) }
        defer { Syscalls.close(inFD) }
        var outFD: Int32 = -1
        if let output {
            outFD = Syscalls.open(output, O_WRONLY | O_CLOEXEC)
            guard outFD >= 0 else { throw JigdoError(.io, path: output, "cannot open", errno: SystemErrno(errno)) }
        }
        defer { if outFD >= 0 { Syscalls.close(outFD) } }
        let end = lseek(inFD, 0, SEEK_END)
        _ = lseek(inFD, 0, SEEK_SET)
        let total = count ?? Int64(max(end, 0))
        if let message = interruptMessage { Interrupt.onInterrupt { message } }
        let bar = ProgressBar(title: title)
        var hasher = ChecksumHasher(.sha256)
        let chunk = 4 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate() }
        var done: Int64 = 0
        bar.update(done: 0, total: total)
        while done < total {
            let want = Int(min(Int64(chunk), total - done))
            let n = Syscalls.pread(inFD, buffer.baseAddress!, want, off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw JigdoError(.io, path: input, "read failed at byte \(done)", errno: SystemErrno(errno))
            }
            if n == 0 { throw CommandFailure(message: "\(input): ends after \(formatBytes(done)), \(formatBytes(total)) expected", code: 1) }
            let bytes = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
            if sha256 { hasher.update(bytes) }
            if outFD >= 0 {
                var written = 0
                while written < n {
                    let w = Syscalls.pwrite(outFD, bytes.baseAddress! + written, n - written, off_t(done) + off_t(written))
                    if w < 0 {
                        if errno == EINTR { continue }
                        throw JigdoError(.io, path: output!, "write failed at byte \(done + Int64(written))", errno: SystemErrno(errno))
                    }
                    written += w
                }
            }
            done += Int64(n)
            bar.update(done: done, total: total)
        }
        if outFD >= 0, Syscalls.fsync(outFD) != 0 {
            throw JigdoError(.io, path: output!, "fsync failed", errno: SystemErrno(errno))
        }
        bar.finish()
        if sha256 { print(hasher.finalize().hex) }
    }
}
