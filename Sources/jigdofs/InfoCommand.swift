import ArgumentParser
import Foundation
import ImageAssembly
import JigdoFormat

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what a .jigdo describes: image name and size, template, parts, servers.")

    @Argument(help: "The .jigdo file (plain or gzip-compressed).")
    var source: String

    @Option(name: .long, help: ArgumentHelp("Use this .template instead of looking for it next to the .jigdo.", valueName: "FILE"))
    var template: String?

    @Flag(name: .long, help: "Print JSON instead of text (sizes in bytes): pretty on a terminal, compact otherwise.")
    var json = false

    @Flag(name: .long, help: "With --json: pretty-printed even when stdout is not a terminal.")
    var pretty = false

    struct Report: Codable {
        struct Server: Codable {
            var label: String
            var values: [String]
            var resolved: [String]
        }
        var image: String
        var size: Int64
        var checksumKind: String
        var imageChecksum: String
        var imageChecksumHex: String
        var jigdo: String
        var jigdoVersion: String
        var generator: String?
        var template: String
        var templateChecksum: String
        var parts: Int
        var uniqueParts: Int
        var partBytes: Int64
        var templateBytes: Int64
        var shortInfo: String?
        var servers: [Server]
    }

    func run() throws {
        guard fileExists(source) else { throw JigdoError(.io, path: source, "no such file") }
        try refuseNonJigdo(source)
        let image = try JigdoImage.open(jigdoPath: source, templatePath: template)
        let resolver = LocationResolver(descriptor: image.descriptor)
        let servers = image.descriptor.servers.keys.sorted().map { label in
            Report.Server(
                label: label,
                values: image.descriptor.servers[label]!.map(\.value),
                resolved: resolver.resolve(JigdoLocation(value: label + ":", base: image.descriptor.servers[label]![0].base)).map(\.description))
        }
        let checkText: String
        switch image.templateCheck {
        case .matched(let kind): checkText = "\(kind.rawValue) matched"
        case .notGiven: checkText = "not given in the .jigdo"
        }
        let t = image.template
        let report = Report(
            image: image.imageName, size: t.imageLength, checksumKind: t.checksumKind.rawValue,
            imageChecksum: t.imageChecksum.base64, imageChecksumHex: t.imageChecksum.hex,
            jigdo: image.descriptor.path, jigdoVersion: image.descriptor.version, generator: image.descriptor.generator,
            template: image.templatePath, templateChecksum: checkText,
            parts: t.parts.count, uniqueParts: Set(t.parts.filter { $0.length > 0 }.map(\.checksum)).count,
            partBytes: image.partBytes, templateBytes: image.templateBytes,
            shortInfo: image.descriptor.image.shortInfo, servers: servers)
        if json {
            try printJSON(report, pretty: pretty)
            return
        }
        print("Image:        \(report.image)")
        print("Size:         \(formatBytes(report.size)) (\(report.size) bytes)")
        print("Checksum:     \(report.checksumKind) \(report.imageChecksum) (hex \(report.imageChecksumHex))")
        print("Jigdo:        \(report.jigdo) (format \(report.jigdoVersion)\(report.generator.map { ", \($0)" } ?? ""))")
        print("Template:     \(report.template) (checksum \(checkText))")
        print("Parts:        \(report.uniqueParts) distinct (\(report.parts) entries in the template), \(formatBytes(report.partBytes))")
        print("In template:  \(formatBytes(report.templateBytes))")
        if let s = report.shortInfo { print("ShortInfo:    \(s)") }
        print("Servers:\(servers.isEmpty ? "      (none)" : "")")
        for s in servers {
            print("  \(s.label) = \(s.values.joined(separator: ", "))")
            for r in s.resolved where !s.values.contains(r) { print("      -> \(r)") }
        }
    }
}
