import Foundation

/// Why one transfer failed. A type of its own, not a `JigdoError`: its `reason` drives the
/// download walk (retry, demote a stalled mirror, reopen a spoiled connection), which needs
/// the HTTP status or the kind of failure as values. Transport-neutral: a transport maps its
/// own codes onto these reasons in one place (libcurl's: `TransferError(curl:text:)`, in
/// HTTPDownloader+Curl.swift), and each keeps the transport's text for messages. What
/// reaches a reader is the walk's `JigdoError(.partUnavailable)` naming every URL tried and
/// why.
public struct TransferError: Error, Sendable, CustomStringConvertible {
    public enum Reason: Sendable, Equatable {
        /// The server answered with this HTTP (or FTP) status.
        case status(Int)
        /// No progress above the low-speed limit (or no answer at all) for the low-speed
        /// time, or no connection within the connect timeout: a stall.
        case timedOut(String)
        /// The server refused the connection or could not be reached.
        case connectFailed(String)
        /// The host (or the proxy) name could not be resolved.
        case resolveFailed(String)
        /// The request could not be sent (the connection broke).
        case sendFailed(String)
        /// The connection broke or closed during the response: a short body, no answer at
        /// all, an HTTP/2 stream or connection error.
        case connectionLost(String)
        /// An answer that is not the protocol's (a weird reply, "Received HTTP/0.9"): it may
        /// come from a connection spoiled by an earlier response on it.
        case badResponse(String)
        /// The TLS handshake failed.
        case tls(String)
        /// The server's certificate could not be verified (or the CA bundle not read).
        case untrusted(String)
        /// More redirects than `DownloadConfig.maxRedirects`.
        case tooManyRedirects(String)
        /// Any other failure of the transport.
        case other(String)
        /// The server sent more bytes than the part has.
        case tooLong(Int64)
        /// The partial file could not be written.
        case local(String)
        /// The partial file cannot be written for a reason that costs only caching: the disk is
        /// full (ENOSPC, EDQUOT), read-only (EROFS) or not ours (EACCES, EPERM).
        case diskFull(String)
        /// The response breaks HTTP for this request (a Content-Length other than the bytes
        /// asked for, a wrong Content-Range): the connection is closed, never reused.
        case protocolViolation(String)
        /// The server does not do ranges, or the range was wrong: start again from 0.
        case rangeRefused
        /// The downloader was shut down.
        case cancelled
    }
    public var reason: Reason

    public init(reason: Reason) {
        self.reason = reason
    }

    /// Whether trying the same URL again later may help.
    public var isTransient: Bool {
        switch reason {
        case .status(let s): return s >= 500 || s == 408 || s == 429
        // A connection spoiled by an earlier response on it ("Received HTTP/0.9", a weird
        // reply) is worth one more try on a fresh connection.
        case .connectFailed, .sendFailed, .connectionLost, .badResponse, .tls: return true
        case .timedOut, .resolveFailed, .untrusted, .tooManyRedirects, .other: return false
        case .tooLong, .local, .diskFull, .cancelled, .protocolViolation: return false
        case .rangeRefused: return true
        }
    }

    /// The transfer stalled: no progress above the low-speed limit (or no answer at all) for
    /// the low-speed time. The mirror is demoted at once rather than retried.
    public var isStall: Bool {
        if case .timedOut = reason { return true }
        return false
    }

    /// The mirror is overloaded: it stalled, or said it has too many requests (429, 503).
    /// Its concurrency is halved (`ConcurrencyGovernor`).
    public var signalsOverload: Bool {
        if case .status(let s) = reason, s == 429 || s == 503 { return true }
        return isStall
    }

    /// Whether the connection this ran on may be unusable: the retry opens a fresh one.
    public var spoilsConnection: Bool {
        switch reason {
        case .protocolViolation, .tooLong, .rangeRefused: return true
        case .connectionLost, .badResponse, .timedOut: return true
        default: return false
        }
    }

    public var description: String {
        switch reason {
        case .status(let s): return "HTTP status \(s)"
        case .timedOut(let text), .connectFailed(let text), .resolveFailed(let text), .sendFailed(let text),
             .connectionLost(let text), .badResponse(let text), .tls(let text), .untrusted(let text),
             .tooManyRedirects(let text), .other(let text):
            return text
        case .tooLong(let n): return "sent more than the part's \(n) bytes"
        case .local(let text), .diskFull(let text): return text
        case .protocolViolation(let text): return text
        case .rangeRefused: return "range request refused"
        case .cancelled: return "cancelled"
        }
    }
}
