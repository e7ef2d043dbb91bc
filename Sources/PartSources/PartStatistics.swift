import ImageAssembly
import JigdoFormat

/// What an image's part sources hold and have done, for `jigdofs status`. Counts are of
/// distinct parts (by checksum): an image may hold the same file twice.
public struct PartStatistics: Codable, Sendable, Equatable {
    public var partsTotal = 0
    /// Readable from local files (scan, map, the jigdo's own local locations, old images).
    public var partsLocal = 0
    /// Readable from the download cache.
    public var partsCached = 0
    /// Neither local nor cached: a read would have to download them (or fail offline).
    public var partsMissing = 0
    public var bytesDownloaded: Int64 = 0
    public var transfersInFlight = 0
    /// Server (scheme://host) -> failed attempts. This and the mirror figures below are the
    /// mount's (one book of mirrors for all its images), the same in each image's report.
    public var failuresByMirror: [String: Int] = [:]
    /// Mirror location (the URL prefix a label expands to, e.g. http://host/debian/) -> failed
    /// attempts: two mirrors on one host are told apart, and each is demoted on its own.
    public var failuresByLocation: [String: Int] = [:]
    /// Mirror location -> transfers it may run at once now (grown while its throughput grew).
    public var transfersAllowedByLocation: [String: Int] = [:]
    /// Mirror location -> its throughput in the last period that counted, bytes per second.
    public var speedByLocation: [String: Int64] = [:]

    public init() {}

    /// The same, each mirror named with its password masked (what a status report shows); two
    /// logins to one location are added up.
    public func maskingPasswords() -> PartStatistics {
        func masked<V: AdditiveArithmetic>(_ d: [String: V]) -> [String: V] {
            Dictionary(d.map { (Passwords.masked(url: $0.key), $0.value) }, uniquingKeysWith: +)
        }
        var s = self
        s.failuresByMirror = masked(failuresByMirror)
        s.failuresByLocation = masked(failuresByLocation)
        s.transfersAllowedByLocation = masked(transfersAllowedByLocation)
        s.speedByLocation = masked(speedByLocation)
        return s
    }
}

/// A part source that knows more than `isLocallyAvailable` tells (e.g. a download store).
public protocol PartStatisticsProvider: Sendable {
    func statistics(template: TemplateInfo) -> PartStatistics
    /// The same with the parts' states already found (`PartStateProvider.partStates(groups:)`),
    /// so the counts come from them instead of a second look at every part.
    func statistics(template: TemplateInfo, states: [PartMap.State], groups: ChecksumGroups) -> PartStatistics
}

extension PartStatisticsProvider {
    public func statistics(template: TemplateInfo, states: [PartMap.State], groups: ChecksumGroups) -> PartStatistics {
        statistics(template: template)
    }
}

extension ImageReader {
    /// Statistics of this image's parts: from the source itself when it provides them, else
    /// counted through `isLocallyAvailable`.
    public func partStatistics() -> PartStatistics {
        if let provider = parts as? any PartStatisticsProvider {
            return provider.statistics(template: info)
        }
        var stats = PartStatistics()
        var seen = Set<Checksum>()
        for (i, part) in info.parts.enumerated() where seen.insert(part.checksum).inserted {
            stats.partsTotal += 1
            if parts.isLocallyAvailable(i) { stats.partsLocal += 1 } else { stats.partsMissing += 1 }
        }
        return stats
    }
}
