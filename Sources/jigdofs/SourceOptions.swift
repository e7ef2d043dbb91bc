import ArgumentParser
import Foundation
import ImageAssembly
import JigdoFormat
import Logging
import PartSources

/// Options shared by every command that reads an image.
struct SourceOptions: ParsableArguments {
    @Argument(help: "The .jigdo file (plain or gzip-compressed), or its http(s) URL.")
    var source: String

    @Option(name: .long, help: ArgumentHelp("Look for parts in this directory tree (repeatable). Files are matched by size, then checksum.", valueName: "DIR"))
    var scan: [String] = []

    @Option(name: .long, help: ArgumentHelp("A local copy of a [Servers] label: part LABEL:path is read from DIR/path (repeatable).", valueName: "LABEL=DIR"))
    var map: [String] = []

    @Option(name: .long, help: ArgumentHelp("Use this .template instead of looking for it next to the .jigdo.", valueName: "FILE"))
    var template: String?

    @Option(name: .long, help: ArgumentHelp("Where downloaded parts and fetched .jigdo/.template files are kept (default: $XDG_CACHE_HOME/jigdofs or ~/.cache/jigdofs).", valueName: "DIR"))
    var cacheDir: String?

    @Option(name: .long, help: ArgumentHelp("Keep the part cache under this size (e.g. 20G); least recently used parts are removed first.", valueName: "SIZE"))
    var cacheSize: String?

    @Option(name: .long, help: ArgumentHelp("Download parts of [Servers] label LABEL from URL instead of the .jigdo's servers (repeatable).", valueName: "LABEL=URL"))
    var server: [String] = []

    @Option(name: .long, help: ArgumentHelp("An extra mirror for label LABEL, tried after the .jigdo's servers (repeatable).", valueName: "LABEL=URL"))
    var mirror: [String] = []

    @Option(name: .long, help: "Parallel downloads.")
    var jobs: Int = 8

    @Flag(name: .long, help: "Never download: use only local parts and the cache.")
    var offline = false

    @Option(name: .long, help: ArgumentHelp("Trust the certificate authorities in FILE for https (a private mirror).", valueName: "FILE"))
    var cacert: String?

    func validate() throws {
        for (name, values) in [("--map", map), ("--server", server), ("--mirror", mirror)] {
            for m in values {
                guard let eq = m.firstIndex(of: "="), eq != m.startIndex, m.index(after: eq) != m.endIndex else {
                    throw ValidationError("\(name) needs LABEL=\(name == "--map" ? "DIR" : "URL"), got '\(m)'")
                }
            }
        }
        if let cacheSize, parseSize(cacheSize) == nil {
            throw ValidationError("--cache-size: '\(cacheSize)' is not a size like 500M or 20G")
        }
        guard jobs >= 1 && jobs <= 256 else { throw ValidationError("--jobs must be between 1 and 256") }
    }

    var isRemoteSource: Bool { isRemoteURL(source) }

    /// Label -> URL values from `--server`/`--mirror`.
    func serverOverrides(_ values: [String]) -> [String: [JigdoLocation]] {
        var out: [String: [JigdoLocation]] = [:]
        for m in values {
            let eq = m.firstIndex(of: "=")!
            let label = String(m[..<eq])
            let value = String(m[m.index(after: eq)...])
            // A plain directory is taken as a local mirror, like --map.
            let location = uriScheme(of: value) == nil && value.hasPrefix("/") ? "file:" + value : value
            out[label, default: []].append(JigdoLocation(value: location, base: directoryOf(location)))
        }
        return out
    }

    func partCache() throws -> PartCache {
        let dir = cacheDir ?? PartCache.defaultDirectory(environment: ProcessInfo.processInfo.environment)
        return try PartCache(directory: dir, sizeLimit: cacheSize.flatMap(parseSize))
    }

    func downloadConfig() -> DownloadConfig {
        var c = DownloadConfig()
        c.jobs = jobs
        c.caFile = cacert.map(absolutePath)
        return c
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

    func openImage(cache: PartCache? = nil, downloader: HTTPDownloader? = nil) throws -> JigdoImage {
        if isRemoteSource {
            let cache = try cache ?? partCache()
            return try RemoteSource.open(url: source, cache: cache, downloader: offline ? nil : downloader, templatePath: template)
        }
        guard fileExists(source) else {
            throw JigdoError(.io, path: source, "no such file")
        }
        return try JigdoImage.open(jigdoPath: source, templatePath: template)
    }

    func resolver(for image: JigdoImage) throws -> LocationResolver {
        var resolver = LocationResolver(descriptor: image.descriptor)
        resolver.prepend = try mapOverrides()
        resolver.replace = serverOverrides(server)
        resolver.append = serverOverrides(mirror)
        resolver.allowLocalFromJigdo = !isRemoteSource
        for (option, labels) in [("--map", resolver.prepend.keys), ("--server", resolver.replace.keys), ("--mirror", resolver.append.keys)] {
            for label in labels where image.descriptor.servers[label] == nil {
                Logger(label: "jigdofs").warning("\(option) \(label)=...: the .jigdo has no server label '\(label)'")
            }
        }
        return resolver
    }

    /// Opens the image with its part sources (local, cache, downloads), showing scan progress
    /// on a terminal.
    func openSource(progressTitle: String = "Scanning") throws -> OpenedSource {
        let cache = try partCache()
        let downloader = offline ? nil : try HTTPDownloader(config: downloadConfig())
        let image = try openImage(cache: cache, downloader: downloader)
        let resolver = try resolver(for: image)
        let bar = ProgressBar(title: progressTitle)
        var progress: LocalParts.ScanProgress?
        if bar.isActive {
            progress = { done, total in bar.update(done: done, total: total) }
        }
        let local = try LocalParts(
            template: image.template, resolver: resolver, scanDirectories: scan, progress: progress)
        bar.finish()
        var storeOptions = PartStore.Options()
        storeOptions.offline = offline
        let store = PartStore(template: image.template, resolver: resolver, local: local, cache: cache,
                              downloader: downloader, options: storeOptions)
        let reader = ImageReader(template: TemplateDataReader(file: image.templateFile, info: image.template), parts: store)
        return OpenedSource(image: image, resolver: resolver, local: local, store: store, reader: reader, offline: offline)
    }
}

extension SourceOptions {
    /// The older tuple form (other commands use it): the reader reads through the `PartStore`,
    /// so missing parts are downloaded unless `--offline`.
    func openReader(progressTitle: String = "Scanning") throws -> (JigdoImage, LocalParts, ImageReader, LocationResolver) {
        let s = try openSource(progressTitle: progressTitle)
        return (s.image, s.local, s.reader, s.resolver)
    }
}

/// An image opened with all its part sources.
struct OpenedSource {
    var image: JigdoImage
    var resolver: LocationResolver
    var local: LocalParts
    var store: PartStore
    var reader: ImageReader
    var offline: Bool

    /// Before reading the whole image: fails (listing them) on parts that can be neither read
    /// nor downloaded; starts the downloads of the others, in image order.
    func prepareFullRead() throws {
        let missing = store.missingParts()
        if offline || store.downloader == nil {
            try requireParts(missing, image, resolver, why: "have no local copy and are not in the cache (downloads are off)")
        } else {
            try requireParts(missing.filter { store.urls(forPart: $0).isEmpty }, image, resolver,
                             why: "have no local copy and no download location")
            store.prefetch(missing)
        }
    }
}

/// Fails with the list of missing parts (and where the jigdo says to get them).
func requireParts(_ missing: [Int], _ image: JigdoImage, _ resolver: LocationResolver, why: String) throws {
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
    let header = "\(seen.count) of \(Set(image.template.parts.map(\.checksum)).count) parts (\(bytes) bytes) \(why); use --scan DIR or --map LABEL=DIR:"
    throw CommandFailure(message: ([header] + lines).joined(separator: "\n"), code: 2)
}

/// "123", "500K", "20G" (powers of 1024) -> bytes.
func parseSize(_ text: String) -> Int64? {
    let units: [Character: Int64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
    var t = text.uppercased()
    if t.hasSuffix("B") { t.removeLast() }
    if t.hasSuffix("I") { t.removeLast() }
    var factor: Int64 = 1
    if let last = t.last, let f = units[last] {
        factor = f
        t.removeLast()
    }
    guard let n = Double(t), n >= 0 else { return nil }
    return Int64(n * Double(factor))
}

/// Fails with the list of parts `parts` cannot read without the network (the older call form).
func requireAllParts(_ image: JigdoImage, _ parts: any PartSource, _ resolver: LocationResolver) throws {
    let missing = image.template.parts.indices.filter { image.template.parts[$0].length > 0 && !parts.isLocallyAvailable($0) }
    try requireParts(missing, image, resolver, why: "have no local copy")
}
