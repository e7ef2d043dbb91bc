import ArgumentParser
import FUSEBridge
import Foundation
import ImageAssembly
import JigdoFormat
import Logging
import PartSources

struct Mount: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show jigdo images as read-only files in a directory, served on demand.",
        discussion: """
            Each SOURCE is a .jigdo file or a directory whose *.jigdo files each become one \
            image. The mount point shows one file per image, with its exact size; reads are \
            assembled from the template and the local parts as they happen. Next to each ISO \
            9660 image X.iso, a read-only directory X.iso.d shows the files inside it (listing \
            it needs no part; reading a file reads only that file's parts). The command returns \
            once the mount is usable and keeps serving in the background (-f: in the foreground). \
            Unmount with `fusermount3 -u MOUNTPOINT` or `umount MOUNTPOINT`.
            """)

    @Argument(help: ArgumentHelp("One or more .jigdo files or directories of them, then the mount point.", valueName: "SOURCE... MOUNTPOINT"))
    var paths: [String] = []

    @OptionGroup var partOptions: PartOptions

    @Option(name: .long, help: ArgumentHelp("Use this .template (only with a single .jigdo SOURCE).", valueName: "FILE"))
    var template: String?

    @Flag(name: [.customShort("f"), .long], help: "Stay in the foreground; log to stderr.")
    var foreground = false

    @Flag(name: [.customShort("d"), .long], help: "Log every FUSE request (implies --foreground).")
    var debug = false

    @Option(name: .customShort("o"), help: ArgumentHelp("FUSE mount options, comma-separated (e.g. allow_other); repeatable.", valueName: "FUSEOPTS"))
    var fuseOptions: [String] = []

    @Option(name: .long, help: ArgumentHelp("In the background, append log lines here (default: syslog).", valueName: "FILE"))
    var logFile: String?

    @Flag(name: .long, help: "Once mounted, download the rest of every image in the background (reads of the mount go first; `jigdofs status` shows the progress).")
    var prefetch = false

    @Option(name: .long, help: ArgumentHelp("Seconds the kernel may cache names and attributes (default: a day; nothing changes while mounted).", valueName: "SECONDS", visibility: .hidden))
    var attrTimeout: Double = 86400

    var sources: [String] { Array(paths.dropLast()) }
    var mountpoint: String { paths.last ?? "" }

    func validate() throws {
        guard paths.count >= 2 else {
            throw ValidationError("give at least one SOURCE and the MOUNTPOINT")
        }
        if template != nil, sources.count != 1 || isDirectory(sources[0]) {
            throw ValidationError("--template needs exactly one SOURCE, a .jigdo file")
        }
    }

    func run() throws {
        // Fork before anything else runs (see Daemon): the parent returns only when the
        // child reports the mount ready, or exits with the child's status.
        let daemon = foreground || debug ? nil : try Daemon.forkWaitingForReady()

        let (images, stores) = try openImages()
        let logger = daemon == nil || logFile != nil ? Logger(label: "jigdofs.mount") : Logger(label: "jigdofs.mount", factory: SyslogLogHandler.init)
        let filesystem = try JigdoFilesystem(images: images, logger: logger)
        let mount = try FUSEMount(
            filesystem: filesystem, mountpoint: absolutePath(mountpoint),
            fsname: sources.count == 1 ? absolutePath(sources[0]) : "jigdofs",
            options: fuseOptions.flatMap { $0.split(separator: ",").map(String.init) }, debug: debug,
            attributeTimeout: max(0, attrTimeout))
        try mount.mount()
        do {
            try daemon?.ready(logFile: logFile.map(absolutePath))
        } catch {
            mount.unmount()
            throw error
        }
        if daemon == nil {
            logger.info("\(mountpoint): mounted \(images.map(\.name).joined(separator: ", "))")
        }
        if prefetch && !partOptions.offline {
            // Read-ahead priority: a read of the mount is a demand transfer and goes first.
            for store in stores { store.prefetch(store.missingParts()) }
        }
        mount.run()
    }

    /// A local SOURCE as .jigdo paths; a directory expands to its *.jigdo files.
    func jigdoFiles(_ source: String) throws -> [String] {
        let path = absolutePath(source)
        if isDirectory(path) {
            let names = try FileManager.default.contentsOfDirectory(atPath: path)
                .filter { $0.hasSuffix(".jigdo") }.sorted()
            guard !names.isEmpty else { throw JigdoError(.usage, path: source, "directory has no .jigdo files") }
            let dir = path.hasSuffix("/") ? path : path + "/"
            return names.map { dir + $0 }.filter { !isDirectory($0) }
        }
        guard fileExists(path) else { throw JigdoError(.io, path: source, "no such file or directory") }
        return [path]
    }

    /// The images to show, and the part store of each (for --prefetch).
    func openImages() throws -> ([MountedImage], [PartStore]) {
        // One part cache, downloader and checksum cache for all images: a scan of the same
        // tree hashes each file once, and --jobs bounds the transfers of the whole mount.
        let shared = try partOptions.makeShared()
        var byName: [String: String] = [:]
        var opened: [(origin: String, image: JigdoImage, remote: Bool)] = []
        for source in sources {
            if isRemoteURL(source) {
                let image = try RemoteSource.open(url: source, cache: shared.cache,
                    downloader: partOptions.offline ? nil : shared.downloader, templatePath: template.map(absolutePath))
                opened.append((source, image, true))
            } else {
                for file in try jigdoFiles(source) {
                    opened.append((file, try JigdoImage.open(jigdoPath: file, templatePath: template.map(absolutePath)), false))
                }
            }
        }
        for (origin, image, _) in opened {
            if let other = byName[image.imageName] {
                throw JigdoError(.usage, path: origin, "image \(image.imageName) is also the image of \(other); one mount cannot show both")
            }
            byName[image.imageName] = origin
        }
        var stores: [PartStore] = []
        let images = try opened.map { origin, image, remote in
            let source = try partOptions.openSource(for: image, remote: remote, shared: shared)
            stores.append(source.store)
            // A remote .jigdo is shown with the time of its cached copy.
            let mtime = modificationTime(remote ? image.descriptor.path : origin)
            return MountedImage(name: image.imageName, reader: source.reader, jigdoPath: origin, modificationTime: mtime)
        }
        return (images, stores)
    }

    func modificationTime(_ path: String) -> timespec {
        var st = stat()
        guard stat(path, &st) == 0 else { return timespec() }
        return st.st_mtim
    }
}

/// Log lines of a background mount go to syslog (the daemon has no terminal).
struct SyslogLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info
    let label: String

    init(label: String) {
        self.label = label
        Self.openOnce
    }

    private static let openOnce: Void = {
        openlog(strdup("jigdofs"), LOG_PID, LOG_DAEMON)
    }()

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let priority: Int32
        switch event.level {
        case .trace, .debug: priority = LOG_DEBUG
        case .info: priority = LOG_INFO
        case .notice: priority = LOG_NOTICE
        case .warning: priority = LOG_WARNING
        case .error: priority = LOG_ERR
        case .critical: priority = LOG_CRIT
        }
        "\(event.message)".withCString { text in
            withVaList([text]) { vsyslog(priority, "%s", $0) }
        }
    }
}
