#if canImport(Glibc)
import Glibc
#endif
import CCurl
import Dispatch
import Foundation
import JigdoFormat
import Logging
import Synchronization

// The libcurl side of `HTTPDownloader`: a transfer's easy handle (its setup in `configure`,
// its write callback, its end read back into a `TransferSummary` or `TransferError`).

/// One transfer in flight; owned by the worker thread once started.
final class Transfer: @unchecked Sendable {
    let id: UInt64
    let request: TransferRequest
    var url: String { request.url }
    /// Keys of `ConcurrencyGovernor`: the mirror location and the host (scheme, host, port).
    let location: String
    let host: String
    /// The file to write; nil: keep the body in memory (`body`).
    var path: String? { request.path }
    var resumeFrom: Int64 { request.resumeFrom }
    var maxLength: Int64? { request.maxLength }
    let completion: @Sendable (Result<TransferSummary, TransferError>) -> Void
    /// The fetcher's count of bytes arriving: this transfer's are in it until its completion.
    let arriving: ArrivingBytes
    // Touched only by the worker thread.
    var easy: UnsafeMutableRawPointer?
    var fd: Int32 = -1
    var offset: Int64
    var received: Int64 = 0
    /// Bytes received and not yet told to the governor (it measures a location's rate by the
    /// bytes arriving, not by the sizes of the transfers that happen to end).
    var unreported: Int64 = 0
    var tooLong = false
    var headersChecked = false
    var violation: String?
    /// A lane's write of the file failed (an errno; 0: none): the transfer is stopped.
    let writeError = Atomic<Int32>(0)
    /// Hashes and writes the body of a file transfer (nil for one into memory).
    var writeBehind: WriteBehind?
    /// The buffer `writeBehind` is filling with this transfer's body, not yet queued.
    struct Filling {
        var piece: Piece
        var count: Int
        var at: Int64
        var fd: Int32
        /// When its first piece came (monotonic nanoseconds).
        var since: UInt64
    }
    var filling: Filling?
    var body: [UInt8] = []
    var hasher: ChecksumHasher?
    let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)

    init(id: UInt64, request: TransferRequest, arriving: ArrivingBytes = ArrivingBytes(),
         completion: @escaping @Sendable (Result<TransferSummary, TransferError>) -> Void) {
        self.id = id
        self.arriving = arriving
        // The hasher moves here: a second reference to its context (the request's) would make
        // each update copy it first (copy on write).
        var kept = request
        kept.hasher = nil
        self.request = kept
        self.offset = request.resumeFrom
        self.hasher = request.hasher
        self.completion = completion
        self.host = hostOf(request.url)
        self.location = request.location ?? self.host
        errorBuffer.initialize(to: 0)
    }

    deinit { errorBuffer.deallocate() }
}

/// Hands the body to `WriteBehind`, which hashes it and writes it into the partial file (no
/// part is ever held in memory whole), or keeps a body meant for memory, hashing it here.
/// Returning less than `n` makes libcurl abort the transfer and close its connection, which is
/// what a response that breaks HTTP needs.
private let writeToFile: jfs_curl_write_callback = { data, size, count, context in
    let t = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
    let n = size * count
    if !t.headersChecked {
        t.headersChecked = true
        if t.request.exactLength, let max = t.maxLength, let easy = t.easy {
            // The body must be exactly the bytes asked for: a server whose Content-Length is
            // shorter or longer than that would leave the connection out of step.
            var announced: curl_off_t = -1
            if jfs_curl_easy_getinfo_off(easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced) == CURLE_OK,
               announced >= 0, Int64(announced) != max - t.resumeFrom {
                t.violation = "Content-Length \(announced) for a request of \(max - t.resumeFrom) bytes"
                return 0
            }
        }
    }
    if let max = t.maxLength, t.offset + Int64(n) > max {
        t.tooLong = true
        return 0
    }
    if t.path == nil {
        if n > 0 { t.hasher?.update(UnsafeRawBufferPointer(start: data, count: n)) }
        t.body.append(contentsOf: UnsafeRawBufferPointer(start: data, count: n))
    } else {
        // A piece that could not be written stops the transfer: the rest has nowhere to go.
        guard t.writeError.load(ordering: .relaxed) == 0, let writeBehind = t.writeBehind else { return 0 }
        if n > 0 { writeBehind.write(t, fd: t.fd, data!, count: n, at: t.offset) }
    }
    t.offset += Int64(n)
    t.received += Int64(n)
    t.unreported += Int64(n)
    t.arriving.add(n)
    DownloadRateLimit.shared.consume(n)
    return n
}

/// Bytes received by transfers whose completion has not run yet: added as pieces arrive (on
/// the transfer thread), taken out just before each completion.
final class ArrivingBytes: Sendable {
    private let count = Atomic<Int64>(0)
    var bytes: Int64 { max(0, count.load(ordering: .relaxed)) }
    func add(_ n: Int) { count.add(Int64(n), ordering: .relaxed) }
    func ended(_ received: Int64) { count.subtract(received, ordering: .relaxed) }
}

extension HTTPDownloader {
    func begin(_ t: Transfer) {
        if let path = t.path {
            // The caller's descriptor of the file (a duplicate: the lanes close theirs once
            // the last piece is written), or the file opened by name. O_NOFOLLOW: a symlink
            // planted in the cache is never written through.
            let given = t.request.descriptor
            let fd = given >= 0 ? Syscalls.duplicate(given)
                : Syscalls.open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard fd >= 0 else {
                failEarly(t, Self.writeFailure(path, "cannot open", errno))
                return
            }
            var st = stat()
            guard Syscalls.fstat(fd, &st) == 0, PartCache.isOwnRegularFile(st) else {
                Syscalls.close(fd)
                failEarly(t, TransferError(reason: .diskFull("\(path): not a regular file of this user")))
                return
            }
            // Drop anything beyond the resume point (a previous, longer attempt). Only when
            // there is something to drop: ext4 starts writing back, on close, a file truncated
            // to 0 (its "replace by truncate" safety), which put a disk flush on this thread
            // for every part.
            if Int64(st.st_size) != t.resumeFrom, Syscalls.ftruncate(fd, off_t(t.resumeFrom)) != 0 {
                let e = errno
                Syscalls.close(fd)
                failEarly(t, Self.writeFailure(path, "cannot truncate", e))
                return
            }
            t.fd = fd
            t.writeBehind = writeBehind
        } else if let max = t.maxLength, max <= 256 << 20 {
            t.body.reserveCapacity(Int(max))
        }
        guard let easy = curl_easy_init() else {
            if t.fd >= 0 { Syscalls.close(t.fd) }
            failEarly(t, TransferError(reason: .local("libcurl: cannot create a transfer")))
            return
        }
        t.easy = easy
        do {
            try configure(easy, for: t)
        } catch {
            curl_easy_cleanup(easy)
            if t.fd >= 0 { Syscalls.close(t.fd) }
            t.fd = -1
            failEarly(t, TransferError(reason: .local("\(error)")))
            return
        }
        active[easy] = t
        let added = curl_multi_add_handle(multi, easy)
        if added != CURLM_OK {
            active[easy] = nil
            curl_easy_cleanup(easy)
            if t.fd >= 0 { Syscalls.close(t.fd) }
            t.fd = -1
            failEarly(t, TransferError(reason: .local("libcurl: cannot start a transfer: \(String(cString: curl_multi_strerror(added)))")))
        }
    }

    /// A failure to write the partial file: one that costs only caching (full, read-only,
    /// not ours) is `.diskFull`, so the part is fetched into memory instead.
    static func writeFailure(_ path: String, _ what: String, _ code: Int32) -> TransferError {
        let text = "\(path): \(what): \(errnoText(code))"
        return TransferError(reason: PartCache.costsOnlyCaching(code) ? .diskFull(text) : .local(text))
    }

    /// THE one place an easy handle is configured. Every option's result is checked: a
    /// libcurl that refuses one (the protocol restriction above all) fails the transfer
    /// instead of running it with weaker settings.
    private func configure(_ easy: UnsafeMutableRawPointer, for t: Transfer) throws {
        let c = config
        func check(_ code: CURLcode, _ name: String) throws {
            guard code == CURLE_OK else {
                throw JigdoError(.io, path: t.url, "libcurl refused option \(name): \(String(cString: curl_easy_strerror(code)))")
            }
        }
        try check(jfs_curl_easy_setopt_string(easy, CURLOPT_URL, encodeURLForCurl(t.url)), "URL")
        try check(jfs_curl_easy_setopt_string(easy, CURLOPT_PROTOCOLS_STR, "http,https,ftp"), "PROTOCOLS_STR")
        try check(jfs_curl_easy_setopt_string(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https,ftp"), "REDIR_PROTOCOLS_STR")
        try check(jfs_curl_easy_setopt_write_function(easy, CURLOPT_WRITEFUNCTION, writeToFile), "WRITEFUNCTION")
        try check(jfs_curl_easy_setopt_pointer(easy, CURLOPT_WRITEDATA, Unmanaged.passUnretained(t).toOpaque()), "WRITEDATA")
        try check(jfs_curl_easy_setopt_pointer(easy, CURLOPT_ERRORBUFFER, UnsafeMutableRawPointer(t.errorBuffer)), "ERRORBUFFER")
        try check(jfs_curl_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1), "NOSIGNAL")
        try check(jfs_curl_easy_setopt_long(easy, CURLOPT_FAILONERROR, 1), "FAILONERROR")
        try check(jfs_curl_easy_setopt_long(easy, CURLOPT_FOLLOWLOCATION, 1), "FOLLOWLOCATION")
        try check(jfs_curl_easy_setopt_long(easy, CURLOPT_MAXREDIRS, c.maxRedirects), "MAXREDIRS")
        try check(jfs_curl_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, Int(c.connectTimeout * 1000)), "CONNECTTIMEOUT_MS")
        try check(jfs_curl_easy_setopt_long(easy, CURLOPT_LOW_SPEED_LIMIT, c.lowSpeedLimit), "LOW_SPEED_LIMIT")
        try check(jfs_curl_easy_setopt_long(easy, CURLOPT_LOW_SPEED_TIME, max(1, c.lowSpeedTime)), "LOW_SPEED_TIME")
        try check(jfs_curl_easy_setopt_long(easy, CURLOPT_TCP_KEEPALIVE, 1), "TCP_KEEPALIVE")
        try check(jfs_curl_easy_setopt_string(easy, CURLOPT_USERAGENT, c.userAgent), "USERAGENT")
        // HTTP/2 where a TLS server offers it (ALPN), so one connection carries many parts.
        try check(jfs_curl_easy_setopt_long(easy, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_2TLS)), "HTTP_VERSION")
        // Over TLS, wait for the first connection's ALPN answer rather than opening one per
        // transfer: an HTTP/2 server then carries every part as a stream of one connection.
        // Not for plain http (HTTP/1.1 only), where waiting would queue transfers behind a
        // connection that may stall.
        if t.url.lowercased().hasPrefix("https://") {
            try check(jfs_curl_easy_setopt_long(easy, CURLOPT_PIPEWAIT, 1), "PIPEWAIT")
        }
        if let ca = c.caFile { try check(jfs_curl_easy_setopt_string(easy, CURLOPT_CAINFO, ca), "CAINFO") }
        if c.netrc { try check(jfs_curl_easy_setopt_long(easy, CURLOPT_NETRC, 1 /* CURL_NETRC_OPTIONAL */), "NETRC") }
        if let f = c.netrcFile { try check(jfs_curl_easy_setopt_string(easy, CURLOPT_NETRC_FILE, f), "NETRC_FILE") }
        if t.resumeFrom > 0 { try check(jfs_curl_easy_setopt_off(easy, CURLOPT_RESUME_FROM_LARGE, curl_off_t(t.resumeFrom)), "RESUME_FROM_LARGE") }
        if let max = t.maxLength {
            // A Content-Length over the bound fails before any byte is written.
            try check(jfs_curl_easy_setopt_off(easy, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(max - t.resumeFrom)), "MAXFILESIZE_LARGE")
        }
        // A piece of the body per WriteBehind buffer: fewer, larger receives and writes.
        if t.path != nil { try check(jfs_curl_easy_setopt_long(easy, CURLOPT_BUFFERSIZE, WriteBehind.pieceSize), "BUFFERSIZE") }
        if t.request.freshConnect { try check(jfs_curl_easy_setopt_long(easy, CURLOPT_FRESH_CONNECT, 1), "FRESH_CONNECT") }
        if t.request.remoteTime { try check(jfs_curl_easy_setopt_long(easy, CURLOPT_FILETIME, 1), "FILETIME") }
    }

    func finish(_ easy: UnsafeMutableRawPointer, _ code: CURLcode) {
        guard let t = active.removeValue(forKey: easy) else { return }
        var status = 0
        _ = jfs_curl_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
        var effective: UnsafeMutablePointer<CChar>?
        _ = jfs_curl_easy_getinfo_string(easy, CURLINFO_EFFECTIVE_URL, &effective)
        let effectiveURL = effective.map { String(cString: $0) } ?? t.url
        var fileTime: curl_off_t = -1
        if t.request.remoteTime { _ = jfs_curl_easy_getinfo_off(easy, CURLINFO_FILETIME_T, &fileTime) }
        curl_multi_remove_handle(multi, easy)
        curl_easy_cleanup(easy)
        // From here the file belongs to the lane that writes it (`deliver`).
        let fd = t.fd
        t.fd = -1
        let result: Result<TransferSummary, TransferError>
        if code == CURLE_OK, t.request.exactLength, let max = t.maxLength, t.offset != max {
            result = .failure(TransferError(reason: .protocolViolation("body ended at byte \(t.offset) of \(max)")))
        } else if code == CURLE_OK {
            result = .success(TransferSummary(received: t.received, fileSize: t.offset, effectiveURL: effectiveURL,
                                              body: t.path == nil ? t.body : nil,
                                              checksum: fd >= 0 ? nil : t.hasher?.finalize(),
                                              remoteTime: fileTime >= 0 ? Int64(fileTime) : nil))
        } else if let violation = t.violation {
            result = .failure(TransferError(reason: .protocolViolation(violation)))
        } else if code == CURLE_FILESIZE_EXCEEDED {
            result = .failure(TransferError(reason: .tooLong(t.maxLength ?? 0)))
        } else if t.tooLong {
            result = .failure(TransferError(reason: .tooLong(t.maxLength ?? 0)))
        } else if case let e = t.writeError.load(ordering: .relaxed), e != 0 {
            result = .failure(Self.writeFailure(t.path ?? "", "write failed", e))
        } else if code == CURLE_RANGE_ERROR || (code == CURLE_HTTP_RETURNED_ERROR && status == 416) {
            result = .failure(TransferError(reason: .rangeRefused))
        } else if code == CURLE_HTTP_RETURNED_ERROR {
            result = .failure(TransferError(reason: .status(status)))
        } else {
            var text = String(cString: t.errorBuffer)
            if text.isEmpty { text = String(cString: curl_easy_strerror(code)) }
            text = ProxyEnvironment.annotate(text, code: code, url: t.url)
            result = .failure(TransferError(curl: code, text: text))
        }
        release(t, measured: true, result: result)
        deliver(t, result, fd: fd)
    }
}

extension TransferError {
    /// THE one place libcurl's codes become transport-neutral reasons (`text`: libcurl's
    /// message, kept for the logs and the error a reader gets). What a code means for the
    /// walk (retry, stall, a spoiled connection) is then read off the reason.
    init(curl code: CURLcode, text: String) {
        switch code {
        case CURLE_OPERATION_TIMEDOUT:
            self.init(reason: .timedOut(text))
        case CURLE_COULDNT_CONNECT:
            self.init(reason: .connectFailed(text))
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY:
            self.init(reason: .resolveFailed(text))
        case CURLE_SEND_ERROR:
            self.init(reason: .sendFailed(text))
        case CURLE_RECV_ERROR, CURLE_PARTIAL_FILE, CURLE_GOT_NOTHING, CURLE_HTTP2, CURLE_HTTP2_STREAM:
            self.init(reason: .connectionLost(text))
        case CURLE_WEIRD_SERVER_REPLY, CURLE_UNSUPPORTED_PROTOCOL:
            self.init(reason: .badResponse(text))
        case CURLE_SSL_CONNECT_ERROR:
            self.init(reason: .tls(text))
        case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_CERTPROBLEM, CURLE_SSL_ISSUER_ERROR,
             CURLE_SSL_PINNEDPUBKEYNOTMATCH:
            self.init(reason: .untrusted(text))
        case CURLE_TOO_MANY_REDIRECTS:
            self.init(reason: .tooManyRedirects(text))
        default:
            self.init(reason: .other(text))
        }
    }
}

/// Percent-encodes the bytes libcurl refuses in a URL (blanks, non-ASCII, quotes), keeping the
/// URL's structure and any escapes already present.
public func encodeURLForCurl(_ url: String) -> String {
    // Most URLs need nothing (once per transfer and several times per part: no copy then).
    if url.utf8.allSatisfy(isSafeInCurlURL) { return url }
    let hex = Array("0123456789ABCDEF".utf8)
    var out = [UInt8]()
    out.reserveCapacity(url.utf8.count + 16)
    for b in url.utf8 {
        if isSafeInCurlURL(b) {
            out.append(b)
        } else {
            out += [UInt8(ascii: "%"), hex[Int(b >> 4)], hex[Int(b & 15)]]
        }
    }
    return String(decoding: out, as: UTF8.self)
}

/// Printable ASCII other than space and the characters RFC 3986 never allows unencoded.
@inline(__always) func isSafeInCurlURL(_ b: UInt8) -> Bool {
    switch b {
    case UInt8(ascii: "\""), UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "\\"), UInt8(ascii: "^"),
         UInt8(ascii: "`"), UInt8(ascii: "{"), UInt8(ascii: "|"), UInt8(ascii: "}"):
        return false
    default:
        return b > 0x20 && b < 0x7F
    }
}
