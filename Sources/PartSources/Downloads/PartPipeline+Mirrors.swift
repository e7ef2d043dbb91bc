#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import ImageAssembly
import JigdoFormat
import Logging
import Synchronization

/// What the pipeline learns about mirrors, kept in the process's one book (`mirrors`, the
/// fetcher's `SharedMirrorBook`, shared by every image's pipeline; its lock, not `condition`):
/// failures and health, remembered redirects, load and speed; and the mirror location of a part
/// URL and the order locations are tried in, worked out from it.
extension PartPipeline {
    /// Counts a failure against the mirror location of `url`; `demote`: at once (a stall).
    func noteFailure(_ url: String, location: String, demote: Bool) {
        let host = hostOf(url)
        let now = clock.now()
        mirrors.withBook { $0.noteFailure(location: location, host: host, now: now, demote: demote) }
    }

    func noteSuccess(location: String) {
        mirrors.withBook { $0.noteSuccess(location: location) }
    }

    /// The mirror location of `url` for the job's part: the one the job worked out for its
    /// current URL (`Job.located`), else `locationPrefix` (a lookup of the part's [Parts]
    /// entries and a few strings: it was made 3-4 times a transfer, 25 allocations a part).
    func location(of url: String, _ job: Job) -> String {
        if let l = job.located, l.url == url { return l.location }
        return locationPrefix(url, part: template.parts[job.index])
    }

    /// The mirror location a part URL comes from: the URL less the part's path below its
    /// label (`Label:path` in [Parts], or the checksum for the MD5Sum:/SHA256Sum: labels).
    func locationPrefix(_ url: String, part: TemplatePart) -> String {
        // Byte-wise (a URL's path is bytes; Character-wise counting and comparing cost more
        // than the rest of a part's bookkeeping), and without a string or array made for each
        // tail tried: the tails are views of the [Parts] values, and the checksum's Base64 is
        // made only when no value's tail matched.
        let u = url.utf8
        func lessTail<Tail: Collection<UInt8>>(_ tail: Tail) -> String? {
            guard !tail.isEmpty else { return nil }
            func strip<C: Collection<UInt8>>(_ c: C) -> String? {
                guard u.count > c.count, u.suffix(c.count).elementsEqual(c) else { return nil }
                return String(decoding: u.dropLast(c.count), as: UTF8.self)
            }
            if let s = strip(tail) { return s }
            // As libcurl was given it (`encodeURLForCurl`), when that differs.
            guard !tail.allSatisfy(isSafeInCurlURL) else { return nil }
            return strip(encodeURLForCurl(String(decoding: tail, as: UTF8.self)).utf8)
        }
        for entry in resolver.descriptor.parts.locations(for: part.checksum) ?? [] {
            let v = entry.value.utf8
            if let colon = v.firstIndex(of: UInt8(ascii: ":")), let s = lessTail(v[v.index(after: colon)...]) { return s }
        }
        if let s = lessTail(part.checksum.base64.utf8) { return s }
        return directoryOf(url)
    }

    /// Remembers what a redirector answered (`MirrorBook.learnRedirect`).
    func learnRedirect(from: String, to: String) {
        let now = clock.now()
        let learned = mirrors.withBook { $0.learnRedirect(from: from, to: to, now: now) }
        if let learned { logger.info("\(learned.from) redirects to \(learned.to); remembered for a while") }
    }

    /// The URL to ask: a remembered redirect target, or `url` itself.
    func applyRedirect(_ url: String) -> String {
        let now = clock.now()
        return mirrors.withBook { $0.applyRedirect(url, now: now) }
    }

    func forgetRedirect(for url: String) {
        mirrors.withBook { $0.forgetRedirect(for: url) }
    }

    /// The URLs in the .jigdo's order, except that mirror locations which keep failing go
    /// last, and that among the first ones of equal weight the one expected to deliver the part
    /// soonest (by its measured speed and what it still has to send) goes first.
    func ordered(_ urls: [(url: String, weight: Int)], part: TemplatePart) -> [String] {
        guard urls.count > 1 else { return urls.map(\.url) }
        let now = clock.now()
        let health = mirrors.withBook { $0.health }
        return health.order(urls, length: part.length, now: now) { self.locationPrefix($0, part: part) }
    }

    /// A transfer of `bytes` from the mirror location of `url` starts / ended (its load and
    /// measured speed, for `ordered`).
    func noteTransferStarted(location: String, bytes: Int64) {
        let now = clock.now()
        mirrors.withBook { $0.noteStarted(location: location, bytes: bytes, now: now) }
    }

    func noteTransferEnded(location: String, bytes: Int64, received: Int64) {
        let now = clock.now()
        mirrors.withBook { $0.noteEnded(location: location, bytes: bytes, received: received, now: now) }
    }
}

/// `scheme://host[:port]` of a URL (for per-mirror figures).
func hostOf(_ url: String) -> String {
    // Byte-wise over the string's own storage: Foundation's `range(of:)` cost three
    // allocations a call (one a failure: failures are counted per host).
    func end(_ u: UnsafeBufferPointer<UInt8>) -> Int? {
        var i = 0
        while i + 2 < u.count, !(u[i] == UInt8(ascii: ":") && u[i + 1] == UInt8(ascii: "/") && u[i + 2] == UInt8(ascii: "/")) { i += 1 }
        guard i + 2 < u.count else { return nil }
        var end = i + 3
        while end < u.count, u[end] != UInt8(ascii: "/") { end += 1 }
        return end
    }
    let n = url.utf8.withContiguousStorageIfAvailable(end) ?? Array(url.utf8).withUnsafeBufferPointer(end)
    guard let n else { return url }
    return String(decoding: url.utf8.prefix(n), as: UTF8.self)
}
