/// How many transfers each mirror location may run at once, adapted to what the location
/// delivers: a value type with no I/O and no clock of its own (times are passed in), so unit
/// tests drive it with a fake clock. It lives in the process's `MirrorBook` (beside the
/// mirrors' health and redirects); `HTTPDownloader` asks it before starting a transfer and tells
/// it when one starts and ends, under the book's lock.
///
/// Per location (the URL prefix a label expands to; a host for other fetches):
///
///     growing --period, held back, rate >= growth x last rate--> growing, limit x 2 (up to the cap)
///     growing --period, held back, rate below that--> holding, back to the limit before
///     holding --its hold passed, period, held back--> growing, limit x 2 (up to the cap)
///     any --stall, or 429/503 (too many requests)--> holding, limit / 2 (at least 1)
///     any --period at 80% of --limit-rate--> holding, the limit kept, no more tries
///
/// A hold lasts `reprobeAfter` (2 s), twice as long after each hold that a try did not end,
/// up to `reprobeAfterMax` (32 s); a growth that helped starts over at 2 s.
///
/// A period ends once it was busy (some transfer running) for `minimumPeriod` and saw at least
/// twice `limit` transfers end. After a change of the limit (and at a location's first
/// transfers, its connections being set up) a warm-up comes first and is not compared: it ends
/// once the transfers running at the change and `limit` more have ended. Transfers started
/// under the old limit end in it, which made single periods too noisy to judge (a doubling
/// judged "no better" and stepped back on a link it would have filled). A period's rate (bytes
/// that arrived in it, `received` and `ended`, per second of busy time: a reader's pause is not
/// a slow mirror) is compared only when the limit was the reason a transfer waited ("held
/// back"): a location that is asked for less than its limit allows has shown nothing about more
/// connections. The cap is the smaller of the polite
/// per-host cap (`--max-per-host`, also bounding a host's locations together) and the global
/// ceiling (`--jobs`, which `HTTPDownloader` enforces over all locations). Transfers a reader
/// waits for may exceed a location's and a host's limit by `demandExtra`, as they may the
/// global one, so a read never queues behind a full window of read-ahead.
public struct ConcurrencyGovernor: Sendable, Equatable {
    public struct Settings: Sendable, Equatable {
        /// Transfers a location starts with: half the default cap. From 8, the two periods
        /// of growth to 32 cost a 20 ms link about 0.5 s at a quarter to half of its requests
        /// (the bench's read took 2-3% longer; at 0 ms and on the shaped 30 ms link 16 was as
        /// fast or faster too).
        public var initial = 16
        /// Transfers at once to one host (all its locations together), the polite cap.
        public var perHost = 32
        /// Transfers at once overall (`--jobs`).
        public var ceiling = 32
        /// Extra transfers allowed for reads that wait.
        public var demandExtra = 2
        /// A period lasts at least this long (nanoseconds) ...
        public var minimumPeriod: UInt64 = 300_000_000
        /// ... and a growth counts when the rate rose by at least this factor.
        public var growth = 1.10
        /// A holding location tries more transfers again after this long (nanoseconds) the
        /// first time; each try that brings nothing more doubles the wait, up to
        /// `reprobeAfterMax`; a growth that helps starts it over. Why: single periods are
        /// noisy (parts of different sizes, a shaped link's bursts), and a doubling that
        /// helped can be judged "no better" (8 -> 16 on the shaped 30 ms bench link, in about
        /// half the runs). With a fixed 10 s that cost 10 s at half the rate (11.6 s reads took
        /// 18 s); now it costs 2 s, while a mirror that more transfers do not help is asked
        /// for them ever more rarely (2, 6, 14, 30, 62 s after the first hold, then every 32 s).
        public var reprobeAfter: UInt64 = 2_000_000_000
        public var reprobeAfterMax: UInt64 = 32_000_000_000
        /// All downloads together are held to this rate (`--limit-rate`, bytes/s; 0: none). A
        /// location that already gets 80% of it is neither grown nor tried with more: more
        /// connections would only fill their receive buffers ahead of the limit.
        public var rateCeiling: Double = 0

        public init() {}

        /// The most transfers one location may be given.
        public var cap: Int { max(1, min(perHost, ceiling)) }
    }

    public enum Phase: Sendable, Equatable {
        case growing
        case holding(since: UInt64)
    }

    public struct Location: Sendable, Equatable {
        public internal(set) var limit: Int
        public internal(set) var phase: Phase = .growing
        public internal(set) var running = 0
        /// The limit before the last growth (to step back to when more made it slower).
        var previousLimit: Int
        /// The rate of the last period that counted, bytes per second.
        public internal(set) var lastRate: Double?
        /// Busy time of the period (some transfer running) before `busySince`, nanoseconds.
        var periodBusy: UInt64 = 0
        /// Since when transfers run without a pause (nil: none runs).
        var busySince: UInt64?
        var periodBytes: Int64 = 0
        var periodEnded = 0
        var heldBack = false
        /// Transfers still to end before the warm-up is over (0: a period that is compared).
        var warmUpLeft = 0
        /// How long the current hold lasts, and the next one will (nanoseconds; 0: take
        /// `reprobeAfter`).
        var hold: UInt64 = 0
        var nextHold: UInt64 = 0
    }

    public let settings: Settings
    public private(set) var locations: [String: Location] = [:]
    public private(set) var runningByHost: [String: Int] = [:]

    public init(settings: Settings = Settings()) {
        self.settings = settings
    }

    /// The transfers `location` may run at once now.
    public func limit(_ location: String) -> Int {
        locations[location]?.limit ?? min(settings.initial, settings.cap)
    }

    /// Whether a transfer of `location` on `host` may start now (the global ceiling aside).
    /// A `false` for a read-ahead or a demand transfer counts as the limit holding work back.
    public mutating func mayStart(_ location: String, host: String, demand: Bool) -> Bool {
        let extra = demand ? settings.demandExtra : 0
        let loc = locations[location] ?? newLocation()
        if (runningByHost[host] ?? 0) >= settings.perHost + extra { return false }
        if loc.running >= loc.limit + extra {
            locations[location, default: loc].heldBack = true
            return false
        }
        return true
    }

    public mutating func started(_ location: String, host: String, now: UInt64) {
        var loc = locations[location] ?? newLocation()
        if loc.running == 0 { loc.busySince = now }
        loc.running += 1
        locations[location] = loc
        runningByHost[host, default: 0] += 1
    }

    /// `bytes` arrived for transfers of `location` (counted in the rate of the period they
    /// arrive in). Rates measured by the bytes of the transfers that ended in a period were
    /// noisy with parts of very different sizes: one large part ending, or still running,
    /// swung a 0.3 s period's rate by half, and doublings that helped were judged "no better"
    /// (8 -> 16 on a 30 ms, 100 MB/s link: held at 8 for 10 s, a 11.6 s read took 18 s).
    public mutating func received(_ location: String, bytes: Int64) {
        guard bytes > 0, locations[location] != nil else { return }
        locations[location]!.periodBytes += bytes
    }

    /// A transfer ended having received `bytes` (those not told by `received` yet).
    /// `congestion`: it stalled, or the server said it has too many requests (429, 503): the
    /// location's limit is halved. `measured` false: it never reached the network (its slot
    /// is only given back). Returns the new limit when it changed (for the log).
    @discardableResult
    public mutating func ended(_ location: String, host: String, bytes: Int64, congestion: Bool = false,
                               measured: Bool = true, now: UInt64) -> Int? {
        if let n = runningByHost[host] { runningByHost[host] = n > 1 ? n - 1 : nil }
        guard var loc = locations[location] else { return nil }
        defer { locations[location] = loc }
        loc.running = max(0, loc.running - 1)
        // Only busy time counts: a pause of the reader is not a slow mirror.
        var busy = loc.periodBusy
        if let since = loc.busySince, now >= since { busy += now - since }
        if loc.running == 0 {
            loc.periodBusy = busy
            loc.busySince = nil
        }
        guard measured else { return nil }
        let before = loc.limit
        if congestion {
            loc.limit = max(1, loc.limit / 2)
            loc.previousLimit = loc.limit
            startHold(&loc, now: now)
            loc.lastRate = nil
            loc.warmUpLeft = loc.running + loc.limit
            Self.newPeriod(&loc, now: now)
            return loc.limit != before ? loc.limit : nil
        }
        loc.periodBytes += max(0, bytes)
        loc.periodEnded += 1
        if loc.warmUpLeft > 0 {
            // Over once the transfers running at the change and `limit` more have ended: those
            // of the limit before are done and the new connections are set up. Not timed: two
            // warm-ups of at least 300 ms each made the ramp from 8 to 32 take 1.2 s or more.
            loc.warmUpLeft -= 1
            if loc.warmUpLeft == 0 { Self.newPeriod(&loc, now: now) }
            return nil
        }
        guard busy >= settings.minimumPeriod, loc.periodEnded >= 2 * loc.limit else { return nil }
        let rate = Double(loc.periodBytes) / (Double(busy) / 1e9)
        let atCeiling = settings.rateCeiling > 0 && rate >= 0.8 * settings.rateCeiling
        if atCeiling {
            // The rate limit binds: stay, and do not try more later either.
            loc.lastRate = rate
            if case .growing = loc.phase { startHold(&loc, now: now) } else { loc.phase = .holding(since: now) }
        } else if loc.heldBack {
            switch loc.phase {
            case .growing:
                if let last = loc.lastRate, rate < last * settings.growth {
                    // More transfers did not bring (enough) more: back to the limit before,
                    // and hold there. The mirror is not asked for connections that do not help.
                    loc.limit = loc.previousLimit
                    loc.lastRate = max(last, rate)
                    startHold(&loc, now: now)
                } else {
                    if loc.lastRate != nil { loc.nextHold = settings.reprobeAfter }
                    loc.lastRate = rate
                    loc.previousLimit = loc.limit
                    loc.limit = min(settings.cap, loc.limit * 2)
                }
            case .holding(let since):
                if now >= since, now - since >= loc.hold, loc.limit < settings.cap {
                    loc.lastRate = rate
                    loc.previousLimit = loc.limit
                    loc.limit = min(settings.cap, loc.limit * 2)
                    loc.phase = .growing
                }
            }
        }
        if loc.limit != before { loc.warmUpLeft = loc.running + loc.limit }
        Self.newPeriod(&loc, now: now)
        return loc.limit != before ? loc.limit : nil
    }

    /// Holds the limit for the next hold's length; the one after lasts twice as long.
    private func startHold(_ loc: inout Location, now: UInt64) {
        loc.phase = .holding(since: now)
        loc.hold = loc.nextHold > 0 ? loc.nextHold : settings.reprobeAfter
        loc.nextHold = min(settings.reprobeAfterMax, max(loc.hold, 1) * 2)
    }

    private func newLocation() -> Location {
        let first = min(settings.initial, settings.cap)
        return Location(limit: first, previousLimit: first, warmUpLeft: first)
    }

    private static func newPeriod(_ loc: inout Location, now: UInt64) {
        loc.periodBusy = 0
        if loc.busySince != nil { loc.busySince = now }
        loc.periodBytes = 0
        loc.periodEnded = 0
        loc.heldBack = false
    }
}
