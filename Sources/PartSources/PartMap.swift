import ImageAssembly
import JigdoFormat

/// Where each byte of an image is now, for `jigdofs status --map`: runs of equal state in image
/// order (adjacent runs differ, together they cover the image exactly), and the bytes and parts
/// of each state. Made by the daemon from the part table each time the status file is opened.
///
/// Bounded whatever the part count: an image of 50,000 parts has some 100,000 stretches (a
/// part, then the padding after it in the template), so past `maxRuns` runs the image is cut
/// into `maxRuns` equal buckets, each with the state that `cells` gives it, and equal neighbours
/// merged (`bucketBytes` then says how coarse it is). The figures `bytes` and `parts` are exact.
public struct PartMap: Codable, Sendable, Equatable {
    /// From least to most in need of attention (the order of `rank`).
    public enum State: String, Codable, Sendable, CaseIterable {
        /// Bytes held in the template (directories, boot blocks, padding): always there.
        case template
        /// A part readable from local files (`--scan`, `--map`, `file:` locations, old images).
        case local
        /// A part in the download cache (or kept in memory when the cache cannot be written).
        case cached
        /// A part that a read would have to download.
        case missing
        /// A part being downloaded now (or waiting for a retry, or for another image's
        /// download of the same part).
        case inFlight

        /// A cell (or a bucket) covering several states shows the one of highest rank: what
        /// still needs the network first, then what is cached, local, template. One byte of a
        /// missing part makes its cell missing, so a line with no `_` or `>` needs nothing.
        /// For tables indexed by state: `rank`, which is also the position in `allCases`.
        var index: Int { rank }

        public var rank: Int {
            switch self {
            case .template: 0
            case .local: 1
            case .cached: 2
            case .missing: 3
            case .inFlight: 4
            }
        }
    }

    public struct Run: Codable, Sendable, Equatable {
        public var offset: Int64
        public var length: Int64
        public var state: State

        public init(offset: Int64, length: Int64, state: State) {
            self.offset = offset
            self.length = length
            self.state = state
        }
    }

    public static let maxRuns = 1024

    public var runs: [Run]
    /// nil: one run per stretch of equal state; else the runs were made of buckets of about
    /// this many bytes.
    public var bucketBytes: Int64?
    /// Image bytes per state (`State.rawValue`; a part the image holds twice counts twice).
    public var bytes: [String: Int64]
    /// Distinct parts (by checksum, with bytes) per part state (no `template` key).
    public var parts: [String: Int]

    /// - Parameters:
    ///   - states: the state of each part (index into `template.parts`).
    ///   - groups: `template.parts.checksumGroups()` (computed when nil).
    public init(template: TemplateInfo, states: [State], groups: ChecksumGroups? = nil, maxRuns: Int = PartMap.maxRuns) {
        let groups = groups ?? template.parts.checksumGroups()
        var runs: [Run] = []
        // Per state (`State.allCases` order), then keyed by name once.
        var byteCounts = [Int64](repeating: 0, count: State.allCases.count)
        var partCounts = [Int](repeating: 0, count: State.allCases.count)
        for entry in template.layout where entry.length > 0 {
            let state: State
            switch entry.source {
            case .templateData:
                state = .template
            case .part(let i):
                state = states[i]
                // The layout is in part order: a checksum's first part is its first area.
                if groups.isFirst(i) { partCounts[state.index] += 1 }
            }
            byteCounts[state.index] += entry.length
            if let last = runs.last, last.state == state, last.offset + last.length == entry.imageOffset {
                runs[runs.count - 1].length += entry.length
            } else {
                runs.append(Run(offset: entry.imageOffset, length: entry.length, state: state))
            }
        }
        var bytes: [String: Int64] = [:]
        var parts: [String: Int] = [:]
        for state in State.allCases {
            if byteCounts[state.index] > 0 { bytes[state.rawValue] = byteCounts[state.index] }
            if partCounts[state.index] > 0 { parts[state.rawValue] = partCounts[state.index] }
        }
        self.bytes = bytes
        self.parts = parts
        let size = template.imageLength
        if runs.count > maxRuns, maxRuns > 0 {
            let cells = Self.cells(runs, size: size, count: maxRuns)
            var coarse: [Run] = []
            for (i, state) in cells.enumerated() {
                let start = Self.cellStart(i, size: size, count: maxRuns)
                let end = Self.cellStart(i + 1, size: size, count: maxRuns)
                guard end > start else { continue }
                if let last = coarse.last, last.state == state {
                    coarse[coarse.count - 1].length += end - start
                } else {
                    coarse.append(Run(offset: start, length: end - start, state: state))
                }
            }
            self.runs = coarse
            self.bucketBytes = (size + Int64(maxRuns) - 1) / Int64(maxRuns)
        } else {
            self.runs = runs
            self.bucketBytes = nil
        }
    }

    /// Where cell `i` of `count` equal cells over `size` bytes starts.
    public static func cellStart(_ i: Int, size: Int64, count: Int) -> Int64 {
        // size * i / count without overflow (size up to 2^63 / count).
        let c = Int64(count), n = Int64(i)
        return size / c * n + size % c * n / c
    }

    /// The state of each of `count` equal cells over an image of `size` bytes: the highest
    /// `rank` among the runs overlapping the cell (a cell narrower than a byte shows the byte
    /// it starts at). `runs` are in image order.
    public static func cells(_ runs: [Run], size: Int64, count: Int) -> [State] {
        guard count > 0 else { return [] }
        guard size > 0, !runs.isEmpty else { return Array(repeating: .template, count: count) }
        var out: [State] = []
        out.reserveCapacity(count)
        var j = 0
        for i in 0..<count {
            let start = cellStart(i, size: size, count: count)
            let end = max(cellStart(i + 1, size: size, count: count), start + 1)
            while j < runs.count - 1, runs[j].offset + runs[j].length <= start { j += 1 }
            var state = runs[j].state
            var k = j + 1
            while k < runs.count, runs[k].offset < end {
                if runs[k].state.rank > state.rank { state = runs[k].state }
                k += 1
            }
            out.append(state)
        }
        return out
    }
}

/// A part source that can tell each part's state (downloads, the cache), for `status --map`.
public protocol PartStateProvider: Sendable {
    /// The state of each part of the image (index into its template's parts); never `.template`.
    func partStates() -> [PartMap.State]
    /// The same, each checksum's state found once (for its first part) and given to its other
    /// parts; parts of length 0 are `.local`.
    func partStates(groups: ChecksumGroups) -> [PartMap.State]
}

extension PartStateProvider {
    public func partStates(groups: ChecksumGroups) -> [PartMap.State] { partStates() }
}

/// What a status report takes from one image: each part's state, the figures and the map,
/// from one pass over the parts.
public struct PartReport: Sendable {
    public var groups: ChecksumGroups
    public var states: [PartMap.State]
    public var statistics: PartStatistics
    public var map: PartMap
}

extension ImageReader {
    /// Each part's state: from the source itself when it can tell, else local or missing by
    /// `isLocallyAvailable`.
    public func partStates() -> [PartMap.State] {
        if let provider = parts as? any PartStateProvider { return provider.partStates() }
        return info.parts.indices.map { parts.isLocallyAvailable($0) ? .local : .missing }
    }

    /// The image's map (see `PartMap`); `states` from `partStates()`.
    public func partMap(states: [PartMap.State], maxRuns: Int = PartMap.maxRuns) -> PartMap {
        PartMap(template: info, states: states, maxRuns: maxRuns)
    }

    /// States, figures and map for a status report: the parts grouped by checksum once, each
    /// checksum's state found once (a source that provides both states and figures derives the
    /// figures from the states).
    public func partReport(maxRuns: Int = PartMap.maxRuns) -> PartReport {
        let groups = info.parts.checksumGroups()
        let states: [PartMap.State]
        if let provider = parts as? any PartStateProvider {
            states = provider.partStates(groups: groups)
        } else {
            states = info.parts.indices.map { parts.isLocallyAvailable($0) ? .local : .missing }
        }
        let statistics: PartStatistics
        if let provider = parts as? any PartStatisticsProvider {
            statistics = provider.statistics(template: info, states: states, groups: groups)
        } else {
            statistics = partStatistics()
        }
        return PartReport(groups: groups, states: states, statistics: statistics,
                          map: PartMap(template: info, states: states, groups: groups, maxRuns: maxRuns))
    }
}

/// The figures of several images mounted together (a release set): what they hold between
/// them, a part they share counted once.
public struct PartSetTotal: Codable, Sendable, Equatable {
    public var images: Int
    /// The images' sizes added up.
    public var size: Int64
    /// Distinct parts (by checksum, with bytes) in more than one image.
    public var partsShared: Int
    /// Distinct parts over the set (`partsTotal`, `partsLocal`, `partsCached`, `partsMissing`;
    /// `transfersInFlight`: distinct parts being downloaded), downloads added up over the
    /// images (each part is downloaded by one image); mirror failures, limits and rates once,
    /// as the images report them (the mount has one book of its mirrors, each image shows it).
    public var parts: PartStatistics
    /// Image bytes per state, added up over the images (as each image's `PartMap.bytes`).
    public var bytes: [String: Int64]
    /// Distinct parts over the set per state (as `PartMap.parts`); a part two images report
    /// differently (one has seen it arrive, the other not yet) counts by the more available.
    public var partsByState: [String: Int]

    public struct Member: Sendable {
        public var template: TemplateInfo
        public var states: [PartMap.State]
        public var statistics: PartStatistics
        public var map: PartMap
        public var groups: ChecksumGroups

        /// - Parameter groups: `template.parts.checksumGroups()` (computed when nil).
        public init(template: TemplateInfo, states: [PartMap.State], statistics: PartStatistics, map: PartMap,
                    groups: ChecksumGroups? = nil) {
            self.template = template
            self.states = states
            self.statistics = statistics
            self.map = map
            self.groups = groups ?? template.parts.checksumGroups()
        }
    }

    public init(_ members: [Member]) {
        /// Most available first: the state a part shared by images takes in the total.
        func availability(_ s: PartMap.State) -> Int {
            switch s {
            case .template, .local: 0
            case .cached: 1
            case .inFlight: 2
            case .missing: 3
            }
        }
        var stats = PartStatistics()
        var bytes: [String: Int64] = [:]
        size = 0
        for m in members {
            size += m.template.imageLength
            for (k, v) in m.map.bytes { bytes[k, default: 0] += v }
            let p = m.statistics
            stats.bytesDownloaded += p.bytesDownloaded
            // One book per mount: every image reports the same counts (a later one maybe more).
            stats.failuresByMirror.merge(p.failuresByMirror, uniquingKeysWith: max)
            stats.failuresByLocation.merge(p.failuresByLocation, uniquingKeysWith: max)
            stats.transfersAllowedByLocation.merge(p.transfersAllowedByLocation, uniquingKeysWith: max)
            stats.speedByLocation.merge(p.speedByLocation, uniquingKeysWith: max)
        }
        // The union of the images' distinct parts: each image's list is sorted by checksum, so
        // one merge pass meets every checksum once, with the images that hold it.
        var byStateCounts = [Int](repeating: 0, count: PartMap.State.allCases.count)
        var total = 0
        var shared = 0
        // Each image's next distinct part and its checksum (nil when its list is done): the
        // members' arrays are read only when a cursor moves.
        let lists = members.map { (parts: $0.template.parts, distinct: $0.groups.distinct, states: $0.states) }
        var cursor = [Int](repeating: 0, count: lists.count)
        func head(_ j: Int) -> Checksum? {
            cursor[j] < lists[j].distinct.count ? lists[j].parts.checksum(Int(lists[j].distinct[cursor[j]])) : nil
        }
        var heads = lists.indices.map(head)
        while true {
            var lowest: Checksum?
            for h in heads { if let h, lowest == nil || h < lowest! { lowest = h } }
            guard let sum = lowest else { break }
            var state: PartMap.State?
            var images = 0
            for j in heads.indices where heads[j] == sum {
                let s = lists[j].states[Int(lists[j].distinct[cursor[j]])]
                if let u = state { state = availability(s) < availability(u) ? s : u } else { state = s }
                images += 1
                cursor[j] += 1
                heads[j] = head(j)
            }
            byStateCounts[state!.index] += 1
            total += 1
            if images > 1 { shared += 1 }
        }
        var byState: [String: Int] = [:]
        for s in PartMap.State.allCases where byStateCounts[s.index] > 0 { byState[s.rawValue] = byStateCounts[s.index] }
        stats.partsTotal = total
        stats.partsLocal = byState[PartMap.State.local.rawValue] ?? 0
        stats.partsCached = byState[PartMap.State.cached.rawValue] ?? 0
        stats.transfersInFlight = byState[PartMap.State.inFlight.rawValue] ?? 0
        stats.partsMissing = stats.partsTotal - stats.partsLocal - stats.partsCached
        images = members.count
        partsShared = shared
        parts = stats
        self.bytes = bytes
        partsByState = byState
    }
}
