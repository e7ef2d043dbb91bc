/// The decisions of one part's download, as a value type with no I/O: which location to ask,
/// when to retry it, when to restart from byte 0, when to fall back to memory, when to move to
/// the next location and when to give up. `PartPipeline` feeds it the outcome of each transfer
/// (an event) and carries out the step it returns (an action) after its lock is released;
/// unit tests feed it fake outcomes.
///
///     start --> fetch(url[0])
///     fetch --match--> succeeded
///     fetch --mismatch of a resumed file--> fetch(same url, from 0)            (once)
///     fetch --range refused--> fetch(same url, from 0)                        (once)
///     fetch --transient error--> retry(same url, after d), d = delay * 2^(n-1) (attempts-1 times)
///     fetch --stall--> next location, the mirror demoted at once
///     fetch --cache cannot be written--> memory(same url)
///     fetch --any other failure, or retries used up--> next location
///     next location --none left--> giveUp(every URL and why)
///     fetch --cancelled--> giveUp
///     fetch --remembered redirect target failed--> fetch(same url)          (once a location:
///                                                  the pipeline forgot the redirect, the
///                                                  location's own server is asked again)
public struct DownloadWalk: Sendable, Equatable {
    public let urls: [String]
    public let attemptsPerLocation: Int
    /// Seconds before the first retry of a location; doubled for each further one.
    public let retryDelay: Double
    public private(set) var index = 0
    public private(set) var tries = 0
    public private(set) var restartedFromZero = false
    /// The location's remembered redirect target failed, and the location was asked again.
    public private(set) var redirectForgotten = false
    /// The last response may have spoiled its connection: ask for a new one.
    public private(set) var freshConnect = false
    public private(set) var errors: [String] = []

    public init(urls: [String], attemptsPerLocation: Int, retryDelay: Double) {
        self.urls = urls
        self.attemptsPerLocation = max(1, attemptsPerLocation)
        self.retryDelay = retryDelay
    }

    /// The location being tried (nil once all are used up).
    public var currentURL: String? { index < urls.count ? urls[index] : nil }

    /// What a transfer (or the check of its bytes) ended with.
    public enum Outcome: Sendable, Equatable {
        /// The body arrived; `matches`: its checksum is the part's; `resumed`: the file began
        /// with bytes of an earlier transfer.
        case transferred(matches: Bool, resumed: Bool)
        case failed(TransferError.Reason, stall: Bool, transient: Bool, spoilsConnection: Bool)
        /// The transfer went to a remembered redirect target (not to the location itself),
        /// and failed with this.
        case redirectTargetFailed(TransferError.Reason, stall: Bool, transient: Bool, spoilsConnection: Bool)

        public static func failed(_ e: TransferError) -> Outcome {
            .failed(e.reason, stall: e.isStall, transient: e.isTransient, spoilsConnection: e.spoilsConnection)
        }

        public static func redirectTargetFailed(_ e: TransferError) -> Outcome {
            .redirectTargetFailed(e.reason, stall: e.isStall, transient: e.isTransient, spoilsConnection: e.spoilsConnection)
        }
    }

    public enum Action: Sendable, Equatable {
        /// Start a transfer of the current URL; `fromZero`: drop the partial file first.
        case fetch(url: String, fromZero: Bool)
        /// Start it again after `after` seconds (keep the partial file: it resumes).
        case retry(url: String, after: Double)
        /// The cache cannot take the part: fetch it into memory from this URL.
        case memory(url: String)
        case succeeded
        /// Every location failed; `errors` names each URL and why.
        case giveUp(errors: [String])
    }

    /// An action, and what it says about the mirror that was just asked.
    public struct Step: Sendable, Equatable {
        public var action: Action
        /// The URL whose mirror is to blame for a failure (counted against its location).
        public var blame: String?
        /// Demote that mirror at once (it stalled).
        public var demote = false
        /// The URL that just served the part (its mirror's failures in a row are forgotten).
        public var credit: String?

        public init(action: Action, blame: String? = nil, demote: Bool = false, credit: String? = nil) {
            self.action = action
            self.blame = blame
            self.demote = demote
            self.credit = credit
        }
    }

    public mutating func start() -> Step {
        guard let url = currentURL else { return Step(action: .giveUp(errors: errors)) }
        return Step(action: .fetch(url: url, fromZero: false))
    }

    public mutating func handle(_ outcome: Outcome) -> Step {
        guard let url = currentURL else { return Step(action: .giveUp(errors: errors)) }
        switch outcome {
        case .transferred(matches: true, _):
            return Step(action: .succeeded, credit: url)
        case .transferred(matches: false, resumed: true) where !restartedFromZero:
            // The first bytes may have come from another mirror or an older attempt.
            restartedFromZero = true
            return Step(action: .fetch(url: url, fromZero: true))
        case .transferred(matches: false, _):
            return next(failed: "\(url): wrong checksum", blame: true)
        case .redirectTargetFailed where !redirectForgotten:
            // The target is to blame, not the location: ask the location's server again.
            redirectForgotten = true
            return Step(action: .fetch(url: url, fromZero: false))
        case .redirectTargetFailed(let reason, let stall, let transient, let spoils):
            // Again (learned anew meanwhile): a failure of the location like any other.
            return handle(.failed(reason, stall: stall, transient: transient, spoilsConnection: spoils))
        case .failed(let reason, let stall, let transient, let spoils):
            if spoils { freshConnect = true }
            switch reason {
            case .rangeRefused where !restartedFromZero:
                restartedFromZero = true
                return Step(action: .fetch(url: url, fromZero: true))
            case .diskFull:
                return Step(action: .memory(url: url))
            case .cancelled:
                errors.append("\(url): \(TransferError(reason: reason))")
                index = urls.count
                return Step(action: .giveUp(errors: errors))
            default:
                break
            }
            if stall {
                var step = next(failed: "\(url): \(TransferError(reason: reason))", blame: true)
                step.demote = true
                return step
            }
            tries += 1
            if transient && tries < attemptsPerLocation {
                return Step(action: .retry(url: url, after: retryDelay * Double(1 << min(tries - 1, 6))))
            }
            return next(failed: "\(url): \(TransferError(reason: reason))", blame: true)
        }
    }

    /// The current location failed for a reason that is not the mirror's (e.g. the memory
    /// fallback cannot hold the part): move on without blaming it.
    public mutating func skip(_ why: String) -> Step {
        guard let url = currentURL else { return Step(action: .giveUp(errors: errors)) }
        return next(failed: "\(url): \(why)", blame: false)
    }

    private mutating func next(failed: String, blame: Bool) -> Step {
        let url = currentURL
        errors.append(failed)
        index += 1
        tries = 0
        redirectForgotten = false
        let action: Action = currentURL.map { .fetch(url: $0, fromZero: false) } ?? .giveUp(errors: errors)
        return Step(action: action, blame: blame ? url : nil)
    }
}

/// Failures per mirror location (the URL prefix a label expands to) and which locations go
/// last for now: a value type with an explicit clock (`now`, nanoseconds of any monotonic
/// clock), so tests drive it with a fake one.
public struct MirrorHealth: Sendable {
    /// This many failures in a row demote a location ...
    public var threshold = 3
    /// ... for this long after its last failure.
    public var penalty: UInt64 = 300 * 1_000_000_000
    public private(set) var failures: [String: Int] = [:]
    private var inARow: [String: (count: Int, last: UInt64)] = [:]

    public init() {}

    public mutating func noteFailure(_ location: String, now: UInt64, demote: Bool) {
        failures[location, default: 0] += 1
        let count = (inARow[location]?.count ?? 0) + 1
        inARow[location] = (demote ? max(count, threshold) : count, now)
    }

    public mutating func noteSuccess(_ location: String) {
        inARow[location] = nil
    }

    public func isDemoted(_ location: String, now: UInt64) -> Bool {
        guard let e = inARow[location], e.count >= threshold else { return false }
        // No subtraction: a failure may be stamped after `now` by another thread.
        return now < e.last + penalty
    }

    /// `urls` in their order, except that those of demoted locations go last.
    public func order(_ urls: [String], now: UInt64, location: (String) -> String) -> [String] {
        guard urls.count > 1, !inARow.isEmpty else { return urls }
        let bad = urls.map { isDemoted(location($0), now: now) }
        return urls.indices.filter { !bad[$0] }.map { urls[$0] } + urls.indices.filter { bad[$0] }.map { urls[$0] }
    }

    // MARK: several mirrors at once, by measured speed

    /// What each location is doing: bytes asked for and not yet received, and its throughput
    /// (all its transfers together, bytes per second: an exponentially weighted mean of what
    /// each busy interval delivered).
    struct Load: Sendable {
        var outstanding: Int64 = 0
        var transfers = 0
        var rate: Double?
        /// Start of the busy interval not yet measured, and the bytes received in it.
        var since: UInt64 = 0
        var received: Int64 = 0
    }
    private var load: [String: Load] = [:]
    /// Intervals shorter than this (ns) are added to the next one: too short to measure.
    public var minimumSample: UInt64 = 50_000_000

    /// A transfer of `bytes` from `location` starts.
    public mutating func noteStarted(_ location: String, bytes: Int64, now: UInt64) {
        var l = load[location] ?? Load()
        if l.transfers == 0 {
            l.since = now
            l.received = 0
        }
        l.transfers += 1
        l.outstanding += bytes
        load[location] = l
    }

    /// A transfer from `location` that asked for `bytes` ended, having received `received`.
    public mutating func noteEnded(_ location: String, bytes: Int64, received: Int64, now: UInt64) {
        guard var l = load[location], l.transfers > 0 else { return }
        l.transfers -= 1
        l.outstanding = max(0, l.outstanding - bytes)
        l.received += max(0, received)
        // No subtraction that can wrap: another thread may stamp `since` after `now`.
        if now > l.since, now - l.since >= minimumSample, l.received > 0 {
            let sample = Double(l.received) / (Double(now - l.since) / 1e9)
            l.rate = l.rate.map { 0.7 * $0 + 0.3 * sample } ?? sample
            l.since = now
            l.received = 0
        }
        load[location] = l
    }

    /// The measured throughput of a location (bytes per second), if any.
    public func rate(_ location: String) -> Double? { load[location]?.rate }

    /// The order to try `urls` (highest weight first, as the resolver gives them) for a part
    /// of `length` bytes: demoted locations last, and among the leading locations of the same
    /// weight, first the one expected to deliver the part soonest (what it still has to send,
    /// plus the part, over its measured speed). A location not measured yet counts as fast
    /// as the fastest one, so each gets work and is measured. The others keep their order as
    /// fallbacks. Locations of lower weight (`--try-last`) are never preferred to higher ones.
    public func order(_ urls: [(url: String, weight: Int)], length: Int64, now: UInt64,
                      location: (String) -> String) -> [String] {
        let plain = order(urls.map(\.url), now: now, location: location)
        guard plain.count > 1 else { return plain }
        let weight = Dictionary(urls.map { ($0.url, $0.weight) }, uniquingKeysWith: { a, _ in a })
        let lead = plain.prefix { weight[$0] == weight[plain[0]] && !isDemoted(location($0), now: now) }
        guard lead.count > 1 else { return plain }
        let fastest = lead.compactMap { load[location($0)]?.rate }.max() ?? 1
        func expected(_ url: String) -> Double {
            let l = load[location(url)]
            return Double((l?.outstanding ?? 0) + max(length, 1)) / max(l?.rate ?? fastest, 1)
        }
        // The first of the smallest: file order among equals.
        var best = lead.startIndex
        for i in lead.indices where expected(lead[i]) < expected(lead[best]) { best = i }
        var out = plain
        out.insert(out.remove(at: best), at: 0)
        return out
    }
}

/// The sequential streams among the reads of one image, so read-ahead follows each of them:
/// two `dd`s, or a USB write while someone browses, each get their own window. A value type;
/// the caller holds the lock.
public struct ReadStreams: Sendable {
    struct Stream {
        var last: Int
        var run: Int
        var frontier: Int
        var stamp: UInt64
    }
    private var streams: [Stream] = []
    private var clock: UInt64 = 0
    /// Streams followed at once; the least recently read is forgotten for a new one.
    public var maxStreams = 8

    public init() {}

    /// Notes a read of part `index`. A read at or up to two parts after a stream's last read
    /// continues it; two such steps make it sequential, and the parts from its frontier up to
    /// `windowEnd(index, run)` (exclusive; `run`: the stream's steps so far, for a window that
    /// grows with it) are returned to be fetched ahead (each part once).
    public mutating func note(_ index: Int, windowEnd: (_ index: Int, _ run: Int) -> Int) -> Range<Int>? {
        clock += 1
        var i: Int
        if let found = streams.firstIndex(where: { index >= $0.last && index <= $0.last + 2 }) {
            i = found
            streams[i].run += index == streams[i].last ? 0 : 1
            streams[i].last = index
            streams[i].stamp = clock
        } else {
            let fresh = Stream(last: index, run: 0, frontier: index + 1, stamp: clock)
            if streams.count < maxStreams {
                streams.append(fresh)
                i = streams.count - 1
            } else {
                i = streams.indices.min { streams[$0].stamp < streams[$1].stamp }!
                streams[i] = fresh
            }
        }
        guard streams[i].run >= 2 else { return nil }
        let start = max(streams[i].frontier, index + 1)
        let end = windowEnd(index, streams[i].run)
        guard end > start else { return nil }
        streams[i].frontier = end
        return start..<end
    }

    public var count: Int { streams.count }
}
