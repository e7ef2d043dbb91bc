import Foundation

/// Settings of the transfer engine (`--jobs`, `--cacert`, timeouts).
public struct DownloadConfig: Sendable {
    /// Transfers running at once at most (`--jobs`), the ceiling over all mirrors; transfers a
    /// reader waits for may use two more. Each mirror location starts with
    /// `initialPerLocation` and is given more while its throughput grows (`ConcurrencyGovernor`).
    public var jobs = 32
    public var initialPerLocation = 16
    /// Seconds to wait for a connection to be set up.
    public var connectTimeout: Double = 15
    /// A transfer slower than `lowSpeedLimit` bytes/s for `lowSpeedTime` seconds is aborted
    /// (this also catches a server that accepts the connection and then never answers).
    public var lowSpeedLimit = 1024
    public var lowSpeedTime = 20
    public var maxRedirects = 10
    /// A CA bundle to trust instead of the system store (`--cacert`).
    public var caFile: String?
    public var userAgent = "jigdofs/0.1"
    /// Attempts per location for errors that may go away (timeouts, resets, 5xx, short bodies).
    public var attemptsPerLocation = 3
    /// Delay before the first retry of a location; doubled for each further one.
    public var retryDelay: Double = 0.5
    /// All transfers together at most this many bytes/s (`--limit-rate`); 0: no limit.
    public var limitRate: Int64 = 0
    /// Transfers to one host at once (`--max-per-host`), the polite cap the growth stops at.
    public var maxPerHost = 32
    /// Credentials from ~/.netrc, or from `netrcFile` (`--netrc`, `--netrc-file`).
    public var netrc = false
    public var netrcFile: String?

    public init() {}
}
