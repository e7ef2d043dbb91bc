import Foundation
import ImageAssembly
import JigdoFormat
import PartSources

/// The hidden file `/.jigdofs-status`: a JSON snapshot of every image's part statistics and
/// map (`PartMap`, bounded in size), and with several images their total, made when the file
/// is opened (from the part tables and the cache's files; never waiting for the network). It
/// is not listed in the root directory (tools that list the mount see only the images), but
/// it can be opened by name. This is the server side; the client
/// (`jigdofs status`, `jigdofs prefetch MOUNTPOINT`) is `StatusClient` in the jigdofs target.
public enum StatusFile {
    public static let name = ".jigdofs-status"

    public struct Report: Codable, Sendable {
        public struct Image: Codable, Sendable {
            public var name: String
            public var jigdo: String
            public var size: Int64
            public var parts: PartStatistics
            /// Where each byte is (`status --map`); bounded (`PartMap.maxRuns`).
            public var map: PartMap?
        }
        public var images: [Image]
        /// With more than one image (a release set): what they hold together.
        public var total: PartSetTotal?

        public init(images: [Image], total: PartSetTotal? = nil) {
            self.images = images
            self.total = total
        }

        /// The report with every URL's password masked: the status file is readable by every
        /// user of an `allow_other` mount.
        public func maskingPasswords() -> Report {
            Report(images: images.map {
                Image(name: $0.name, jigdo: Passwords.masked(url: $0.jigdo), size: $0.size,
                      parts: $0.parts.maskingPasswords(), map: $0.map)
            }, total: total)
        }
    }

    static func snapshot(_ images: [MountedImage]) -> [UInt8] {
        var members: [PartSetTotal.Member] = []
        var report = Report(images: images.map {
            let r = $0.reader.partReport()
            members.append(PartSetTotal.Member(template: $0.reader.info, states: r.states, statistics: r.statistics,
                                               map: r.map, groups: r.groups))
            return Report.Image(name: $0.name, jigdo: $0.jigdoPath, size: $0.reader.size, parts: r.statistics, map: r.map)
        })
        if members.count > 1 { report.total = PartSetTotal(members) }
        report = report.maskingPasswords()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(report)) ?? Data("{}".utf8)) + [10]
    }
}
