import ArgumentParser
import ImageAssembly
import JigdoFormat
import Logging
import PartSources

/// Where parts come from: options shared by every command that reads images (make-image,
/// verify, ls, cat, mount).
struct PartOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Look for parts in this directory tree (repeatable). Files are matched by size, then checksum.", valueName: "DIR"))
    var scan: [String] = []

    @Option(name: .long, help: ArgumentHelp("A local copy of a [Servers] label: part LABEL:path is read from DIR/path (repeatable).", valueName: "LABEL=DIR"))
    var map: [String] = []

    @Option(name: .long, help: ArgumentHelp("An older ISO 9660 image (file or block device) whose files may be parts: matched by size, then checksum, and read from the image (repeatable).", valueName: "OLD.iso"))
    var scanImage: [String] = []

    @Option(name: .long, help: ArgumentHelp("Where checksums of scanned files (and later downloaded parts) are cached (default: $XDG_CACHE_HOME/jigdofs or ~/.cache/jigdofs).", valueName: "DIR"))
    var cacheDir: String?

    @Flag(name: .long, help: "Do not use or update the checksum cache of --scan.")
    var noScanCache = false

    func validate() throws {
        for m in map {
            guard let eq = m.firstIndex(of: "="), eq != m.startIndex, m.index(after: eq) != m.endIndex else {
                throw ValidationError("--map needs LABEL=DIR, got '\(m)'")
            }
        }
    }

    /// Label -> directory from `--map`, as server locations tried before the jigdo's own.
    func mapOverrides() throws -> [String: [JigdoLocation]] {
        var out: [String: [JigdoLocation]] = [:]
        for m in map {
            let eq = m.firstIndex(of: "=")!
            let label = String(m[..<eq])
            var dir = absolutePath(String(m[m.index(after: eq)...]))
            guard isDirectory(dir) else {
                throw JigdoError(.usage, path: dir, "--map \(label)=...: not a directory")
            }
            if !dir.hasSuffix("/") { dir += "/" }
            out[label, default: []].append(JigdoLocation(value: "file:" + dir, base: dir))
        }
        return out
    }

    func resolver(for image: JigdoImage) throws -> LocationResolver {
        var resolver = LocationResolver(descriptor: image.descriptor)
        resolver.prepend = try mapOverrides()
        for label in resolver.prepend.keys where image.descriptor.servers[label] == nil {
            Logger(label: "jigdofs").warning("--map \(label)=...: the .jigdo has no server label '\(label)'")
        }
        return resolver
    }

    /// The persistent checksum cache for --scan/--scan-image, if wanted and usable.
    func checksumCache() -> ChecksumCache? {
        guard (!scan.isEmpty || !scanImage.isEmpty) && !noScanCache else { return nil }
        do {
            return try ChecksumCache(directory: cacheDir.map(absolutePath) ?? ChecksumCache.defaultDirectory())
        } catch {
            Logger(label: "jigdofs").warning("\(error); scanning without a checksum cache")
            return nil
        }
    }

    /// The image's reader over its part sources: local parts (scan, map, the jigdo's own local
    /// locations), then files inside older images. Scan progress is shown on a terminal.
    func openReader(for image: JigdoImage, checksumCache: ChecksumCache? = nil) throws -> (ImageReader, LocationResolver) {
        let resolver = try resolver(for: image)
        let bar = ProgressBar(title: "Scanning")
        var progress: LocalParts.ScanProgress?
        if bar.isActive {
            progress = { done, total in bar.update(done: done, total: total) }
        }
        let parts = try LocalParts(
            template: image.template, resolver: resolver, scanDirectories: scan.map(absolutePath),
            checksumCache: checksumCache, progress: progress)
        bar.finish()
        var source: any PartSource = parts
        if !scanImage.isEmpty {
            let imageBar = ProgressBar(title: "Scanning images")
            var imageProgress: ImageParts.ScanProgress?
            if imageBar.isActive {
                imageProgress = { done, total in imageBar.update(done: done, total: total) }
            }
            let old = try ImageParts(
                template: image.template, images: scanImage.map { absolutePath($0) },
                checksumCache: checksumCache, progress: imageProgress)
            imageBar.finish()
            source = PartSourceChain([parts, old], partCount: image.template.parts.count)
        }
        let reader = ImageReader(template: TemplateDataReader(file: image.templateFile, info: image.template), parts: source)
        return (reader, resolver)
    }
}

/// A single .jigdo SOURCE and where its parts come from.
struct SourceOptions: ParsableArguments {
    @Argument(help: "The .jigdo file (plain or gzip-compressed).")
    var source: String

    @Option(name: .long, help: ArgumentHelp("Use this .template instead of looking for it next to the .jigdo.", valueName: "FILE"))
    var template: String?

    @OptionGroup var parts: PartOptions

    func openImage() throws -> JigdoImage {
        guard fileExists(source) else {
            throw JigdoError(.io, path: source, "no such file")
        }
        return try JigdoImage.open(jigdoPath: source, templatePath: template)
    }

    /// Opens the image with its part sources.
    func openReader() throws -> (JigdoImage, ImageReader, LocationResolver) {
        let image = try openImage()
        let (reader, resolver) = try parts.openReader(for: image, checksumCache: parts.checksumCache())
        return (image, reader, resolver)
    }
}

/// Fails with the list of missing parts (and where the jigdo says to get them). Pass the
/// reader's `parts`, which include the --scan-image images.
func requireAllParts(_ image: JigdoImage, _ parts: any PartSource, _ resolver: LocationResolver) throws {
    let missing = image.template.parts.indices.filter { !parts.isLocallyAvailable($0) }
    guard !missing.isEmpty else { return }
    var seen = Set<Checksum>()
    var lines: [String] = []
    var bytes: Int64 = 0
    for i in missing {
        let part = image.template.parts[i]
        guard seen.insert(part.checksum).inserted else { continue }
        bytes += part.length
        let urls = resolver.locations(forPart: part.checksum).map(\.description)
        lines.append("  \(part.checksum.base64) \(part.length) bytes: \(urls.isEmpty ? "(no location in the .jigdo)" : urls.joined(separator: " "))")
    }
    let header = "\(seen.count) of \(Set(image.template.parts.map(\.checksum)).count) parts (\(bytes) bytes) have no local copy; use --scan DIR or --map LABEL=DIR:"
    throw CommandFailure(message: ([header] + lines).joined(separator: "\n"), code: 2)
}
