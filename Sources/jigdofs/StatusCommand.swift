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

    @Flag(name: .long, help: "Print the JSON the mount reports.")
    var json = false

    func run() throws {
        guard let (data, report) = try StatusFile.read(mountpoint: mountpoint) else {
            throw JigdoError(.usage, path: mountpoint, "not a jigdofs mount (no \(StatusFile.name) there)")
        }
        if json {
            FileHandle.standardOutput.write(data)
            return
        }
        for image in report.images {
            let p = image.parts
            print("\(image.name) (\(formatBytes(image.size)), from \(image.jigdo))")
            print("  parts:       \(p.partsTotal) total, \(p.partsLocal) local, \(p.partsCached) cached, \(p.partsMissing) missing")
            print("  downloaded:  \(formatBytes(p.bytesDownloaded)), \(p.transfersInFlight) transfers in flight")
            if !p.failuresByMirror.isEmpty {
                print("  failures:    " + p.failuresByMirror.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", "))
            }
        }
    }
}
