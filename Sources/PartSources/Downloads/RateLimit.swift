#if canImport(Glibc)
import Glibc
#endif
import CCurl
import Foundation
import JigdoFormat
import Synchronization

/// `--limit-rate`: one token bucket for every transfer of the process. The downloader's single
/// worker thread takes tokens for each chunk it writes and sleeps off a deficit, so all
/// transfers together stay at the rate (libcurl's own limit is per transfer).
final class DownloadRateLimit: Sendable {
    static let shared = DownloadRateLimit()

    private struct Bucket {
        var rate: Double = 0
        /// Bytes that may still go without waiting; negative: a debt to sleep off.
        var tokens: Double = 0
        var last: Double = 0
    }
    private let bucket = Mutex(Bucket())

    func setRate(_ bytesPerSecond: Int64) {
        bucket.withLock { b in
            b.rate = Double(max(0, bytesPerSecond))
            b.tokens = 0
            b.last = Self.now()
        }
    }

    /// Takes `n` bytes from the bucket and waits until they are paid for.
    func consume(_ n: Int) {
        let wait: Double = bucket.withLock { b in
            guard b.rate > 0 else { return 0 }
            let now = Self.now()
            // A burst of at most a tenth of a second (16 KiB at least) after an idle time.
            let burst = max(16384, b.rate / 10)
            b.tokens = min(burst, b.tokens + (now - b.last) * b.rate) - Double(n)
            b.last = now
            return b.tokens < 0 ? -b.tokens / b.rate : 0
        }
        if wait > 0 { usleep(UInt32(min(wait, 2) * 1_000_000)) }
    }

    private static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }
}

/// The proxy libcurl takes from the environment for a URL, to say so when it fails: "Failed to
/// connect to 127.0.0.1 port 3128" alone does not tell that it is the proxy.
enum ProxyEnvironment {
    /// (variable, value) of the proxy libcurl uses for `url`, nil for none.
    static func proxy(for url: String, environment: [String: String] = currentEnvironment()) -> (variable: String, value: String)? {
        guard let sep = url.range(of: "://") else { return nil }
        let scheme = url[..<sep.lowerBound].lowercased()
        let rest = url[sep.upperBound...]
        var host = String(rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" })
        if let at = host.lastIndex(of: "@") { host = String(host[host.index(after: at)...]) }
        if host.hasPrefix("["), let close = host.firstIndex(of: "]") {
            host = String(host[host.index(after: host.startIndex)..<close])
        } else if let colon = host.lastIndex(of: ":") {
            host = String(host[..<colon])
        }
        if let noProxy = environment["no_proxy"] ?? environment["NO_PROXY"] {
            for entry in noProxy.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces).lowercased() }) where !entry.isEmpty {
                if entry == "*" { return nil }
                let e = entry.hasPrefix(".") ? String(entry.dropFirst()) : entry
                if host.lowercased() == e || host.lowercased().hasSuffix("." + e) { return nil }
            }
        }
        // libcurl reads http_proxy only in lower case; the others in either.
        var names = scheme == "http" ? ["http_proxy"] : ["\(scheme)_proxy", "\(scheme.uppercased())_PROXY"]
        names += ["all_proxy", "ALL_PROXY"]
        for name in names {
            if let v = environment[name], !v.isEmpty { return (name, v) }
        }
        return nil
    }

    /// `text` of a libcurl failure, naming the proxy and its variable when one was used.
    static func annotate(_ text: String, code: CURLcode, url: String) -> String {
        guard var p = proxy(for: url) else { return text }
        // The variable may hold a login (user:password@proxy:3128, with or without a scheme).
        p.value = Passwords.masked(url: p.value)
        let raw = Int(code.rawValue)
        // 5 COULDNT_RESOLVE_PROXY, 7 COULDNT_CONNECT (with a proxy: the proxy), 28 timeout,
        // 56 RECV_ERROR, 97 PROXY.
        if [5, 7, 97].contains(raw) {
            return "cannot reach the proxy \(p.value) (from $\(p.variable)): \(text)"
        }
        return "\(text) (through the proxy \(p.value) from $\(p.variable))"
    }

    static func currentEnvironment() -> [String: String] {
        var out: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") { out[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
            p += 1
        }
        return out
    }
}
