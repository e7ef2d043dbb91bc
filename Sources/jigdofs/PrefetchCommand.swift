import ArgumentParser
import FUSEBridge
import Foundation
import ImageAssembly
import JigdoFormat
import PartSources
import Synchronization

struct Prefetch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Download every part that is neither local nor cached into the cache.",
        discussion: """
            SOURCE is a .jigdo (path or URL), or the mount point of a jigdofs mount: then every \
            image of the mount is read through it, so the mount's daemon downloads what it lacks \
            with its own servers and cache. Resumable: an interrupted run keeps its partial \
            downloads and the next run continues them.
            """)

    @OptionGroup var options: SourceOptions

    func run() throws {
        let path = options.source
        if !isRemoteURL(path) {
            try refuseDeadMount(path)
            if isDirectory(path) {
                guard let (_, report) = try StatusClient.read(mountpoint: path) else {
                    throw CommandFailure(message: "\(path): a directory, but not a jigdofs mount; give a .jigdo, its URL, or the mount point of a jigdofs mount", code: 1)
                }
                ProgressSettings.mode = options.progress
                ProgressSettings.verbose = options.verbose
                return try prefetchMount(path, images: report.images)
            }
        }
        if options.parts.offline {
            throw CommandFailure(message: "prefetch downloads parts; it cannot run with --offline", code: 1)
        }
        let source = try options.openSource()
        let store = source.store
        let parts = source.image.template.parts
        var seen = Set<Checksum>()
        let missing = store.missingParts().filter { seen.insert(parts[$0].checksum).inserted }
        try requireParts(missing.filter { store.urls(forPart: $0).isEmpty }, source.image, source.resolver,
                         why: "have no local copy and no download location")
        let distinct = Set(parts.filter { $0.length > 0 }.map(\.checksum)).count
        let total = missing.reduce(Int64(0)) { $0 + parts[$1].length }
        let cacheDir = store.cache?.directory ?? "the cache"
        let before = store.statistics()
        Interrupt.onInterrupt {
            let s = store.statistics()
            return "\(countText(s.partsDownloaded - before.partsDownloaded, "part")) (\(formatBytes(s.bytesDownloaded - before.bytesDownloaded))) of \(missing.count) downloaded into \(cacheDir), partial downloads kept; run `jigdofs prefetch \(path)` again to go on"
        }
        store.prefetch(missing)
        let bar = ProgressBar(title: "Downloading")
        // Figures from the store, whatever order downloads finish in: the bytes of the parts
        // downloaded and of those arriving, so a large part moves the bar as it arrives. Never
        // backwards: a failed attempt's bytes drop out of the count (they are fetched again).
        let shown = Mutex<Int64>(0)
        let ticker = Ticker(every: 0.2) {
            let s = store.statistics()
            let now = min(total, s.bytesDownloaded - before.bytesDownloaded + s.bytesArriving)
            let done = shown.withLock { $0 = max($0, now); return $0 }
            bar.update(done: done, total: total, parts: (s.partsDownloaded - before.partsDownloaded, missing.count))
        }
        var failures: [String] = []
        for i in missing {
            do {
                try store.ensureAvailable(i)
            } catch {
                failures.append("  \(error)")
            }
        }
        ticker.stop()
        let s = store.statistics()
        bar.update(done: total, total: total, parts: (missing.count - failures.count, missing.count))
        bar.finish()
        guard failures.isEmpty else {
            throw CommandFailure(
                lines: ["\(failures.count) of \(countText(missing.count, "part")) could not be downloaded (run prefetch again to retry):"] + capped(failures),
                code: 2)
        }
        printLine("\(source.image.imageName): \(distinct) of \(countText(distinct, "part")) available; \(countText(missing.count, "part")) (\(formatBytes(s.bytesDownloaded - before.bytesDownloaded))) downloaded into \(cacheDir)")
    }

    /// Reads every image of a mount to its end (the daemon fetches what is missing, with its
    /// read-ahead); a region that cannot be read is skipped and reported, the rest goes on.
    func prefetchMount(_ mountpoint: String, images: [StatusFile.Report.Image]) throws {
        let total = images.reduce(Int64(0)) { $0 + $1.size }
        let bar = ProgressBar(title: "Reading the mount")
        let chunk = 4 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate() }
        let done = Mutex<Int64>(0)
        Interrupt.onInterrupt {
            "the mount keeps every part it downloaded (\(formatBytes(done.withLock { $0 })) of \(formatBytes(total)) read); run `jigdofs prefetch \(mountpoint)` again to go on"
        }
        // The parts figures come from the mount's status, so the bar moves as the daemon's
        // downloads finish, not only when a 4 MiB read returns.
        let partsNow = Mutex<(Int, Int)?>(nil)
        let ticker = Ticker(every: 0.25) {
            if let report = try? StatusClient.read(mountpoint: mountpoint)?.report {
                let t = report.images.reduce(0) { $0 + $1.parts.partsTotal }
                let m = report.images.reduce(0) { $0 + $1.parts.partsMissing }
                partsNow.withLock { $0 = (t - m, t) }
            }
            bar.update(done: done.withLock { $0 }, total: total, parts: partsNow.withLock { $0 }.map { (done: $0.0, total: $0.1) })
        }
        var failures: [String] = []
        for image in images {
            let path = (mountpoint.hasSuffix("/") ? mountpoint : mountpoint + "/") + image.name
            let file = try ReadOnlyFile(path: path)
            var offset: Int64 = 0
            while offset < file.size {
                let n = Int(min(Int64(chunk), file.size - offset))
                do {
                    try file.read(at: offset, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n]))
                } catch {
                    failures.append("  \(image.name): bytes \(offset)-\(offset + Int64(n) - 1) unreadable (the mount's log names the parts)")
                }
                offset += Int64(n)
                done.withLock { $0 += Int64(n) }
            }
        }
        ticker.stop()
        let finalReport = try StatusClient.read(mountpoint: mountpoint)?.report.images ?? []
        let t = finalReport.reduce(0) { $0 + $1.parts.partsTotal }
        let m = finalReport.reduce(0) { $0 + $1.parts.partsMissing }
        bar.update(done: total, total: total, parts: (t - m, t))
        bar.finish()
        guard failures.isEmpty else {
            throw CommandFailure(
                lines: ["\(mountpoint): \(failures.count) regions could not be read (run prefetch again to retry):"] + capped(failures),
                code: 2)
        }
        for image in finalReport {
            printLine("\(image.name): \(image.parts.partsTotal - image.parts.partsMissing) of \(countText(image.parts.partsTotal, "part")) available, \(formatBytes(image.parts.bytesDownloaded)) downloaded by the mount")
        }
    }

    /// At most 20 failure lines, then how many more.
    func capped(_ lines: [String]) -> [String] {
        guard lines.count > MissingReport.maxLines else { return lines }
        return Array(lines.prefix(MissingReport.maxLines)) + ["  and \(lines.count - MissingReport.maxLines) more"]
    }
}

/// Runs `body` every `interval` seconds on its own thread (at once, first) until `stop()`.
final class Ticker: Sendable {
    private let stopped = Mutex(false)
    private let done = DispatchSemaphore(value: 0)

    init(every interval: Double, _ body: @escaping @Sendable () -> Void) {
        let thread = Thread { [self] in
            while !self.stopped.withLock({ $0 }) {
                body()
                usleep(UInt32(interval * 1_000_000))
            }
            self.done.signal()
        }
        thread.start()
    }

    func stop() {
        stopped.withLock { $0 = true }
        done.wait()
    }
}
