import Dispatch
import JigdoFormat
import Foundation
import Synchronization

/// What happens when the user interrupts a long command (SIGINT, SIGTERM, SIGHUP): the progress
/// line is cleared, the temporary output file removed, and one line says what was kept and how
/// to go on; then the process exits with 128 + the signal.
///
/// The signals are taken by dispatch sources (not a C handler), so the message may be built
/// from the command's state at that moment; the main thread keeps working until the exit.
enum Interrupt {
    private struct State {
        var installed = false
        var message: (@Sendable () -> String)?
        var tempFile: String?
    }
    private static let state = Mutex(State())
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []

    /// `message` says what was kept and how to go on ("run the same command again ...").
    static func onInterrupt(_ message: @escaping @Sendable () -> String) {
        install()
        state.withLock { $0.message = message }
    }

    static func install() {
        let first = state.withLock { s -> Bool in
            defer { s.installed = true }
            return !s.installed
        }
        guard first else { return }
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { interrupted(sig) }
            source.resume()
            sources.append(source)
        }
    }

    private static func interrupted(_ sig: Int32) -> Never {
        let (message, temp) = state.withLock { ($0.message, $0.tempFile) }
        if let temp { unlink(temp) }
        ProgressBar.clearCurrent()
        let text = message?() ?? "nothing was changed"
        writeStderr("jigdofs: interrupted; \(RawNames.printable(text))\n")
        _exit(128 + sig)
    }

    fileprivate static func setTempFile(_ path: String?) {
        if path != nil { install() }
        state.withLock { $0.tempFile = path }
    }
}

/// Removes the temporary output file when the user interrupts.
enum SignalCleanup {
    static func register(_ path: String) { Interrupt.setTempFile(path) }
    static func unregister() { Interrupt.setTempFile(nil) }
}
