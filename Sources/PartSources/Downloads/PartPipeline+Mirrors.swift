#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import ImageAssembly
import JigdoFormat
import Logging
import Synchronization

/// What the pipeline learns about mirrors: failures and health, the mirror location of a part
/// URL, remembered redirects, the order locations are tried in, and their load and speed.
extension PartPipeline {
    /// Counts a failure against the mirror location of `url`; `demote`: at once (a stall).
    func noteFailure(_ url: String, part: TemplatePart, demote: Bool) {
        let host = hostOf(url)
        let location = locationPrefix(url, part: part)
        let now = clock.now()
        condition.lock()
        state.failuresByHost[host, default: 0] += 1
        state.health.noteFailure(location, now: now, demote: demote)
        condition.unlock()
    }

    func noteSuccess(_ url: String, part: TemplatePart) {
        let location = locationPrefix(url, part: part)
        condition.lock()
        state.health.noteSuccess(location)
        condition.unlock()
    }

    /// The mirror location a part URL comes from: the URL less the part's path below its
    /// label (`Label:path` in [Parts], or the checksum for the MD5Sum:/SHA256Sum: labels).
    func locationPrefix(_ url: String, part: TemplatePart) -> String {
        let key = part.checksum.base64
        var tails: [String] = []
        for entry in resolver.descriptor.parts[key] ?? [] {
            if let colon = entry.value.firstIndex(of: ":") {
                tails.append(String(entry.value[entry.value.index(after: colon)...]))
            }
        }
        tails.append(key)
        // Byte-wise (a URL's path is bytes; Character-wise counting and comparing cost more
        // than the rest of a part's bookkeeping).
        let u = url.utf8
        for tail in tails where !tail.isEmpty {
            let encoded = encodeURLForCurl(tail)
            for candidate in encoded == tail ? [tail] : [tail, encoded] {
                let c = candidate.utf8
                if u.count > c.count, u.suffix(c.count).elementsEqual(c) {
                    return String(decoding: u.dropLast(c.count), as: UTF8.self)
                }
            }
        }
        return directoryOf(url)
    }

    /// Remembers that `from` redirected to `to`, as a mapping of their prefixes before the
    /// common tail (the part's path below the mirror root).
    func learnRedirect(from: String, to: String) {
        let a = from.split(separator: "/", omittingEmptySubsequences: false)
        let b = to.split(separator: "/", omittingEmptySubsequences: false)
        var common = 0
        while common < a.count - 3 && common < b.count - 3 && a[a.count - 1 - common] == b[b.count - 1 - common] { common += 1 }
        guard common >= 1 else { return }
        let prefixA = a[0..<(a.count - common)].joined(separator: "/") + "/"
        let prefixB = b[0..<(b.count - common)].joined(separator: "/") + "/"
        guard prefixA != prefixB, isRemoteURL(prefixB) else { return }
        condition.lock()
        state.redirects[prefixA] = (prefixB, clock.now() + Self.redirectLifetime)
        condition.unlock()
        logger.info("\(prefixA) redirects to \(prefixB); remembered for a while")
    }

    /// The URL to ask: a remembered redirect target, or `url` itself.
    func applyRedirect(_ url: String) -> String {
        let now = clock.now()
        condition.lock(); defer { condition.unlock() }
        guard !state.redirects.isEmpty else { return url }
        var best: (String, String)?
        for (prefix, r) in state.redirects where r.until > now && url.hasPrefix(prefix) {
            if best == nil || prefix.count > best!.0.count { best = (prefix, r.target) }
        }
        guard let (prefix, target) = best else { return url }
        return target + url.dropFirst(prefix.count)
    }

    func forgetRedirect(for url: String) {
        condition.lock()
        for prefix in state.redirects.keys where url.hasPrefix(prefix) { state.redirects[prefix] = nil }
        condition.unlock()
    }

    /// The URLs in the .jigdo's order, except that mirror locations which keep failing go
    /// last, and that among the first ones of equal weight the one expected to deliver the part
    /// soonest (by its measured speed and what it still has to send) goes first.
    func ordered(_ urls: [(url: String, weight: Int)], part: TemplatePart) -> [String] {
        guard urls.count > 1 else { return urls.map(\.url) }
        let now = clock.now()
        condition.lock()
        let health = state.health
        condition.unlock()
        return health.order(urls, length: part.length, now: now) { self.locationPrefix($0, part: part) }
    }

    /// A transfer of `bytes` from the mirror location of `url` starts / ended (its load and
    /// measured speed, for `ordered`).
    func noteTransferStarted(_ url: String, part: TemplatePart, bytes: Int64) {
        let location = locationPrefix(url, part: part)
        let now = clock.now()
        condition.lock()
        state.health.noteStarted(location, bytes: bytes, now: now)
        condition.unlock()
    }

    func noteTransferEnded(_ url: String, part: TemplatePart, bytes: Int64, received: Int64) {
        let location = locationPrefix(url, part: part)
        let now = clock.now()
        condition.lock()
        state.health.noteEnded(location, bytes: bytes, received: received, now: now)
        condition.unlock()
    }
}

/// `scheme://host[:port]` of a URL (for per-mirror figures).
func hostOf(_ url: String) -> String {
    guard let r = url.range(of: "://") else { return url }
    let rest = url[r.upperBound...]
    let end = rest.firstIndex(of: "/") ?? rest.endIndex
    return String(url[..<end])
}
