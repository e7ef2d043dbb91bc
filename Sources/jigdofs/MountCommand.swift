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
            Each SOURCE is a .jigdo file (or its http(s) URL) or a directory whose *.jigdo \
            files each become images; a .jigdo in a directory that cannot be read is skipped \
            with one line saying why. A .jigdo merged from several images shows each of them. \
            The mount point shows one file per image, with its exact size; reads are \
            assembled from the template and the local parts as they happen. Next to each ISO \
            9660 image X.iso, a read-only directory X.iso.d shows the files inside it (listing \
            it needs no part; reading a file reads only that file's parts). The command returns \
            once the mount is usable and keeps serving in the background (-f: in the foreground). \
            Unmount with `jigdofs umount MOUNTPOINT` (or `fusermount3 -u MOUNTPOINT`). A mount \
            point inside another jigdofs mount is refused.
            """)

    @Argument(help: ArgumentHelp("One or more .jigdo files or directories of them, then the mount point.", valueName: "SOURCE... MOUNTPOINT"))
    var paths: [String]

    @OptionGroup var partOptions: PartOptions

    @Option(name: .long, help: ArgumentHelp("Use this .template (only with a single .jigdo SOURCE).", valueName: "FILE"))
    var template: String?

    @Flag(name: [.customShort("f"), .long], help: "Stay in the foreground; log to stderr.")
    var foreground = false

    @Flag(name: [.customShort("d"), .long], help: "Log every FUSE request (implies --foreground).")
    var debug = false

    @Option(name: .customShort("o"), help: ArgumentHelp("Mount options, comma-separated; repeatable. jigdofs options as NAME=VALUE or NAME (scan=DIR, cache-size=20G, offline: any long option above), FUSE ones (allow_other, ...) passed on, fstab-only ones (nofail, noauto, _netdev, x-systemd.*, ...) ignored. The mount is always read-only.", valueName: "OPTIONS"))
    var fuseOptions: [String] = []

    @Option(name: .long, help: ArgumentHelp("In the background, append log lines here (default: syslog, i.e. the journal); SIGHUP reopens it.", valueName: "FILE"))
    var logFile: String?

    @Flag(name: .long, help: "Once mounted, download the rest of every image in the background (reads of the mount go first; `jigdofs status` shows the progress).")
    var prefetch = false

    @Option(name: .long, help: ArgumentHelp("Seconds the kernel may cache names and attributes (default: a day; nothing changes while mounted).", valueName: "SECONDS", visibility: .hidden))
    var attrTimeout: Double = 86400

    @Option(name: .long, help: ArgumentHelp("Log level: error, warning, notice (default: mount, unmount, failing locations, cache trouble), info, debug.", valueName: "LEVEL"))
    var logLevel: String?

    @Flag(name: .customShort("v"), help: "More log lines: -v info, -vv debug.")
    var verbose: Int

    var sources: [String] { Array(paths.dropLast()) }
    var mountpoint: String { paths.last ?? "" }

    func validate() throws {
        guard paths.count >= 2 else {
            throw ValidationError("give at least one SOURCE and the MOUNTPOINT")
        }
        if template != nil, sources.count != 1 || isDirectory(sources[0]) {
            throw ValidationError("--template needs exactly one SOURCE, a .jigdo file")
        }
        if let logLevel, LogSetup.parseLevel(logLevel) == nil {
            throw ValidationError("--log-level: '\(logLevel)' is not one of error, warning, notice, info, debug")
        }
    }

    var level: Logger.Level {
        if let logLevel, let l = LogSetup.parseLevel(logLevel) { return l }
        if ProcessInfo.processInfo.environment["JIGDOFS_DEBUG"] != nil { return .debug }
        return verbose >= 2 ? .debug : verbose == 1 ? .info : .notice
    }

    /// How the mount table shows the mount: a URL as given, a path made absolute (so `mount -a`
    /// finds an fstab line's mount), several sources as "jigdofs". Every user can read the
    /// table: a URL's password is masked (so `mount -a` does not recognise that line's mount).
    var fsname: String {
        guard sources.count == 1 else { return "jigdofs" }
        return isRemoteURL(sources[0]) ? Passwords.masked(url: sources[0]) : absolutePath(sources[0])
    }

    func run() throws {
        // Fork before anything else runs (see Daemon): the parent returns only when the
        // child reports the mount ready, or exits with the child's status.
        WarningFolds.enabled = false
        try refuseDeadMount(mountpoint)
        try refuseNestedMount(mountpoint)
        // Before the daemon changes to `/`, where a relative SOURCE names another path.
        let fsname = self.fsname
        let daemon = foreground || debug ? nil : try Daemon.forkWaitingForReady()

        LogSetup.level = level
        let logger = Logger(label: "jigdofs.mount")
        let (images, stores) = try openImages()
        let filesystem = try JigdoFilesystem(images: images, logger: logger)
        // `-o` was translated by MountInvocation: what is left is for FUSE (never rw).
        let options = fuseOptions.flatMap(MountInvocation.splitOptionList).filter { $0 != "rw" && !$0.isEmpty }
        let target = absolutePath(mountpoint)
        let mount = try FUSEMount(
            filesystem: filesystem, mountpoint: target, fsname: fsname,
            options: options.map(FUSEMount.escapeOption), debug: debug,
            attributeTimeout: max(0, attrTimeout))
        try mount.mount()
        let logPath = logFile.map(absolutePath)
        do {
            try daemon?.ready(logFile: logPath)
        } catch {
            mount.unmount()
            throw error
        }
        if daemon != nil {
            LogSetup.background(logFile: logPath, prefix: target + ": ")
            HangupSignal.install { LogSetup.reopen() }
        }
        let names = images.map(\.name).joined(separator: ", ")
        logger.notice("mounted \(names) from \(fsname)\(daemon == nil ? " at \(target)" : "")")
        // One line per variable: a name cannot add one (MAINPID=, say).
        ServiceNotification.send("READY=1\nSTATUS=\(RawNames.printable("serving \(names) at \(target)"))\nMAINPID=\(getpid())")
        if prefetch && !partOptions.offline {
            // Read-ahead priority: a read of the mount is a demand transfer and goes first.
            for store in stores { store.prefetch(store.missingParts()) }
        }
        mount.run()
        ServiceNotification.send("STOPPING=1")
        logger.notice("unmounted")
        LogSetup.flushRepeats()
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
        try refuseNonJigdo(source)
        return [path]
    }

    /// The images to show, and the part store of each (for --prefetch).
    func openImages() throws -> ([MountedImage], [PartPipeline]) {
        // One part cache, downloader and checksum cache for all images: a scan of the same
        // tree hashes each file once, and --jobs bounds the transfers of the whole mount.
        let shared = try partOptions.makeShared()
        let downloader = partOptions.offline ? nil : shared.downloader
        let logger = Logger(label: "jigdofs")
        var byName: [String: String] = [:]
        var opened: [(origin: String, image: JigdoImage, remote: Bool)] = []
        /// Indexes into `opened` of the images that came from a folder SOURCE (skipped, not
        /// fatal, when their name cannot be shown).
        var fromFolder = Set<Int>()
        /// Every image of one .jigdo (a merged .jigdo has several); images that name the same
        /// template file share one parse of it (`shared.templates`).
        func open(_ origin: String, remote: Bool) throws -> [(String, JigdoImage, Bool)] {
            let descriptor = remote
                ? try namingURL(origin, cacheDirectory: shared.cache.directory) {
                    try RemoteSource.descriptor(url: origin, cache: shared.cache, downloader: downloader, budget: shared.budget) }
                : try JigdoDescriptor.load(path: origin, fetch: PublishedFiles.includeFetcher(cache: shared.cache, downloader: downloader),
                                           budget: shared.budget)
            reportWarnings(descriptor)
            return try descriptor.perImage.map { one in
                (origin, try PublishedFiles.openTemplate(descriptor: one, jigdoURL: remote ? origin : nil, cache: shared.cache,
                                                         downloader: downloader, override: template.map(absolutePath),
                                                         templates: shared.templates), remote)
            }
        }
        for source in sources {
            if isRemoteURL(source) {
                opened += try open(source, remote: true)
            } else if isDirectory(absolutePath(source)) {
                // A release archive: a .jigdo that cannot be read is skipped with one line;
                // only a folder where none can be read fails.
                let files = try jigdoFiles(source)
                var failures: [String] = []
                for file in files {
                    do {
                        let images = try open(file, remote: false)
                        fromFolder.formUnion(opened.count..<(opened.count + images.count))
                        opened += images
                    } catch {
                        failures.append("\(error)")
                        logger.warning("skipping \(file): \(error)")
                    }
                }
                if failures.count == files.count {
                    throw JigdoError(.usage, path: source, "none of its \(files.count) .jigdo files can be read (first: \(failures.first ?? ""))")
                }
            } else {
                for file in try jigdoFiles(source) { opened += try open(file, remote: false) }
            }
        }
        // Names the mount cannot show: its own (the status file, an image's `X.d` view) and one
        // taken by an earlier image. A folder's image is skipped with one line (the folder's
        // other images are mounted); one named on the command line fails the mount.
        let allNames = Set(opened.map(\.image.imageName))
        var shown: [(origin: String, image: JigdoImage, remote: Bool)] = []
        var skipped: [String] = []
        for (i, (origin, image, remote)) in opened.enumerated() {
            let name = image.imageName
            let problem = JigdoFilesystem.refusal(ofImageName: name, among: allNames)
                ?? byName[name].map { "image \(name) is also the image of \($0); one mount cannot show both" }
            guard let problem else {
                byName[name] = origin
                shown.append((origin, image, remote))
                continue
            }
            guard fromFolder.contains(i) else { throw JigdoError(.usage, path: origin, problem) }
            logger.warning("skipping \(origin): \(problem)")
            skipped.append("\(origin): \(problem)")
        }
        if shown.isEmpty, let first = skipped.first {
            throw JigdoError(.usage, "no image can be mounted (first: \(first))")
        }
        var stores: [PartPipeline] = []
        let images = try shown.map { origin, image, remote in
            let source = try partOptions.partSources(for: image, remote: remote, shared: shared)
            stores.append(source.store)
            // The template's time: it changes when the image does (it holds the image's
            // checksum), not when the .jigdo's servers are edited or the .jigdo is fetched
            // again; a fetched template has the server's Last-Modified (README: "Stable
            // identity").
            let mtime = modificationTime(image.templatePath)
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
