import ArgumentParser
import Foundation
import ImageAssembly
import JigdoFormat
import Logging
import PartSources
import Synchronization

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

    @Option(name: .long, help: ArgumentHelp("Download parts of [Servers] label LABEL from URL instead of the .jigdo's servers (repeatable). URL is a directory: a missing trailing / is added (not after a '?' query). It may carry jigdo's options, quoted with it: 'LABEL=URL --try-first' or '--try-last[=W]'.", valueName: "LABEL=URL"))
    var server: [String] = []

    @Option(name: .long, help: ArgumentHelp("An extra mirror for label LABEL, tried after the .jigdo's servers of the same weight (repeatable; a directory like --server's URL, and with the same options).", valueName: "LABEL=URL"))
    var mirror: [String] = []

    @Option(name: .long, help: ArgumentHelp("Where downloaded parts, fetched .jigdo/.template files and checksums of scanned files are kept (default: $XDG_CACHE_HOME/jigdofs or ~/.cache/jigdofs).", valueName: "DIR"))
    var cacheDir: String?

    @Option(name: .long, help: ArgumentHelp("Keep the part cache under this size (e.g. 20G), plus the parts reads in progress hold; least recently used parts are removed first.", valueName: "SIZE"),
            transform: OptionValues.size("--cache-size"))
    var cacheSize: Int64?

    @Flag(name: .long, help: "Do not use or update the checksum cache of --scan.")
    var noScanCache = false

    @Option(name: .long, help: ArgumentHelp("Parallel downloads at most, over all mirrors (1 to 256). Each mirror starts with 16 and is given more while its throughput grows.", valueName: "N"), transform: OptionValues.integer("--jobs", in: 1...256))
    var jobs: Int = 32

    @Flag(name: .long, help: "Never download: use only local parts and the cache.")
    var offline = false

    @Option(name: .long, help: ArgumentHelp("Trust the certificate authorities in FILE for https (a private mirror).", valueName: "FILE"))
    var cacert: String?

    @Option(name: .long, help: ArgumentHelp("Limit all downloads together to RATE bytes per second (e.g. 500K, 2M).", valueName: "RATE"),
            transform: OptionValues.size("--limit-rate", in: 1...OptionValues.maxSize))
    var limitRate: Int64?

    @Option(name: .long, help: ArgumentHelp("At most N transfers to one server at a time, however much more would help (1 to 256, default 32).", valueName: "N"),
            transform: OptionValues.integer("--max-per-host", in: 1...256))
    var maxPerHost: Int?

    @Option(name: .long, help: ArgumentHelp("Give up a connection attempt, or a transfer that stalls, after this many seconds (default 15 to connect, 20 stalled).", valueName: "SECONDS"),
            transform: OptionValues.seconds("--timeout", in: 0.001...86_400))
    var timeout: Double?

    @Option(name: .long, help: ArgumentHelp("Retries of a location after an error that may go away (timeout, reset, 5xx) before the next location is tried (default 2).", valueName: "N"),
            transform: OptionValues.integer("--retries", in: 0...100))
    var retries: Int?

    @Option(name: .long, help: ArgumentHelp("Refuse .jigdo files and templates whose part tables would take more memory than this, all images together (default 256M; a Debian Blu-ray set of 4 images takes some 70M).", valueName: "SIZE"),
            transform: OptionValues.size("--max-metadata-memory", in: 1...OptionValues.maxSize))
    var maxMetadataMemory: Int64?

    @Flag(name: .long, help: "Log in to servers with the credentials in ~/.netrc.")
    var netrc = false

    @Option(name: .long, help: ArgumentHelp("Log in to servers with the credentials in FILE (netrc format).", valueName: "FILE"))
    var netrcFile: String?

    func validate() throws {
        for (name, values) in [("--map", map), ("--server", server), ("--mirror", mirror)] {
            for m in values {
                guard let eq = m.firstIndex(of: "="), eq != m.startIndex, m.index(after: eq) != m.endIndex else {
                    throw ValidationError("\(name) needs LABEL=\(name == "--map" ? "DIR" : "URL"), got '\(m)'")
                }
            }
        }
        if let netrcFile, !fileExists(netrcFile) { throw ValidationError("--netrc-file: \(netrcFile): no such file") }
    }

    /// Label -> URL values from `--server`/`--mirror` (`option` names it in messages).
    func serverOverrides(_ values: [String], option: String) throws -> [String: [JigdoLocation]] {
        var out: [String: [JigdoLocation]] = [:]
        for m in values {
            let eq = m.firstIndex(of: "=")!
            let label = String(m[..<eq])
            let words: ValueWords
            do {
                words = try ValueWords.split(m[m.index(after: eq)...])
            } catch {
                throw ValidationError("\(option) \(m): \(error == .danglingBackslash ? "backslash at the end" : "unterminated quote")")
            }
            let parsed = words.location
            guard !parsed.value.isEmpty else { throw ValidationError("\(option) needs LABEL=URL, got '\(m)'") }
            if !parsed.unknownOptions.isEmpty {
                Logger(label: "jigdofs").warning("\(option) \(label)=...: ignoring unknown option \(parsed.unknownOptions.joined(separator: " "))")
            }
            var value = parsed.value
            // A server is a directory the part's path is appended to, as jigdo does; a value
            // that ends in a query (mirrorlist?path=) is kept as it is.
            if !value.hasSuffix("/") && !value.contains("?") && !value.hasSuffix("=") { value += "/" }
            // A plain directory is taken as a local mirror, like --map.
            let location = uriScheme(of: value) == nil && value.hasPrefix("/") ? fileServerValue(ofDirectory: value) : value
            out[label, default: []].append(JigdoLocation(value: location, base: directoryOf(location), weight: parsed.weight))
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
            out[label, default: []].append(JigdoLocation(value: fileServerValue(ofDirectory: dir), base: dir))
        }
        return out
    }

    /// `remote`: the .jigdo came from a server, so its own local locations are not honoured.
    func resolver(for image: JigdoImage, remote: Bool) throws -> LocationResolver {
        var resolver = LocationResolver(descriptor: image.descriptor)
        resolver.prepend = try mapOverrides()
        resolver.replace = try serverOverrides(server, option: "--server")
        resolver.append = try serverOverrides(mirror, option: "--mirror")
        resolver.allowLocalFromJigdo = !remote
        if let problem = resolver.labelProblem {
            throw JigdoError(.usage, path: image.descriptor.path, "with --map/--server/--mirror: \(problem)")
        }
        if resolver.truncated {
            Logger(label: "jigdofs").warning("\(image.descriptor.path): the [Servers] labels expand to too many locations; only the \(LocationResolver.maxLocationsPerPart) best of each are used")
        }
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
        let cache = try PartCache(directory: cacheDirectory, sizeLimit: cacheSize)
        if let refusal = cache.refusal {
            Logger(label: "jigdofs").warning("\(refusal); the cache is not used (parts are kept in memory)")
        }
        return cache
    }

    func downloadConfig() -> DownloadConfig {
        var c = DownloadConfig()
        c.jobs = jobs
        c.caFile = cacert.map(absolutePath)
        c.limitRate = limitRate ?? 0
        c.maxPerHost = maxPerHost ?? DownloadConfig().maxPerHost
        if let timeout {
            c.connectTimeout = timeout
            c.lowSpeedTime = max(1, Int(timeout.rounded(.up)))
        }
        if let retries { c.attemptsPerLocation = retries + 1 }
        c.netrc = netrc || netrcFile != nil
        c.netrcFile = netrcFile.map(absolutePath)
        // A limited rate shared by many transfers must not look like a stalled server.
        if c.limitRate > 0 {
            c.lowSpeedLimit = Int(max(1, min(Int64(c.lowSpeedLimit), c.limitRate / Int64(2 * (c.jobs + 2)))))
        }
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
    /// (one connection pool, one --jobs limit), one checksum cache, one parse of each template
    /// and one memory budget (--max-metadata-memory) for what the .jigdo files and templates
    /// declare.
    struct Shared {
        var cache: PartCache
        var downloader: HTTPDownloader?
        var checksumCache: ChecksumCache?
        var templates: SharedTemplates
        var budget: MetadataBudget { templates.budget }
    }

    func makeShared() throws -> Shared {
        Shared(cache: try partCache(),
               downloader: offline ? nil : try HTTPDownloader(config: downloadConfig()),
               checksumCache: checksumCache(),
               templates: SharedTemplates(budget: MetadataBudget(limit: maxMetadataMemory ?? MetadataBudget.defaultLimit)))
    }

    /// The image's part sources, in the order they are tried: local parts (scan, map, the
    /// jigdo's own local locations), files inside older images, the part cache, downloads.
    /// Scan progress is shown on a terminal.
    func partSources(for image: JigdoImage, remote: Bool, shared: Shared) throws -> OpenedSource {
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
            var imageProgress: ISOImageParts.ScanProgress?
            if imageBar.isActive {
                imageProgress = { done, total in imageBar.update(done: done, total: total) }
            }
            let old = try ISOImageParts(
                template: image.template, images: scanImage.map { absolutePath($0) },
                checksumCache: shared.checksumCache, progress: imageProgress)
            imageBar.finish()
            onDisk.append(old)
        }
        for path in scanJigdo {
            // The older release's own parts: its local locations and --map, no scan, no
            // downloads (this image downloads what it lacks itself; the cache is shared anyway).
            // Its template as for any .jigdo (next to it, or by URL through the cache); of a
            // merged .jigdo, the image of the same name, else its first.
            let old = try JigdoDescriptor.load(path: absolutePath(path), fetch: PublishedFiles.includeFetcher(cache: shared.cache, downloader: offline ? nil : shared.downloader),
                                               budget: shared.budget)
            reportWarnings(old)
            let oldImage = try PublishedFiles.openTemplate(descriptor: old.selecting(image: image.imageName) ?? old, jigdoURL: nil,
                                                           cache: shared.cache, downloader: offline ? nil : shared.downloader,
                                                           templates: shared.templates)
            let oldParts = try LocalParts(template: oldImage.template, resolver: try self.resolver(for: oldImage, remote: false),
                                          scanDirectories: [])
            onDisk.append(OldJigdoParts(template: image.template, otherTemplate: oldImage.template, otherParts: oldParts))
        }
        var storeOptions = PartPipeline.Options()
        storeOptions.offline = offline
        let onDiskSource: any PartSource = onDisk.count == 1 ? onDisk[0] : PartSourceChain(onDisk, template: image.template)
        let store = PartPipeline(template: image.template, resolver: resolver, local: onDiskSource, cache: shared.cache,
                              downloader: shared.downloader, options: storeOptions)
        let reader = ImageReader(template: shared.templates.dataReader(of: image), parts: store)
        return OpenedSource(image: image, resolver: resolver, store: store, reader: reader, offline: offline)
    }
}

/// The descriptor standing for image `name` (required when there are several).
func selectImage(in descriptor: JigdoDescriptor, name: String?) throws -> JigdoDescriptor {
    let names = descriptor.imageNames.map(RawNames.display).joined(separator: ", ")
    if let name {
        guard let d = descriptor.selecting(image: name) else {
            throw CommandFailure(message: "\(descriptor.path): no image '\(name)'; its images: \(names)", code: 64)
        }
        return d
    }
    guard descriptor.images.count == 1 else {
        throw CommandFailure(message: "\(descriptor.path) describes \(descriptor.images.count) images (\(names)); choose one with --image NAME", code: 64)
    }
    return descriptor
}

/// Shows a .jigdo's warnings (unknown options, includes not read), once each per process.
func reportWarnings(_ descriptor: JigdoDescriptor) {
    for w in descriptor.warnings where shownWarnings.withLock({ $0.insert(w).inserted }) {
        Logger(label: "jigdofs").warning("\(w)")
    }
}

private let shownWarnings = Mutex<Set<String>>([])

/// A single .jigdo SOURCE (a path or an http(s) URL) and where its parts come from.
struct SourceOptions: ParsableArguments {
    @Argument(help: "The .jigdo file (plain or gzip-compressed), or its http(s) URL.")
    var source: String

    @Option(name: .long, help: ArgumentHelp("Use this .template instead of looking for it next to the .jigdo.", valueName: "FILE"))
    var template: String?

    @OptionGroup var parts: PartOptions

    @Option(name: .long, help: ArgumentHelp("The image to use when the .jigdo describes several (jigdo-file --merge): its file name, as `info` lists them.", valueName: "NAME"))
    var image: String?

    @Option(name: .long, help: ArgumentHelp("auto: a bar when stderr is a terminal; bar; plain: a line every few seconds; none.", valueName: "auto|bar|plain|none"))
    var progress: ProgressMode = .auto

    @Flag(name: .customShort("v"), help: "With --progress=auto and stderr not a terminal (a log, a pipe): a plain progress line every few seconds.")
    var verbose = false

    var isRemoteSource: Bool { isRemoteURL(source) }

    /// The .jigdo, with its includes (remote ones fetched, or from the cache when offline),
    /// standing for all its images. Its warnings are shown.
    func openDescriptor(shared: PartOptions.Shared) throws -> JigdoDescriptor {
        let downloader = parts.offline ? nil : shared.downloader
        let descriptor: JigdoDescriptor
        if isRemoteSource {
            descriptor = try namingURL(source, cacheDirectory: shared.cache.directory) {
                try RemoteSource.descriptor(url: source, cache: shared.cache, downloader: downloader, budget: shared.budget)
            }
        } else {
            guard fileExists(source) else {
                throw JigdoError(.io, path: source, "no such file")
            }
            try refuseNonJigdo(source)
            descriptor = try JigdoDescriptor.load(path: source, fetch: PublishedFiles.includeFetcher(cache: shared.cache, downloader: downloader),
                                                  budget: shared.budget)
        }
        reportWarnings(descriptor)
        return descriptor
    }

    /// The descriptor standing for the one image to use (`--image`, or the only one).
    func selectImage(_ descriptor: JigdoDescriptor) throws -> JigdoDescriptor {
        try jigdofs.selectImage(in: descriptor, name: image)
    }

    func openImage(shared: PartOptions.Shared) throws -> JigdoImage {
        let descriptor = try selectImage(try openDescriptor(shared: shared))
        return try namingURL(source, cacheDirectory: shared.cache.directory) {
            try PublishedFiles.openTemplate(
                descriptor: descriptor, jigdoURL: isRemoteSource ? source : nil, cache: shared.cache,
                downloader: parts.offline ? nil : shared.downloader, override: template.map(absolutePath),
                templates: shared.templates)
        }
    }

    /// Opens the image with its part sources (local, old images, cache, downloads).
    func openSource() throws -> OpenedSource {
        ProgressSettings.mode = progress
        ProgressSettings.verbose = verbose
        let shared = try parts.makeShared()
        let image = try openImage(shared: shared)
        return try parts.partSources(for: image, remote: isRemoteSource, shared: shared)
    }
}

/// An image opened with all its part sources.
struct OpenedSource {
    var image: JigdoImage
    var resolver: LocationResolver
    var store: PartPipeline
    var reader: ImageReader
    var offline: Bool

    /// For an interrupt message: where downloaded parts stay.
    var keptPartsNote: String {
        guard !offline, store.downloader != nil, let dir = store.cache?.directory else { return "" }
        return "; parts downloaded so far are kept in the cache (\(dir))"
    }

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

/// Fails with the list of missing parts (and where the jigdo says to get them): at most 20
/// lines of them unless `verify --list-missing`.
func requireParts(_ missing: [Int], _ image: JigdoImage, _ resolver: LocationResolver, why: String) throws {
    guard !missing.isEmpty else { return }
    var seen = Set<Checksum>()
    var lines: [String] = []
    var bytes: Int64 = 0
    for i in missing {
        let part = image.template.parts[i]
        guard seen.insert(part.checksum).inserted else { continue }
        bytes += part.length
        let urls = resolver.locations(forPart: part.checksum).map { Passwords.masked(url: $0.description) }
        var whereText = urls.joined(separator: " ")
        if urls.isEmpty {
            whereText = !resolver.allowLocalFromJigdo && namesLocalFile(image.descriptor.parts[part.checksum.base64] ?? [], image.descriptor)
                ? "(its local file: locations are refused: a .jigdo from a server cannot make jigdofs read local files)"
                : "(no location in the .jigdo)"
        }
        lines.append("  \(part.checksum.base64) \(formatBytes(part.length)): \(whereText)")
    }
    let total = Set(image.template.parts.filter { $0.length > 0 }.map(\.checksum)).count
    let header = "\(seen.count) of \(countText(max(total, seen.count), "part")) (\(formatBytes(bytes))) \(why); use --scan DIR or --map LABEL=DIR:"
    if !MissingReport.listAll && lines.count > MissingReport.maxLines {
        let more = lines.count - MissingReport.maxLines
        lines = Array(lines.prefix(MissingReport.maxLines)) + ["  and \(more) more (jigdofs verify --list-missing)"]
    }
    throw CommandFailure(lines: [header] + lines, code: 2)
}

/// Whether one of these locations is (through its labels) a local file: what a .jigdo from a
/// server may not make us read.
func namesLocalFile(_ entries: [JigdoLocation], _ descriptor: JigdoDescriptor, depth: Int = 0) -> Bool {
    guard depth < 8 else { return false }
    for e in entries {
        if e.value.hasPrefix("file:") || e.value.hasPrefix("/") { return true }
        if let colon = e.value.firstIndex(of: ":"), let servers = descriptor.servers[String(e.value[..<colon])],
           namesLocalFile(servers, descriptor, depth: depth + 1) {
            return true
        }
    }
    return false
}

/// "123", "500K", "20G" (powers of 1024) -> bytes; nil for anything else (see OptionValues).
func parseSize(_ text: String) -> Int64? {
    try? OptionValues.parseSize(text, option: "size")
}
