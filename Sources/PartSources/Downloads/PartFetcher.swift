import Foundation

/// How urgent a transfer is: a reader waits for it (`demand`), or it fetches ahead (`prefetch`).
public enum TransferPriority: Sendable { case demand, prefetch }

/// The transfer engine as `PartPipeline` sees it: transfers in, transport-neutral outcomes
/// out (`TransferSummary`, `TransferError`). `HTTPDownloader` (libcurl) is the one of a
/// mount; the unit tests drive the pipeline with a fake one and no network.
///
/// What an implementation owes the pipeline: a file transfer (`TransferRequest.path`) writes
/// the body into that file from `resumeFrom` on (the bytes before it kept), feeds the very
/// bytes it writes to `request.hasher` and returns its checksum in the summary; one into
/// memory (`path` nil) returns the body. Failures are `TransferError`s whose reasons say what
/// happened (a stall, a status, a full disk...); the pipeline decides what to do about them.
/// Completions run on another thread than the caller of `submit`, with no lock of the
/// fetcher held.
public protocol PartFetcher: AnyObject, Sendable {
    /// The settings the pipeline's decisions use too (retries per location and their delay).
    var config: DownloadConfig { get }

    /// Queues a transfer. Returns an id for `promote` (0: not accepted; `completion` then
    /// gets `.cancelled`).
    @discardableResult
    func submit(_ request: TransferRequest, priority: TransferPriority,
                completion: @escaping @Sendable (Result<TransferSummary, TransferError>) -> Void) -> UInt64

    /// A reader now waits for this queued read-ahead transfer: it goes before read-ahead ones.
    func promote(_ id: UInt64)

    /// The process's one book of its mirrors: the fetcher schedules by it (concurrency per
    /// location), the pipelines over this fetcher note and read failures, health, load, speed
    /// and redirects in it, so every image of a mount sees what the others learned.
    var mirrors: SharedMirrorBook { get }

    /// Bytes received so far by transfers whose completion has not run yet (for progress
    /// figures: a large part shows as it arrives, not only once it is complete).
    var bytesArriving: Int64 { get }
}

extension PartFetcher {
    public var bytesArriving: Int64 { 0 }
}
