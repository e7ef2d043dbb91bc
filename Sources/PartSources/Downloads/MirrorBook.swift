import JigdoFormat
import Synchronization

/// What the process knows about its mirrors, in one value with no I/O and an explicit clock
/// (`now`: nanoseconds of a monotonic clock): the failures per host (for `status`), each mirror
/// location's health, load and speed (`MirrorHealth`: the order locations are tried in), the
/// redirects a redirector answered (asked again only after `redirectLifetime`), and how many
/// transfers each location may run at once (`ConcurrencyGovernor`: the fetcher's scheduling).
///
/// One book per process (`SharedMirrorBook`, under one lock), used by the fetcher and by every
/// image's `PartPipeline`: a mirror that fails for one image goes last for the others too, and
/// a redirect one image learned is asked by all. Callers work out a URL's location (the URL
/// less the part's path) before they take the lock, and log what a call returns after
/// releasing it. What a transfer does next (retry, next location, give up) is `DownloadWalk`'s
/// decision.
public struct MirrorBook: Sendable {
    /// How long a redirector's answer is remembered.
    public static let redirectLifetime: UInt64 = 600 * 1_000_000_000

    public private(set) var failuresByHost: [String: Int] = [:]
    /// Failures, load and speed per mirror location (URL prefix): a mirror that keeps failing
    /// (or stalls once) is tried last for a while. Per location, not per host: a broken mirror
    /// does not demote a good one on the same host.
    public private(set) var health = MirrorHealth()
    /// URL prefix -> the prefix it redirected to, and until when that is used instead.
    private var redirects: [String: (target: String, until: UInt64)] = [:]
    /// Transfers at once per location, grown and held by each location's period rate.
    public private(set) var governor: ConcurrencyGovernor

    public init(governor: ConcurrencyGovernor.Settings = ConcurrencyGovernor.Settings()) {
        self.governor = ConcurrencyGovernor(settings: governor)
    }

    /// A transfer from `location` (on `host`) failed; `demote`: at once (a stall).
    public mutating func noteFailure(location: String, host: String, now: UInt64, demote: Bool) {
        failuresByHost[host, default: 0] += 1
        health.noteFailure(location, now: now, demote: demote)
    }

    public mutating func noteSuccess(location: String) {
        health.noteSuccess(location)
    }

    public mutating func noteStarted(location: String, bytes: Int64, now: UInt64) {
        health.noteStarted(location, bytes: bytes, now: now)
    }

    public mutating func noteEnded(location: String, bytes: Int64, received: Int64, now: UInt64) {
        health.noteEnded(location, bytes: bytes, received: received, now: now)
    }

    /// Remembers that `from` redirected to `to`, as a mapping of their prefixes before the
    /// common tail (the part's path below the mirror root). Returns the mapping (to log), nil
    /// when there is none to keep (no common tail, the same prefix, a target not http(s)).
    public mutating func learnRedirect(from: String, to: String, now: UInt64) -> (from: String, to: String)? {
        let a = from.split(separator: "/", omittingEmptySubsequences: false)
        let b = to.split(separator: "/", omittingEmptySubsequences: false)
        var common = 0
        while common < a.count - 3 && common < b.count - 3 && a[a.count - 1 - common] == b[b.count - 1 - common] { common += 1 }
        guard common >= 1 else { return nil }
        let prefixA = a[0..<(a.count - common)].joined(separator: "/") + "/"
        let prefixB = b[0..<(b.count - common)].joined(separator: "/") + "/"
        guard prefixA != prefixB, isRemoteURL(prefixB) else { return nil }
        redirects[prefixA] = (prefixB, now + Self.redirectLifetime)
        return (prefixA, prefixB)
    }

    /// The URL to ask: a remembered redirect target (the longest prefix still valid), or `url`.
    public func applyRedirect(_ url: String, now: UInt64) -> String {
        guard !redirects.isEmpty else { return url }
        var best: (String, String)?
        for (prefix, r) in redirects where r.until > now && url.hasPrefix(prefix) {
            if best == nil || prefix.count > best!.0.count { best = (prefix, r.target) }
        }
        guard let (prefix, target) = best else { return url }
        return target + url.dropFirst(prefix.count)
    }

    /// The remembered target for `url` failed: ask the original server again.
    public mutating func forgetRedirect(for url: String) {
        for prefix in redirects.keys where url.hasPrefix(prefix) { redirects[prefix] = nil }
    }
}

// MARK: scheduling (the fetcher's), `ConcurrencyGovernor`
extension MirrorBook {
    /// Whether a transfer of `location` on `host` may start now (the global ceiling aside).
    public mutating func mayStart(_ location: String, host: String, demand: Bool) -> Bool {
        governor.mayStart(location, host: host, demand: demand)
    }

    public mutating func started(_ location: String, host: String, now: UInt64) {
        governor.started(location, host: host, now: now)
    }

    public mutating func received(_ location: String, bytes: Int64) {
        governor.received(location, bytes: bytes)
    }

    /// A transfer the fetcher started ended (see `ConcurrencyGovernor.ended`); the new limit
    /// when it changed, and the location's last period rate (for the log).
    public mutating func ended(_ location: String, host: String, bytes: Int64, congestion: Bool,
                               measured: Bool, now: UInt64) -> (limit: Int, rate: Double?)? {
        governor.ended(location, host: host, bytes: bytes, congestion: congestion, measured: measured, now: now)
            .map { ($0, governor.locations[location]?.lastRate) }
    }

    /// For `jigdofs status`: failures per host and per location, and per location the
    /// transfers it may run at once and its last period rate (bytes/s).
    public var figures: MirrorFigures {
        MirrorFigures(failuresByHost: failuresByHost, failuresByLocation: health.failures,
                      concurrency: governor.locations.mapValues { ($0.limit, $0.lastRate) })
    }
}

/// A copy of the book's figures for `status` (taken under its lock, read after).
public struct MirrorFigures: Sendable {
    public var failuresByHost: [String: Int]
    public var failuresByLocation: [String: Int]
    public var concurrency: [String: (limit: Int, rate: Double?)]
}

/// The one `MirrorBook` of a process, under one lock: the fetcher schedules by it (`mayStart`,
/// `started`, `received`, `ended`) and every image's pipeline notes and reads mirror health and
/// redirects in it. The lock is a leaf: `body` does no I/O, calls no libcurl function and no
/// callback, and takes no other lock.
public final class SharedMirrorBook: Sendable {
    private let book: Mutex<MirrorBook>

    public init(_ book: MirrorBook = MirrorBook()) {
        self.book = Mutex(book)
    }

    public func withBook<R: Sendable>(_ body: (inout MirrorBook) -> R) -> R {
        book.withLock { body(&$0) }
    }
}
