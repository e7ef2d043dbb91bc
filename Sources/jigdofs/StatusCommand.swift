import ArgumentParser
import FUSEBridge
import Foundation
import ImageAssembly
import JigdoFormat
import PartSources

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what a jigdofs mount holds: parts local, cached and missing, downloads, mirror failures.",
        discussion: """
            With several images (a release set), a total follows: parts counted once however \
            many images hold them. --map draws each image as one line fitted to the terminal \
            (. template, # local, = cached, _ missing, > in flight; a cell shows the most \
            pressing state of its bytes, in that order from last to first), with the bytes and \
            parts of each state. --watch redraws until interrupted.
            """)

    @Argument(help: "The mount point of a jigdofs mount.")
    var mountpoint: String

    @Flag(name: .long, help: "Print the report as JSON (sizes in bytes): pretty on a terminal, compact otherwise.")
    var json = false

    @Flag(name: .long, help: "With --json: pretty-printed even when stdout is not a terminal.")
    var pretty = false

    @Flag(name: .long, help: "Draw each image as a line of cells: . template, # local, = cached, _ missing, > in flight; with --json, the runs (offset, length, state).")
    var map = false

    @Flag(name: .long, help: "Redraw every --interval seconds until interrupted (in place on a terminal; successive reports otherwise, with --json one line each).")
    var watch = false

    @Option(name: [.customShort("n"), .long], help: ArgumentHelp("With --watch: seconds between reports.", valueName: "SECONDS"))
    var interval: Double = 1

    @Option(name: .long, help: ArgumentHelp("With --watch: stop after N reports.", valueName: "N"))
    var count: Int?

    func validate() throws {
        guard interval.isFinite, interval > 0, interval <= 86400 else {
            throw ValidationError("--interval: '\(interval)' is not a number of seconds between 0 and 86400")
        }
        if let count, count < 1 { throw ValidationError("--count: '\(count)' is not a positive number") }
        if (count != nil || interval != 1) && !watch { throw ValidationError("--interval and --count go with --watch") }
    }

    func run() throws {
        var frame = StatusFrame(terminal: isatty(1) != 0, inPlace: watch && isatty(1) != 0)
        while true {
            let report = try readMountStatus(mountpoint)
            if json {
                // Under --watch one compact line per report (a stream a program can read).
                try printJSON(map ? report : report.withoutMaps, pretty: pretty && !watch, compact: watch)
                frame.drawn += 1
            } else {
                let width = map ? terminalColumns(fd: 1) : Int.max
                frame.draw(map ? StatusText.mapLines(report, columns: width) : StatusText.lines(report), columns: width)
            }
            guard watch else { return }
            if let count, frame.drawn >= count { return }
            usleep(useconds_t(interval * 1_000_000))
        }
    }
}

extension StatusFile.Report {
    /// The report as `status --json` prints it without --map.
    var withoutMaps: StatusFile.Report {
        var r = self
        for i in r.images.indices { r.images[i].map = nil }
        return r
    }
}

/// One report on stdout; under --watch on a terminal, each one over the last (cursor up,
/// each line cleared to its end, what is left below cleared), as watch(1) redraws.
struct StatusFrame {
    /// Redraw over the last report (--watch on a terminal).
    let inPlace: Bool
    /// Reports drawn so far.
    var drawn = 0
    /// Lines of the last report (to go back up over).
    private var lines = 0
    private let color: Bool

    init(terminal: Bool, inPlace: Bool) {
        self.inPlace = inPlace
        let env = ProcessInfo.processInfo.environment
        // no-color.org: a NO_COLOR that is set and not empty turns colour off.
        color = terminal && (env["NO_COLOR"] ?? "").isEmpty && env["TERM"] != "dumb"
    }

    mutating func draw(_ text: [StatusText.Line], columns: Int) {
        var out = ""
        if inPlace && drawn > 0 && lines > 0 { out += "\u{1B}[\(lines)A\r" }
        if !inPlace && drawn > 0 { out += "\n" }
        for line in text {
            // Names come from .jigdo files: control characters escaped (RawNames.printable).
            var plain = RawNames.printable(line.text)
            // Redrawn in place, a line must never wrap (the cursor goes back up by lines).
            if inPlace && plain.count >= columns { plain = String(plain.prefix(max(columns - 1, 1))) }
            out += (color && line.isMap ? StatusText.colored(plain) : plain) + (inPlace ? "\u{1B}[K" : "") + "\n"
        }
        if inPlace { out += "\u{1B}[J" }
        FileHandle.standardOutput.write(Data(out.utf8))
        lines = text.count
        drawn += 1
    }
}

/// The text of `jigdofs status` (and --map).
enum StatusText {
    struct Line {
        var text: String
        /// The cells line of --map (colored on a terminal).
        var isMap = false
        init(_ text: String, isMap: Bool = false) {
            self.text = text
            self.isMap = isMap
        }
    }

    static func symbol(_ state: PartMap.State) -> Character {
        switch state {
        case .template: "."
        case .local: "#"
        case .cached: "="
        case .missing: "_"
        case .inFlight: ">"
        }
    }

    static func label(_ state: PartMap.State) -> String {
        state == .inFlight ? "in flight" : state.rawValue
    }

    /// The report without --map: per image its parts, downloads and mirrors; then the total.
    static func lines(_ report: StatusFile.Report) -> [Line] {
        var out: [Line] = []
        for image in report.images {
            let p = image.parts
            out.append(Line("\(image.name) (\(formatBytes(image.size)), from \(image.jigdo))"))
            out.append(Line("  parts:       \(p.partsTotal) total, \(p.partsLocal) local, \(p.partsCached) cached, \(p.partsMissing) missing"))
            out.append(Line("  downloaded:  \(formatBytes(p.bytesDownloaded)), \(p.transfersInFlight) transfers in flight"))
            for (location, limit) in p.transfersAllowedByLocation.sorted(by: { $0.key < $1.key }) {
                let speed = p.speedByLocation[location].map { ", \(formatBytes($0))/s" } ?? ""
                out.append(Line("  mirror:      \(location): \(limit) transfers at once\(speed)"))
            }
            if !p.failuresByMirror.isEmpty {
                out.append(Line("  failures:    " + p.failuresByMirror.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")))
            }
        }
        if let t = report.total {
            let p = t.parts
            out.append(Line("total (\(countText(t.images, "image")), \(formatBytes(t.size)))"))
            out.append(Line("  parts:       \(p.partsTotal) total (\(t.partsShared) shared), \(p.partsLocal) local, \(p.partsCached) cached, \(p.partsMissing) missing"))
            out.append(Line("  downloaded:  \(formatBytes(p.bytesDownloaded)), \(p.transfersInFlight) transfers in flight"))
        }
        return out
    }

    /// --map: per image a line of cells fitted to `columns`, and each state's bytes and parts;
    /// then the total and the legend.
    static func mapLines(_ report: StatusFile.Report, columns: Int) -> [Line] {
        var out: [Line] = []
        // "  [" + cells + "]", one column left free (no wrap at the last column).
        let cells = max(columns - 5, 10)
        for image in report.images {
            out.append(Line("\(image.name) (\(formatBytes(image.size)), from \(image.jigdo))"))
            guard let map = image.map else {
                out.append(Line("  (no map: the mount's jigdofs is older)"))
                continue
            }
            let line = String(PartMap.cells(map.runs, size: image.size, count: cells).map(symbol))
            out.append(Line("  [" + line + "]", isMap: true))
            out += stateLines(bytes: map.bytes, parts: map.parts)
            out.append(Line("  downloaded:  \(formatBytes(image.parts.bytesDownloaded)), \(image.parts.transfersInFlight) transfers in flight"))
        }
        if let t = report.total {
            out.append(Line("total (\(countText(t.images, "image")), \(formatBytes(t.size)), \(countText(t.parts.partsTotal, "part")), \(t.partsShared) shared)"))
            out += stateLines(bytes: t.bytes, parts: t.partsByState)
            out.append(Line("  downloaded:  \(formatBytes(t.parts.bytesDownloaded)), \(t.parts.transfersInFlight) transfers in flight"))
        }
        out.append(Line("a cell shows the first of > in flight, _ missing, = cached, # local, . template in its bytes"))
        return out
    }

    /// One line per state: its symbol, name, bytes and (for parts) distinct parts.
    static func stateLines(bytes: [String: Int64], parts: [String: Int]) -> [Line] {
        PartMap.State.allCases.map { s in
            let name = label(s).padding(toLength: 10, withPad: " ", startingAt: 0)
            let amount = formatBytes(bytes[s.rawValue] ?? 0)
            let padded = String(repeating: " ", count: max(0, 10 - amount.count)) + amount
            let count = s == .template ? "" : "  " + countText(parts[s.rawValue] ?? 0, "part")
            return Line("  \(symbol(s)) \(name)\(padded)\(count)")
        }
    }

    /// ANSI colors for the cells (on a terminal, unless NO_COLOR is set).
    static func colored(_ text: String) -> String {
        var out = ""
        var current: PartMap.State?
        for ch in text {
            let state = PartMap.State.allCases.first { symbol($0) == ch }
            if state != current {
                if current != nil { out += "\u{1B}[0m" }
                if let state {
                    let code = switch state {
                    case .template: "2"
                    case .local: "32"
                    case .cached: "36"
                    case .missing: "31"
                    case .inFlight: "1;33"
                    }
                    out += "\u{1B}[\(code)m"
                }
                current = state
            }
            out.append(ch)
        }
        if current != nil { out += "\u{1B}[0m" }
        return out
    }
}

/// The status report of the jigdofs mount at `path`, or the error that says what `path` is
/// instead: a dead mount (and how to clear it), no such directory, not a jigdofs mount.
func readMountStatus(_ path: String) throws -> StatusFile.Report {
    try checkMountPointPath(path)
    guard let (_, report) = try StatusClient.read(mountpoint: path) else {
        throw JigdoError(.usage, path: path, "not a jigdofs mount (no \(StatusFile.name) there)")
    }
    return report.maskingPasswords()
}

/// Unmounts a jigdofs mount (`fusermount3 -u`, else umount(8)); a dead mount too.
struct Umount: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "umount",
        abstract: "Unmount a jigdofs mount (what `fusermount3 -u MOUNTPOINT` does); also a dead one.",
        aliases: ["unmount"])

    @Argument(help: "The mount point of a jigdofs mount.")
    var mountpoint: String

    func run() throws {
        let abs = normalizePath(absolutePath(mountpoint))
        var st = stat()
        let dead = stat(mountpoint, &st) != 0 && errno == ENOTCONN
        if !dead {
            guard stat(mountpoint, &st) == 0 else { throw CommandFailure(message: "\(mountpoint): no such directory", code: 1) }
            let path = canonicalPath(mountpoint)
            guard let entry = mountTable().last(where: { $0.mountpoint == path }) else {
                throw CommandFailure(message: "\(mountpoint): not mounted", code: 1)
            }
            guard entry.fstype == "fuse.jigdofs" else {
                throw CommandFailure(message: "\(mountpoint): not a jigdofs mount (it is \(entry.fstype)); use umount(8)", code: 1)
            }
        }
        for tool in [["/usr/bin/fusermount3", "-u", abs], ["/bin/umount", abs]] where FileManager.default.isExecutableFile(atPath: tool[0]) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: tool[0])
            p.arguments = Array(tool.dropFirst())
            p.standardInput = FileHandle.nullDevice
            let errPipe = Pipe()
            p.standardError = errPipe
            try p.run()
            let errText = String(decoding: errPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            if p.terminationStatus == 0 { return }
            if errText.contains("busy") {
                throw CommandFailure(message: "\(mountpoint): busy (a process has a file open in it, or its working directory there); close it and try again", code: 1)
            }
        }
        throw CommandFailure(message: "\(mountpoint): cannot unmount (fusermount3 -u and umount failed)", code: 1)
    }
}
