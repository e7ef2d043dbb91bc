#if canImport(Glibc)
import Glibc
#endif
import JigdoFormat
import Synchronization

/// Whether the calling thread may block until a download completes.
///
/// A FUSE worker must never wait on the network: the bridge runs each request inside
/// `ReadContext.withoutWaiting`, and a part source that would have to wait for a download
/// starts it and throws `WouldWait` instead. The bridge then registers the request as a
/// waiter (`WouldWait.register`) and answers it from the download's completion, on another
/// thread, by running the request again. Everywhere else (make-image, verify, prefetch) reads
/// block as they always did.
///
/// A request that runs more than once (each `WouldWait` sends it round again) holds what it
/// read across its rounds in `holds` (see `ReadHolds`).
///
/// Per thread (a pthread key), so nothing has to be passed through ImageReader and ISO9660.
public enum ReadContext {
    private static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k, nil)
        return k
    }()
    /// The key's value inside `withoutWaiting` without holds.
    private static var noHolds: UnsafeRawPointer { UnsafeRawPointer(bitPattern: 1)! }

    /// True inside `withoutWaiting` on this thread.
    public static var mustNotWait: Bool { pthread_getspecific(key) != nil }

    /// The holds of the request running on this thread (nil outside `withoutWaiting(holding:)`).
    public static var holds: ReadHolds? {
        guard let p = pthread_getspecific(key), p != noHolds else { return nil }
        return Unmanaged<ReadHolds>.fromOpaque(p).takeUnretainedValue()
    }

    public static func withoutWaiting<T, E: Error>(holding holds: ReadHolds? = nil, _ body: () throws(E) -> T) throws(E) -> T {
        let outer = pthread_getspecific(key)
        pthread_setspecific(key, holds.map { UnsafeRawPointer(Unmanaged.passUnretained($0).toOpaque()) } ?? noHolds)
        defer {
            pthread_setspecific(key, outer)
            withExtendedLifetime(holds) {}
        }
        return try body()
    }
}

/// What one request holds until it is answered, across its rounds: e.g. the cache pins of the
/// parts it read (`PartPipeline`), so that a part read in one round, or downloaded while it
/// waited, is still there when it runs again. Whoever answers the request calls `releaseAll`
/// once the reply holds its bytes (or on the error it answers with).
public final class ReadHolds: Sendable {
    private let held = Mutex<[String: @Sendable () -> Void]>([:])

    public init() {}

    /// Takes a hold named `key` unless the request has it already: `take` takes it and returns
    /// its release. A request's rounds run one at a time, so `take` runs without the lock.
    public func hold(_ key: String, _ take: () -> @Sendable () -> Void) {
        if held.withLock({ $0[key] != nil }) { return }
        let release = take()
        held.withLock { $0[key] = release }
    }

    /// Releases every hold (each once).
    public func releaseAll() {
        let all = held.withLock { h -> [@Sendable () -> Void] in
            defer { h.removeAll() }
            return Array(h.values)
        }
        for release in all { release() }
    }
}

/// Thrown instead of waiting for a download (see `ReadContext`). The download has been
/// started (with demand priority). Not a failure but control flow (an `Error` so it can
/// leave any depth of a read): the FUSE bridge catches it before errors become errno values.
public struct WouldWait: Error, CustomStringConvertible {
    /// Calls `done` once the download finished: nil when the part became available (run the
    /// request again), else the error that ended the download (answer the request with it).
    /// May call `done` at once, on the calling thread.
    public let register: @Sendable (_ done: @escaping @Sendable (JigdoError?) -> Void) -> Void

    public init(register: @escaping @Sendable (_ done: @escaping @Sendable (JigdoError?) -> Void) -> Void) {
        self.register = register
    }

    public var description: String { "the part is being downloaded" }
}
