import ArgumentParser
import Foundation
import JigdoFormat
import PartSources

struct Cache: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show or trim the part cache.",
        subcommands: [List.self, Clean.self])

    struct CacheDirOption: ParsableArguments {
        @Option(name: .long, help: ArgumentHelp("The cache directory (default: $XDG_CACHE_HOME/jigdofs or ~/.cache/jigdofs).", valueName: "DIR"))
        var cacheDir: String?

        /// The cache; a refused one (not this user's own, writable by others, a link) is an
        /// error here: nothing in it is listed or removed.
        func open() throws -> PartCache {
            let cache = try PartCache(directory: cacheDir ?? PartCache.defaultDirectory(environment: ProcessInfo.processInfo.environment))
            if let refusal = cache.refusal { throw refusal }
            return cache
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show what the cache holds.")
        @OptionGroup var options: CacheDirOption

        func run() throws {
            let cache = try options.open()
            let parts = cache.entries()
            let partial = cache.partialEntries()
            printLine("\(cache.directory)")
            printLine("  parts:    \(parts.count) (\(formatBytes(parts.reduce(0) { $0 + $1.size })))")
            printLine("  partial:  \(partial.count) (\(formatBytes(partial.reduce(0) { $0 + $1.size }))) resumable downloads")
        }
    }

    struct Clean: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove cached parts: all of them, or the least recently used down to a size.")
        @OptionGroup var options: CacheDirOption

        @Option(name: .long, help: ArgumentHelp("Keep at most this much (e.g. 5G); without it everything is removed.", valueName: "SIZE"),
                transform: OptionValues.size("--keep"))
        var keep: Int64?

        @Flag(name: .long, help: "Also remove partial (resumable) downloads.")
        var partial = false

        func run() throws {
            let cache = try options.open()
            let parts = cache.evictLeastRecentlyUsed(downTo: keep ?? 0)
            var removed = parts.removed
            var freed = parts.freed
            if partial {
                for e in cache.partialEntries() where Syscalls.unlink(e.path) == 0 {
                    removed += 1
                    freed += e.size
                }
            }
            printLine("\(cache.directory): removed \(removed) files (\(formatBytes(freed))); \(formatBytes(parts.kept)) of parts kept")
        }
    }
}
