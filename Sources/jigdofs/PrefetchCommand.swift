import ArgumentParser
import FUSEBridge
import Foundation
import ImageAssembly
import JigdoFormat
import PartSources

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
        if isDirectory(options.source), let (_, report) = try StatusFile.read(mountpoint: options.source) {
            return try prefetchMount(options.source, images: report.images)
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
        let total = missing.reduce(Int64(0)) { $0 + parts[$1].length }
        store.prefetch(missing)
        let bar = ProgressBar(title: "Downloading")
        var done: Int64 = 0
        var failures: [String] = []
        for i in missing {
            do {
                try store.ensureAvailable(i)
            } catch {
                failures.append("  \(error)")
            }
            done += parts[i].length
            bar.update(done: done, total: total)
        }
        bar.finish()
        guard failures.isEmpty else {
            throw CommandFailure(
                message: (["\(failures.count) of \(missing.count) parts could not be downloaded (run prefetch again to retry):"] + failures).joined(separator: "\n"),
                code: 2)
        }
        let stats = store.statistics()
        print("\(source.image.imageName): all \(Set(parts.map(\.checksum)).count) parts available; \(missing.count) parts (\(stats.bytesDownloaded) bytes) downloaded into \(store.cache?.directory ?? "the cache")")
    }

    /// Reads every image of a mount to its end (the daemon fetches what is missing, with its
    /// read-ahead); a region that cannot be read is skipped and reported, the rest goes on.
    func prefetchMount(_ mountpoint: String, images: [StatusFile.Report.Image]) throws {
        let total = images.reduce(Int64(0)) { $0 + $1.size }
        let bar = ProgressBar(title: "Reading the mount")
        let chunk = 4 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate() }
        var done: Int64 = 0
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
                done += Int64(n)
                bar.update(done: done, total: total)
            }
        }
        bar.finish()
        guard failures.isEmpty else {
            throw CommandFailure(
                message: (["\(mountpoint): \(failures.count) regions could not be read (run prefetch again to retry):"] + failures).joined(separator: "\n"),
                code: 2)
        }
        for image in try StatusFile.read(mountpoint: mountpoint)?.report.images ?? [] {
            print("\(image.name): \(image.parts.partsTotal - image.parts.partsMissing) of \(image.parts.partsTotal) parts available, \(image.parts.bytesDownloaded) bytes downloaded by the mount")
        }
    }
}
