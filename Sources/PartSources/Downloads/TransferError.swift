#if canImport(Glibc)
import Glibc
#endif
import CCurl
import Foundation

/// Why one transfer failed. A type of its own, not a `JigdoError`: its `reason` drives the
/// download walk (retry, demote a stalled mirror, reopen a spoiled connection), which needs
/// the HTTP status or libcurl code as values. What reaches a reader is the walk's
/// `JigdoError(.partUnavailable)` naming every URL tried and why.
public struct TransferError: Error, Sendable, CustomStringConvertible {
    public enum Reason: Sendable, Equatable {
        /// The server answered with this HTTP (or FTP) status.
        case status(Int)
        /// libcurl gave up: connection, timeout, TLS, short body...
        case curl(code: Int, text: String)
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
        case .curl(let code, _):
            let c = CURLcode(UInt32(code))
            // A connection spoiled by an earlier response on it ("Received HTTP/0.9", a weird
            // reply) is worth one more try on a fresh connection.
            return [CURLE_COULDNT_CONNECT, CURLE_RECV_ERROR, CURLE_SEND_ERROR,
                    CURLE_PARTIAL_FILE, CURLE_GOT_NOTHING, CURLE_HTTP2, CURLE_HTTP2_STREAM,
                    CURLE_SSL_CONNECT_ERROR, CURLE_WEIRD_SERVER_REPLY, CURLE_UNSUPPORTED_PROTOCOL].contains(c)
        case .tooLong, .local, .diskFull, .cancelled, .protocolViolation: return false
        case .rangeRefused: return true
        }
    }

    /// The transfer stalled: no progress above the low-speed limit (or no answer at all) for
    /// the low-speed time. The mirror is demoted at once rather than retried.
    public var isStall: Bool {
        if case .curl(let code, _) = reason { return CURLcode(UInt32(code)) == CURLE_OPERATION_TIMEDOUT }
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
        case .curl(let code, _):
            let c = CURLcode(UInt32(code))
            return [CURLE_PARTIAL_FILE, CURLE_WEIRD_SERVER_REPLY, CURLE_UNSUPPORTED_PROTOCOL, CURLE_RECV_ERROR,
                    CURLE_GOT_NOTHING, CURLE_HTTP2, CURLE_HTTP2_STREAM, CURLE_OPERATION_TIMEDOUT].contains(c)
        default: return false
        }
    }

    public var description: String {
        switch reason {
        case .status(let s): return "HTTP status \(s)"
        case .curl(_, let text): return text
        case .tooLong(let n): return "sent more than the part's \(n) bytes"
        case .local(let text), .diskFull(let text): return text
        case .protocolViolation(let text): return text
        case .rangeRefused: return "range request refused"
        case .cancelled: return "cancelled"
        }
    }
}
