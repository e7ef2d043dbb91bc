import ArgumentParser
import Foundation
import JigdoFormat
import Synchronization

/// How progress is shown (`--progress`).
enum ProgressMode: String, ExpressibleByArgument, CaseIterable, Sendable {
    /// A bar redrawn in place when stderr is a terminal; nothing otherwise (plain lines with -v).
    case auto
    /// The bar, even when stderr is not a terminal.
    case bar
    /// One plain line every few seconds (for logs).
    case plain
    case none
}

/// Process-wide progress settings: the `--progress` value, and whether -v asked for plain lines
/// when stderr is not a terminal.
enum ProgressSettings {
    private static let state = Mutex<(mode: ProgressMode, verbose: Bool)>((.auto, false))
    static var mode: ProgressMode {
        get { state.withLock { $0.mode } }
        set { state.withLock { $0.mode = newValue } }
    }
    static var verbose: Bool {
        get { state.withLock { $0.verbose } }
        set { state.withLock { $0.verbose = newValue } }
    }
}

/// One progress line on stderr, shared by make-image, verify, scanning, prefetch and
/// jigdo-write-usb (through `jigdofs copy`).
///
/// As a bar (stderr a terminal): redrawn in place at most 5 times a second, fitted to the
/// terminal's width at each redraw (a line never wraps) and cleared to the end of the line, so a
/// shorter line leaves nothing of a longer one behind. Two columns stay free, for the "^C" the
/// terminal echoes when the user interrupts. Shows percent, amounts, the rate over the
/// last few seconds (one decimal, IEC units), the time left and, when given, parts done/total.
/// As plain lines: the same figures, one line every 5 seconds and one at the end.
final class ProgressBar: Sendable {
    enum Style: Sendable { case bar, plain, off }

    let title: String
    let style: Style
    var isActive: Bool { style != .off }

    private struct State {
        var lastDraw: Double = -1
        var drawn = false
        /// `done` of the last redraw (the end need not redraw the same figures).
        var drawnDone: Int64 = -1
        var finished = false
        var start: Double
        /// (time, done) samples of the last seconds, for the rate.
        var samples: [(Double, Int64)] = []
        var done: Int64 = 0
        var total: Int64 = 0
        var parts: (done: Int, total: Int)?
    }
    private let state: Mutex<State>

    /// Bars on screen now (one at a time); an interrupt clears it before its message.
    private static let current = Mutex<ProgressBar?>(nil)

    init(title: String, mode: ProgressMode = ProgressSettings.mode, isTerminal: Bool = isatty(2) != 0) {
        self.title = RawNames.printable(title)
        switch mode {
        case .auto: style = isTerminal ? .bar : (ProgressSettings.verbose ? .plain : .off)
        case .bar: style = .bar
        case .plain: style = .plain
        case .none: style = .off
        }
        state = Mutex(State(start: monotonicSeconds()))
    }

    /// `parts`: parts done and total, when the work is counted in parts too.
    func update(done: Int64, total: Int64, parts: (done: Int, total: Int)? = nil) {
        guard isActive else { return }
        let now = monotonicSeconds()
        let line: String? = state.withLock { s in
            guard !s.finished else { return nil }
            s.done = done
            s.total = total
            if let parts { s.parts = parts }
            s.samples.append((now, done))
            if s.samples.count > 64 || (s.samples.count > 2 && now - s.samples[0].0 > 5) { s.samples.removeFirst() }
            let interval = style == .bar ? 0.2 : 5.0
            let complete = total > 0 && done >= total
            guard s.lastDraw < 0 || now - s.lastDraw >= interval || (complete && style == .bar) else { return nil }
            s.lastDraw = now
            s.drawn = true
            s.drawnDone = done
            return render(s, now: now)
        }
        if let line { emit(line) }
    }

    /// Redraws with the last figures (e.g. from a timer while nothing arrives).
    func tick() {
        let last = state.withLock { ($0.done, $0.total, $0.parts) }
        update(done: last.0, total: last.1, parts: last.2)
    }

    /// Ends the display: the bar's final state stays on its line; plain mode prints a last line.
    func finish() {
        guard isActive else { return }
        let now = monotonicSeconds()
        let text: String? = state.withLock { s in
            guard !s.finished else { return nil }
            s.finished = true
            // Plain mode's last line, unless there was nothing to do (a scan of no directory).
            guard s.drawn || (style == .plain && (s.total > 0 || s.done > 0)) else { return nil }
            if style == .bar { return s.drawnDone == s.done ? "\n" : render(s, now: now) + "\n" }
            return render(s, now: now)
        }
        if let text { emit(text) }
        Self.current.withLock { if $0 === self { $0 = nil } }
    }

    /// Erases the bar's line (an interrupt message takes its place).
    static func clearCurrent() {
        guard let bar = current.withLock({ $0 }), bar.style == .bar else { return }
        let drawn = bar.state.withLock { s in
            defer { s.finished = true }
            return s.drawn && !s.finished
        }
        if drawn { writeStderr("\r\u{1B}[K") }
    }

    /// Clears a bar line in progress so that a message gets a line of its own; the bar is
    /// drawn again at its next update.
    static func makeRoomForMessage() {
        guard let bar = current.withLock({ $0 }), bar.style == .bar else { return }
        let drawn = bar.state.withLock { s in
            defer { s.lastDraw = -1 }
            return s.drawn && !s.finished
        }
        if drawn { writeStderr("\r\u{1B}[K") }
    }

    private func emit(_ line: String) {
        Self.current.withLock { $0 = self }
        writeStderr(line)
    }

    private func render(_ s: State, now: Double) -> String {
        let fraction = s.total > 0 ? min(1, Double(s.done) / Double(s.total)) : (s.done > 0 ? 1 : 0)
        // The rate of the last seconds; the average since the start while that is nothing
        // (downloads are counted when a part completes).
        var rate: Double = 0
        if let first = s.samples.first, now - first.0 > 0.05 {
            rate = Double(s.done - first.1) / (now - first.0)
        }
        if rate <= 0 && now - s.start > 0.05 {
            rate = Double(s.done) / (now - s.start)
        }
        let percent = String(format: "%5.1f%%", fraction * 100)
        let amounts = "\(formatBytes(s.done))/\(formatBytes(s.total))"
        // No rate before there is one to show (the first moments, nothing arrived yet).
        let rateText: String? = rate > 0 ? formatRate(rate) : nil
        var eta: String?
        if s.total > 0 && s.done >= s.total {
            eta = "done in " + formatDuration(now - s.start)
        } else if rate > 0 && s.total > s.done {
            eta = "ETA " + formatDuration(Double(s.total - s.done) / rate)
        }
        let partsText = s.parts.map { "\($0.done)/\($0.total) parts" }
        if style == .plain {
            return ([title + ":", percent.trimmingCharacters(in: .whitespaces), "\(formatBytes(s.done)) of \(formatBytes(s.total))"] + [rateText, eta, partsText].compactMap { $0 })
                .joined(separator: ", ").replacingOccurrences(of: ":,", with: ":") + "\n"
        }
        // Shown in this order; on a narrow terminal the amounts go first, then parts, the rate.
        let fields: [(text: String?, priority: Int)] = [(amounts, 0), (rateText, 2), (eta, 3), (partsText, 1)]
        return "\r" + fit(fraction: fraction, percent: percent, fields: fields, width: terminalColumns() - 3) + "\u{1B}[K"
    }

    /// The bar line for `width` columns: title, percent and as many of `fields` as fit (the
    /// lowest priority is left out first), then a bar in the room left (if at least 12 columns).
    func fit(fraction: Double, percent: String, fields: [(text: String?, priority: Int)], width: Int) -> String {
        let width = max(width, 10)
        var kept = fields.filter { $0.text != nil }
        func line(_ f: [(text: String?, priority: Int)]) -> [String] { [title, percent] + f.map { $0.text! } }
        func length(_ p: [String]) -> Int { p.reduce(0) { $0 + $1.count } + max(p.count - 1, 0) }
        while !kept.isEmpty && length(line(kept)) > width {
            let lowest = kept.indices.min { kept[$0].priority < kept[$1].priority }!
            kept.remove(at: lowest)
        }
        var parts = line(kept)
        var line = parts.joined(separator: " ")
        let room = width - line.count - 1
        if room >= 12 {
            let inner = min(room, 40) - 2
            let filled = min(inner, Int(fraction * Double(inner)))
            let bar = "[" + String(repeating: "#", count: filled) + String(repeating: "-", count: inner - filled) + "]"
            parts.insert(bar, at: 2)
            line = parts.joined(separator: " ")
        }
        if line.count > width { line = String(line.prefix(width)) }
        return line
    }
}

/// Columns of the terminal on `fd` (default stderr; $COLUMNS, else 80, when it cannot be asked).
func terminalColumns(fd: Int32 = 2) -> Int {
    var size = winsize()
    if ioctl(fd, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
    if let c = ProcessInfo.processInfo.environment["COLUMNS"].flatMap(Int.init), c > 0 { return c }
    return 80
}

func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

func writeStderr(_ text: String) {
    // Nothing to do when stderr is gone.
    _ = Array(text.utf8).withUnsafeBytes { writeFully(2, $0) }
}

/// Amounts in text: IEC units with one decimal ("39.7 MiB"), plain bytes below 1 KiB.
func formatBytes(_ n: Int64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    var v = Double(n)
    var u = 0
    while abs(v) >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
    return u == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[u])
}

/// A rate with one decimal: "312.5 KiB/s", "3.2 MiB/s".
func formatRate(_ bytesPerSecond: Double) -> String {
    guard bytesPerSecond.isFinite, bytesPerSecond > 0 else { return "0.0 B/s" }
    let units = ["B/s", "KiB/s", "MiB/s", "GiB/s"]
    var v = bytesPerSecond
    var u = 0
    while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
    return String(format: "%.1f %@", v, units[u])
}

/// "0:07", "12:34", "1:02:03".
func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite else { return "?" }
    let s = Int(min(max(seconds, 0), 359_999).rounded())
    return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
}

/// "182 parts", "1 part".
func countText(_ n: Int, _ noun: String) -> String {
    "\(n) \(noun)\(n == 1 ? "" : "s")"
}

/// Distinct parts of an image that lie wholly before an offset: the "parts done" of a run that
/// reads the image from the start (make-image, verify).
struct PartsBeforeOffset: Sendable {
    /// End offsets of each distinct part's first occurrence, ascending.
    private let ends: [Int64]
    var total: Int { ends.count }

    init(_ template: TemplateInfo) {
        var seen = Set<Checksum>()
        var ends: [Int64] = []
        for entry in template.layout {
            if case .part(let i) = entry.source, template.parts[i].length > 0, seen.insert(template.parts[i].checksum).inserted {
                ends.append(entry.imageOffset + entry.length)
            }
        }
        self.ends = ends.sorted()
    }

    func count(before offset: Int64) -> Int {
        var lo = 0, hi = ends.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ends[mid] <= offset { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    func progress(_ done: Int64) -> (done: Int, total: Int) { (count(before: done), total) }
}
