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
        /// Bytes received by transfers still running (the fetcher's, for every pipeline over
        /// it): not yet in `bytesDownloaded`.
        public var bytesArriving: Int64
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

    public func availability() -> Availability { classify(groups: template.parts.checksumGroups()).availability }

    /// One look at each distinct part (the first of its checksum), in the order a read would
    /// try them: local, cache file, memory, then in flight or missing; the other parts of a
    /// checksum take its state, parts of length 0 are `.local`.
    func classify(groups: ChecksumGroups) -> (states: [PartMap.State], availability: Availability) {
        let (downloading, inMemory) = event { ($0.fetchingKeys, $0.memoryKeys) }
        var a = Availability()
        let parts = template.parts
        let prefixes = cache?.prefixDirectories(parts.checksumKind)
        var states = [PartMap.State](repeating: .local, count: parts.count)
        for i in parts.indices {
            let first = Int(groups.first[i])
            guard first >= 0 else { continue }
            if first != i {
                states[i] = states[first]
                continue
            }
            let sum = parts.checksum(i)
            a.total += 1
            if local?.isLocallyAvailable(i) == true {
                a.local += 1
                states[i] = .local
            } else if prefixes?.mayHold(sum) != false, cache?.contains(sum, length: parts.length(i)) == true {
                a.cached += 1
                states[i] = .cached
            } else if inMemory.contains(Int32(i)) {
                a.inMemory += 1
                states[i] = .cached
            } else {
                a.missing += 1
                states[i] = downloading.contains(Int32(i)) ? .inFlight : .missing
            }
        }
        return (states, a)
    }

    public func statistics() -> Statistics {
        let failures = mirrors.withBook { ($0.failuresByHost, $0.health.failures) }
        condition.lock(); defer { condition.unlock() }
        let inFlight = state.table.fetching
        return Statistics(partsDownloaded: state.partsDownloaded, bytesDownloaded: state.bytesDownloaded,
                          bytesArriving: downloader?.bytesArriving ?? 0, downloading: inFlight, failuresByHost: failures.0,
                          failuresByLocation: failures.1)
    }
}

extension PartPipeline: PartStatisticsProvider {
    /// For `jigdofs status`: where the parts are now, and what the downloads did.
    public func statistics(template: TemplateInfo) -> PartStatistics {
        let groups = self.template.parts.checksumGroups()
        return statistics(template: template, states: classify(groups: groups).states, groups: groups)
    }

    /// The same from the states `partStates(groups:)` found (a part in flight counts as missing).
    public func statistics(template: TemplateInfo, states: [PartMap.State], groups: ChecksumGroups) -> PartStatistics {
        let s = statistics()
        var out = PartStatistics()
        for i in groups.distinct {
            out.partsTotal += 1
            switch states[Int(i)] {
            case .template, .local: out.partsLocal += 1
            case .cached: out.partsCached += 1
            case .missing, .inFlight: out.partsMissing += 1
            }
        }
        out.bytesDownloaded = s.bytesDownloaded
        out.transfersInFlight = s.downloading
        // The mount's figures (one book for all its images): `PartSetTotal` counts them once.
        let book = mirrors.withBook { $0.figures }
        out.failuresByMirror = book.failuresByHost
        out.failuresByLocation = book.failuresByLocation
        for (location, figures) in book.concurrency {
            out.transfersAllowedByLocation[location] = figures.limit
            if let rate = figures.rate { out.speedByLocation[location] = Int64(rate) }
        }
        return out
    }
}

extension PartPipeline: PartStateProvider {
    /// For `jigdofs status --map`: each part local, cached (or in memory), being downloaded, or
    /// missing. Stats the cache files (as `availability()`); never waits for the network.
    public func partStates() -> [PartMap.State] { partStates(groups: template.parts.checksumGroups()) }

    public func partStates(groups: ChecksumGroups) -> [PartMap.State] { classify(groups: groups).states }
}
