import Foundation
import ImageAssembly
import JigdoFormat
import PartSources

/// The hidden file `/.jigdofs-status`: a JSON snapshot of every image's part statistics, made
/// when the file is opened. It is not listed in the root directory (tools that list the mount
/// see only the images), but it can be opened by name. This is the server side; the client
/// (`jigdofs status`, `jigdofs prefetch MOUNTPOINT`) is `StatusClient` in the jigdofs target.
public enum StatusFile {
    public static let name = ".jigdofs-status"

    public struct Report: Codable, Sendable {
        public struct Image: Codable, Sendable {
            public var name: String
            public var jigdo: String
            public var size: Int64
            public var parts: PartStatistics
        }
        public var images: [Image]

        /// The report with every URL's password masked: the status file is readable by every
        /// user of an `allow_other` mount.
        public func maskingPasswords() -> Report {
            Report(images: images.map {
                Image(name: $0.name, jigdo: Passwords.masked(url: $0.jigdo), size: $0.size, parts: $0.parts.maskingPasswords())
            })
        }
    }

    static func snapshot(_ images: [MountedImage]) -> [UInt8] {
        let report = Report(images: images.map {
            Report.Image(name: $0.name, jigdo: $0.jigdoPath, size: $0.reader.size, parts: $0.reader.partStatistics())
        }).maskingPasswords()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(report)) ?? Data("{}".utf8)) + [10]
    }
}
