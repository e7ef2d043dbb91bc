import Foundation
import Synchronization

/// A one-line progress bar on stderr, shown only when stderr is a terminal.
final class ProgressBar: Sendable {
    let title: String
    let isActive: Bool
    private let state = Mutex<(lastDraw: Double, drawn: Bool, start: Double)>((0, false, 0))

    init(title: String, force: Bool = false) {
        self.title = title
        self.isActive = force || isatty(2) != 0
        let now = Date().timeIntervalSince1970
        state.withLock { $0.start = now }
    }

    func update(done: Int64, total: Int64) {
        guard isActive else { return }
        let now = Date().timeIntervalSince1970
        let line: String? = state.withLock { s in
            guard now - s.lastDraw >= 0.1 || done == total else { return nil }
            s.lastDraw = now
            s.drawn = true
            let fraction = total > 0 ? Double(done) / Double(total) : 1
            let width = 30
            let filled = Int(fraction * Double(width))
            let elapsed = max(now - s.start, 0.001)
            let rate = Double(done) / elapsed / 1_048_576
            return String(format: "\r%@ [%@%@] %5.1f%% %@ of %@, %.0f MiB/s ", title,
                          String(repeating: "#", count: filled), String(repeating: " ", count: width - filled),
                          fraction * 100, formatBytes(done), formatBytes(total), rate)
        }
        if let line { FileHandle.standardError.write(Data(line.utf8)) }
    }

    func finish() {
        guard isActive else { return }
        if state.withLock({ $0.drawn }) { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

func formatBytes(_ n: Int64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(n)
    var u = 0
    while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
    return u == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[u])
}
