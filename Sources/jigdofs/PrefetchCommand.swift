import ArgumentParser
import Foundation
import ImageAssembly
import JigdoFormat
import PartSources

struct Prefetch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Download every part that is neither local nor cached into the cache.",
        discussion: "Resumable: an interrupted run keeps its partial downloads and the next run continues them.")

    @OptionGroup var options: SourceOptions

    func run() throws {
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
}
