#if canImport(Glibc)
import Glibc
#endif
import JigdoFormat

/// Whether the calling thread may block until a download completes.
///
/// A FUSE worker must never wait on the network: the bridge runs each request inside
/// `ReadContext.withoutWaiting`, and a part source that would have to wait for a download
/// starts it and throws `WouldWait` instead. The bridge then registers the request as a
/// waiter (`WouldWait.register`) and answers it from the download's completion, on another
/// thread, by running the request again. Everywhere else (make-image, verify, prefetch) reads
/// block as they always did.
///
/// Per thread (a pthread key), so nothing has to be passed through ImageReader and ISO9660.
public enum ReadContext {
    private static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k, nil)
        return k
    }()

    /// True inside `withoutWaiting` on this thread.
    public static var mustNotWait: Bool { pthread_getspecific(key) != nil }

    public static func withoutWaiting<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        let outer = pthread_getspecific(key)
        pthread_setspecific(key, UnsafeRawPointer(bitPattern: 1))
        defer { pthread_setspecific(key, outer) }
        return try body()
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
