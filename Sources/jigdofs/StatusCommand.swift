import ArgumentParser
import FUSEBridge
import Foundation
import ImageAssembly
import JigdoFormat

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what a jigdofs mount holds: parts local, cached and missing, downloads, mirror failures.")

    @Argument(help: "The mount point of a jigdofs mount.")
    var mountpoint: String

    @Flag(name: .long, help: "Print the report as JSON (sizes in bytes): pretty on a terminal, compact otherwise.")
    var json = false

    @Flag(name: .long, help: "With --json: pretty-printed even when stdout is not a terminal.")
    var pretty = false

    func run() throws {
        let report = try readMountStatus(mountpoint)
        if json {
            try printJSON(report, pretty: pretty)
            return
        }
        for image in report.images {
            let p = image.parts
            printLine("\(image.name) (\(formatBytes(image.size)), from \(image.jigdo))")
            printLine("  parts:       \(p.partsTotal) total, \(p.partsLocal) local, \(p.partsCached) cached, \(p.partsMissing) missing")
            printLine("  downloaded:  \(formatBytes(p.bytesDownloaded)), \(p.transfersInFlight) transfers in flight")
            for (location, limit) in p.transfersAllowedByLocation.sorted(by: { $0.key < $1.key }) {
                let speed = p.speedByLocation[location].map { ", \(formatBytes($0))/s" } ?? ""
                printLine("  mirror:      \(location): \(limit) transfers at once\(speed)")
            }
            if !p.failuresByMirror.isEmpty {
                printLine("  failures:    " + p.failuresByMirror.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", "))
            }
        }
    }
}

/// The status report of the jigdofs mount at `path`, or the error that says what `path` is
/// instead: a dead mount (and how to clear it), no such directory, not a jigdofs mount.
func readMountStatus(_ path: String) throws -> StatusFile.Report {
    try checkMountPointPath(path)
    guard let (_, report) = try StatusClient.read(mountpoint: path) else {
        throw JigdoError(.usage, path: path, "not a jigdofs mount (no \(StatusFile.name) there)")
    }
    return report
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
