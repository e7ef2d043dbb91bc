import ArgumentParser
import Foundation
import ImageAssembly
import JigdoFormat
import Logging
import PartSources

/// Where parts come from: options shared by every command that reads images (make-image,
/// verify, prefetch, ls, cat, mount).
struct PartOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Look for parts in this directory tree (repeatable). Files are matched by size, then checksum.", valueName: "DIR"))
    var scan: [String] = []

    @Option(name: .long, help: ArgumentHelp("A local copy of a [Servers] label: part LABEL:path is read from DIR/path (repeatable).", valueName: "LABEL=DIR"))
    var map: [String] = []

    @Option(name: .long, help: ArgumentHelp("An older ISO 9660 image (file or block device) whose files may be parts: matched by size, then checksum, and read from the image (repeatable).", valueName: "OLD.iso"))
    var scanImage: [String] = []

    @Option(name: .long, help: ArgumentHelp("The .jigdo of an older release: parts both releases share are read from where that release has them (its own local locations, --map, the cache) (repeatable).", valueName: "OLD.jigdo"))
    var scanJigdo: [String] = []

    @Option(name: .long, help: ArgumentHelp("Download parts of [Servers] label LABEL from URL instead of the .jigdo's servers (repeatable).", valueName: "LABEL=URL"))
    var server: [String] = []

    @Option(name: .long, help: ArgumentHelp("An extra mirror for label LABEL, tried after the .jigdo's servers (repeatable).", valueName: "LABEL=URL"))
    var mirror: [String] = []

    @Option(name: .long, help: ArgumentHelp("Where downloaded parts, fetched .jigdo/.template files and checksums of scanned files are kept (default: $XDG_CACHE_HOME/jigdofs or ~/.cache/jigdofs).", valueName: "DIR"))
    var cacheDir: String?

    @Option(name: .long, help: ArgumentHelp("Keep the part cache under this size (e.g. 20G); least recently used parts are removed first.", valueName: "SIZE"),
            transform: OptionValues.size("--cache-size"))
    var cacheSize: Int64?

    @Flag(name: .long, help: "Do not use or update the checksum cache of --scan.")
    var noScanCache = false

    @Option(name: .long, help: ArgumentHelp("Parallel downloads (1 to 256).", valueName: "N"), transform: OptionValues.integer("--jobs", in: 1...256))
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
    }

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

    /// `remote`: the .jigdo came from a server, so its own local locations are not honoured.
    func resolver(for image: JigdoImage, remote: Bool) throws -> LocationResolver {
        var resolver = LocationResolver(descriptor: image.descriptor)
        resolver.prepend = try mapOverrides()
        resolver.replace = serverOverrides(server)
        resolver.append = serverOverrides(mirror)
        resolver.allowLocalFromJigdo = !remote
        for (option, labels) in [("--map", resolver.prepend.keys), ("--server", resolver.replace.keys), ("--mirror", resolver.append.keys)] {
            for label in labels where image.descriptor.servers[label] == nil {
                Logger(label: "jigdofs").warning("\(option) \(label)=...: the .jigdo has no server label '\(label)'")
            }
        }
        return resolver
    }

    var cacheDirectory: String {
        cacheDir.map(absolutePath) ?? PartCache.defaultDirectory(environment: ProcessInfo.processInfo.environment)
    }

    func partCache() throws -> PartCache {
        try PartCache(directory: cacheDirectory, sizeLimit: cacheSize)
    }

    func downloadConfig() -> DownloadConfig {
        var c = DownloadConfig()
        c.jobs = jobs
        c.caFile = cacert.map(absolutePath)
        return c
    }

    /// The persistent checksum cache for --scan/--scan-image, if wanted and usable.
    func checksumCache() -> ChecksumCache? {
        guard (!scan.isEmpty || !scanImage.isEmpty) && !noScanCache else { return nil }
        do {
            return try ChecksumCache(directory: cacheDirectory)
        } catch {
            Logger(label: "jigdofs").warning("\(error); scanning without a checksum cache")
            return nil
        }
    }

    /// What a process shares between the images it opens: one part cache, one downloader
    /// (one connection pool, one --jobs limit), one checksum cache.
    struct Shared {
        var cache: PartCache
        var downloader: HTTPDownloader?
        var checksumCache: ChecksumCache?
    }

    func makeShared() throws -> Shared {
        Shared(cache: try partCache(),
               downloader: offline ? nil : try HTTPDownloader(config: downloadConfig()),
               checksumCache: checksumCache())
    }

    /// The image's part sources, in the order they are tried: local parts (scan, map, the
    /// jigdo's own local locations), files inside older images, the part cache, downloads.
    /// Scan progress is shown on a terminal.
    func openSource(for image: JigdoImage, remote: Bool, shared: Shared) throws -> OpenedSource {
        let resolver = try resolver(for: image, remote: remote)
        let bar = ProgressBar(title: "Scanning")
        var progress: LocalParts.ScanProgress?
        if bar.isActive {
            progress = { done, total in bar.update(done: done, total: total) }
        }
        let local = try LocalParts(
            template: image.template, resolver: resolver, scanDirectories: scan.map(absolutePath),
            checksumCache: shared.checksumCache, progress: progress)
        bar.finish()
        var onDisk: [any PartSource] = [local]
        if !scanImage.isEmpty {
            let imageBar = ProgressBar(title: "Scanning images")
            var imageProgress: ImageParts.ScanProgress?
            if imageBar.isActive {
                imageProgress = { done, total in imageBar.update(done: done, total: total) }
            }
            let old = try ImageParts(
                template: image.template, images: scanImage.map { absolutePath($0) },
                checksumCache: shared.checksumCache, progress: imageProgress)
            imageBar.finish()
            onDisk.append(old)
        }
        for path in scanJigdo {
            // The older release's own parts: its local locations and --map, no scan, no
            // downloads (this image downloads what it lacks itself; the cache is shared anyway).
            let oldImage = try JigdoImage.open(jigdoPath: absolutePath(path))
            let oldParts = try LocalParts(template: oldImage.template, resolver: try self.resolver(for: oldImage, remote: false),
                                          scanDirectories: [])
            onDisk.append(OtherImageParts(template: image.template, otherTemplate: oldImage.template, otherParts: oldParts))
        }
        var storeOptions = PartStore.Options()
        storeOptions.offline = offline
        let onDiskSource: any PartSource = onDisk.count == 1 ? onDisk[0] : PartSourceChain(onDisk, partCount: image.template.parts.count)
        let store = PartStore(template: image.template, resolver: resolver, local: onDiskSource, cache: shared.cache,
                              downloader: shared.downloader, options: storeOptions)
        let reader = ImageReader(template: TemplateDataReader(file: image.templateFile, info: image.template), parts: store)
        return OpenedSource(image: image, resolver: resolver, store: store, reader: reader, offline: offline)
    }
}

/// A single .jigdo SOURCE (a path or an http(s) URL) and where its parts come from.
struct SourceOptions: ParsableArguments {
    @Argument(help: "The .jigdo file (plain or gzip-compressed), or its http(s) URL.")
    var source: String

    @Option(name: .long, help: ArgumentHelp("Use this .template instead of looking for it next to the .jigdo.", valueName: "FILE"))
    var template: String?

    @OptionGroup var parts: PartOptions

    var isRemoteSource: Bool { isRemoteURL(source) }

    func openImage(shared: PartOptions.Shared) throws -> JigdoImage {
        if isRemoteSource {
            return try RemoteSource.open(url: source, cache: shared.cache, downloader: parts.offline ? nil : shared.downloader, templatePath: template)
        }
        guard fileExists(source) else {
            throw JigdoError(.io, path: source, "no such file")
        }
        return try JigdoImage.open(jigdoPath: source, templatePath: template)
    }

    /// Opens the image with its part sources (local, old images, cache, downloads).
    func openSource() throws -> OpenedSource {
        let shared = try parts.makeShared()
        let image = try openImage(shared: shared)
        return try parts.openSource(for: image, remote: isRemoteSource, shared: shared)
    }
}

/// An image opened with all its part sources.
struct OpenedSource {
    var image: JigdoImage
    var resolver: LocationResolver
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

/// "123", "500K", "20G" (powers of 1024) -> bytes; nil for anything else (see OptionValues).
func parseSize(_ text: String) -> Int64? {
    try? OptionValues.parseSize(text, option: "size")
}
