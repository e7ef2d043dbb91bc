import ArgumentParser
import Foundation
import ImageAssembly
import JigdoFormat
import PartSources

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what a .jigdo describes: images (name and size), templates, parts, servers with their weights.",
        discussion: """
            Needs only the .jigdo (a file or an http(s) URL): a template that cannot be had is \
            shown as missing, and what only the template knows (size, checksum, part count) is \
            left out. A .jigdo merged from several images (jigdo-file --merge) shows each; \
            --image NAME shows one. Servers are listed with the weight of each location \
            (--try-first adds, --try-last subtracts); locations are tried by descending weight.
            """)

    @OptionGroup var options: SourceOptions

    @Flag(name: .long, help: "Print JSON instead of text (sizes in bytes): pretty on a terminal, compact otherwise.")
    var json = false

    @Flag(name: .long, help: "With --json: pretty-printed even when stdout is not a terminal.")
    var pretty = false

    struct Report: Codable {
        struct Location: Codable {
            var location: String
            var weight: Int
        }
        struct Server: Codable {
            var label: String
            var values: [String]
            /// The weight of each value (same order as `values`).
            var weights: [Int]
            var resolved: [String]
            var resolvedWeights: [Int]
        }
        struct Image: Codable {
            var image: String
            var filename: String
            var size: Int64?
            var checksumKind: String?
            var imageChecksum: String?
            var imageChecksumHex: String?
            var template: String
            var templateChecksum: String
            /// Why the template could not be had (nil when it was).
            var templateMissing: String?
            var parts: Int?
            var uniqueParts: Int?
            var partBytes: Int64?
            var templateBytes: Int64?
            var shortInfo: String?
            var info: String?
        }
        // The first (or chosen) image's figures, at the top level.
        var image: String
        var size: Int64?
        var checksumKind: String?
        var imageChecksum: String?
        var imageChecksumHex: String?
        var template: String
        var templateChecksum: String
        var templateMissing: String?
        var parts: Int?
        var uniqueParts: Int?
        var partBytes: Int64?
        var templateBytes: Int64?
        var shortInfo: String?
        // The .jigdo's own.
        var jigdo: String
        var jigdoVersion: String
        var generator: String?
        /// Distinct checksums in the .jigdo's [Parts].
        var partsListed: Int
        var images: [Image]
        var servers: [Server]
        var warnings: [String]
    }

    func run() throws {
        let shared = try options.parts.makeShared()
        let whole = try options.openDescriptor(shared: shared)
        let descriptors = options.image == nil ? whole.perImage : [try options.selectImage(whole)]
        let downloader = options.parts.offline ? nil : shared.downloader
        var images: [Report.Image] = []
        var anyImage: JigdoImage?
        var distinctByTemplate: [String: Int] = [:]
        for d in descriptors {
            let section = d.image
            var r = Report.Image(
                image: RawNames.display(section.name), filename: RawNames.display(section.filename), template: RawNames.display(Passwords.masked(text: section.template.value)),
                templateChecksum: section.templateChecksums.isEmpty ? "not given in the .jigdo"
                    : section.templateChecksums.keys.sorted { $0.rawValue < $1.rawValue }.map { "\($0.rawValue) given" }.joined(separator: ", "),
                shortInfo: section.shortInfo.map(RawNames.display), info: section.info.map(RawNames.display))
            do {
                let image = try PublishedFiles.openTemplate(
                    descriptor: d, jigdoURL: options.isRemoteSource ? options.source : nil, cache: shared.cache,
                    downloader: downloader, override: options.template.map(absolutePath), templates: shared.templates)
                anyImage = anyImage ?? image
                let t = image.template
                r.image = RawNames.display(image.imageName)
                r.size = t.imageLength
                r.checksumKind = t.checksumKind.rawValue
                r.imageChecksum = t.imageChecksum.base64
                r.imageChecksumHex = t.imageChecksum.hex
                r.template = RawNames.display(Passwords.masked(text: image.templatePath))
                switch image.templateCheck {
                case .matched(let kind): r.templateChecksum = "\(kind.rawValue) matched"
                case .notGiven: r.templateChecksum = "not given in the .jigdo"
                }
                r.parts = t.parts.count
                // Images of one template share its tables: counted once.
                r.uniqueParts = distinctByTemplate[image.templatePath] ?? t.parts.distinctCount
                distinctByTemplate[image.templatePath] = r.uniqueParts
                r.partBytes = image.partBytes
                r.templateBytes = image.templateBytes
            } catch where options.template == nil && (error as? JigdoError)?.kind != .overLimit {
                // Only the .jigdo is needed; a template the user named must be right, though.
                r.templateMissing = Passwords.masked(text: "\(error)")
            }
            images.append(r)
        }
        // Servers as the parts would use them (with --map/--server/--mirror applied).
        let resolver: LocationResolver
        if let anyImage {
            resolver = try options.parts.resolver(for: anyImage, remote: options.isRemoteSource)
        } else {
            var r = LocationResolver(descriptor: whole)
            r.allowLocalFromJigdo = !options.isRemoteSource
            resolver = r
        }
        let labels = Set(whole.servers.keys).union(resolver.prepend.keys).union(resolver.replace.keys).union(resolver.append.keys).sorted()
        let servers = labels.map { label in
            let entries = resolver.serverEntries(for: label)
            let resolved = resolver.weightedResolve(JigdoLocation(value: label + ":", base: entries.first?.base ?? "/"), directory: true)
            return Report.Server(
                label: RawNames.display(label), values: entries.map { RawNames.display(Passwords.masked(text: $0.value)) }, weights: entries.map(\.weight),
                resolved: resolved.map { Passwords.masked(url: $0.location.description) }, resolvedWeights: resolved.map(\.weight))
        }
        let first = images[0]
        let report = Report(
            image: first.image, size: first.size, checksumKind: first.checksumKind, imageChecksum: first.imageChecksum,
            imageChecksumHex: first.imageChecksumHex, template: first.template, templateChecksum: first.templateChecksum,
            templateMissing: first.templateMissing, parts: first.parts, uniqueParts: first.uniqueParts,
            partBytes: first.partBytes, templateBytes: first.templateBytes, shortInfo: first.shortInfo,
            jigdo: RawNames.display(options.isRemoteSource ? Passwords.masked(url: options.source) : whole.path), jigdoVersion: whole.version,
            generator: whole.generator, partsListed: whole.parts.count, images: images, servers: servers,
            warnings: whole.warnings.map { Passwords.masked(text: $0) })
        if json {
            try printJSON(report, pretty: pretty)
            return
        }
        printLine("Jigdo:        \(report.jigdo) (format \(report.jigdoVersion)\(report.generator.map { ", \($0)" } ?? ""))")
        if images.count > 1 { printLine("Images:       \(images.count) (choose one with --image NAME)") }
        for (i, r) in images.enumerated() {
            if images.count > 1 { printLine("[\(i + 1)] \(r.image)") }
            printLine("Image:        \(r.image)")
            if let size = r.size { printLine("Size:         \(formatBytes(size)) (\(size) bytes)") }
            if let kind = r.checksumKind, let sum = r.imageChecksum, let hex = r.imageChecksumHex {
                printLine("Checksum:     \(kind) \(sum) (hex \(hex))")
            }
            if let missing = r.templateMissing {
                printLine("Template:     \(r.template) (missing: \(missing))")
            } else {
                printLine("Template:     \(r.template) (checksum \(r.templateChecksum))")
            }
            if let parts = r.parts, let unique = r.uniqueParts, let bytes = r.partBytes {
                printLine("Parts:        \(unique) distinct (\(parts) entries in the template), \(formatBytes(bytes))")
            }
            if let bytes = r.templateBytes { printLine("In template:  \(formatBytes(bytes))") }
            if let s = r.shortInfo { printLine("ShortInfo:    \(s)") }
        }
        printLine("Listed parts: \(report.partsListed) in [Parts]")
        printLine("Servers:\(servers.isEmpty ? "      (none)" : "")")
        for s in servers {
            let values = zip(s.values, s.weights).map { $1 == 0 ? $0 : "\($0) (weight \($1))" }
            printLine("  \(s.label) = \(values.joined(separator: ", "))")
            for (r, w) in zip(s.resolved, s.resolvedWeights) where !s.values.contains(r) {
                printLine("      -> \(r)\(w == 0 ? "" : " (weight \(w))")")
            }
        }
    }
}
