import Foundation
import ImageAssembly
import JigdoFormat

/// The hidden file `/.jigdofs-status`: a JSON snapshot of every image's part statistics, made
/// when the file is opened. It is not listed in the root directory (tools that list the mount
/// see only the images), but it can be opened by name; `jigdofs status MOUNTPOINT` reads it.
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
    }

    /// Reads the status of the mount at `mountpoint`; nil if it is not a jigdofs mount. Read to
    /// its end, whatever size stat(2) says.
    public static func read(mountpoint: String) throws -> (data: Data, report: Report)? {
        let path = (mountpoint.hasSuffix("/") ? mountpoint : mountpoint + "/") + name
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        let data = try handle.readToEnd() ?? Data()
        guard !data.isEmpty else { return nil }
        do {
            return (data, try JSONDecoder().decode(Report.self, from: data))
        } catch {
            throw JigdoError(.badFormat, path: path, "unreadable status: \(error)", underlying: error)
        }
    }

    static func snapshot(_ images: [MountedImage]) -> [UInt8] {
        let report = Report(images: images.map {
            Report.Image(name: $0.name, jigdo: $0.jigdoPath, size: $0.reader.size, parts: $0.reader.partStatistics())
        })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(report)) ?? Data("{}".utf8)) + [10]
    }
}
