#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import ImageAssembly
import JigdoFormat
import Logging
import Synchronization

/// Figures for `jigdofs status`: where the parts are, what the downloads did.
extension PartPipeline {
    public struct Statistics: Sendable {
        public var partsDownloaded: Int
        public var bytesDownloaded: Int64
        public var downloading: Int
        public var failuresByHost: [String: Int]
        public var failuresByLocation: [String: Int]
    }

    /// Parts (distinct checksums with bytes) by where they are now; stats every cache file, so
    /// for a status display, not for the read path.
    public struct Availability: Sendable, Equatable {
        public var total = 0
        public var local = 0
        public var cached = 0
        public var inMemory = 0
        public var missing = 0
    }

    public func availability() -> Availability {
        var a = Availability()
        var seen = Set<Checksum>()
        for (i, part) in template.parts.enumerated() where part.length > 0 && seen.insert(part.checksum).inserted {
            a.total += 1
            if local?.isLocallyAvailable(i) == true {
                a.local += 1
            } else if cache?.contains(part.checksum, length: part.length) == true {
                a.cached += 1
            } else if memoryParts.value(for: part.checksum) != nil {
                a.inMemory += 1
            } else {
                a.missing += 1
            }
        }
        return a
    }

    public func statistics() -> Statistics {
        condition.lock(); defer { condition.unlock() }
        let inFlight = state.parts.downloading
        return Statistics(partsDownloaded: state.partsDownloaded, bytesDownloaded: state.bytesDownloaded,
                          downloading: inFlight, failuresByHost: state.failuresByHost,
                          failuresByLocation: state.health.failures)
    }
}

extension PartPipeline: PartStatisticsProvider {
    /// For `jigdofs status`: where the parts are now, and what the downloads did.
    public func statistics(template: TemplateInfo) -> PartStatistics {
        let a = availability()
        let s = statistics()
        var out = PartStatistics()
        out.partsTotal = a.total
        out.partsLocal = a.local
        out.partsCached = a.cached + a.inMemory
        out.partsMissing = a.missing
        out.bytesDownloaded = s.bytesDownloaded
        out.transfersInFlight = s.downloading
        out.failuresByMirror = s.failuresByHost
        out.failuresByLocation = s.failuresByLocation
        for (location, figures) in downloader?.concurrency() ?? [:] {
            out.transfersAllowedByLocation[location] = figures.limit
            if let rate = figures.rate { out.speedByLocation[location] = Int64(rate) }
        }
        return out
    }
}

extension PartPipeline: PartStateProvider {
    /// For `jigdofs status --map`: each part local, cached (or in memory), being downloaded, or
    /// missing. Stats the cache files (as `availability()`); never waits for the network.
    public func partStates() -> [PartMap.State] {
        condition.lock()
        let downloading = state.parts.downloadingKeys
        condition.unlock()
        var known: [Checksum: PartMap.State] = [:]
        return template.parts.enumerated().map { i, part in
            guard part.length > 0 else { return .local }
            if let s = known[part.checksum] { return s }
            let s: PartMap.State
            if local?.isLocallyAvailable(i) == true {
                s = .local
            } else if cache?.contains(part.checksum, length: part.length) == true || memoryParts.value(for: part.checksum) != nil {
                s = .cached
            } else {
                s = downloading.contains(part.checksum) ? .inFlight : .missing
            }
            known[part.checksum] = s
            return s
        }
    }
}
