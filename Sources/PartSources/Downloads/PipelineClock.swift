import Dispatch

/// The time as `PartPipeline` reads it, and its delays: a retry's wait, the poll of a part
/// another process is downloading. Mirror health and remembered redirects are stamped with
/// `now()`. The unit tests pass a clock that stands still until they move it.
public protocol PipelineClock: Sendable {
    /// Nanoseconds on a monotonic clock.
    func now() -> UInt64
    /// Runs `work` once `seconds` have passed, on another thread (never the caller's).
    func runAfter(_ seconds: Double, _ work: @escaping @Sendable () -> Void)
}

/// The system's monotonic clock and the global dispatch queue.
public struct SystemClock: PipelineClock {
    public init() {}

    public func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    public func runAfter(_ seconds: Double, _ work: @escaping @Sendable () -> Void) {
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds, execute: work)
    }
}
