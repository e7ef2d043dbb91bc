import Foundation
import JigdoFormat

/// What a finished transfer did.
public struct TransferSummary: Sendable {
    /// Bytes received in this transfer.
    public var received: Int64
    /// Size of the file after the transfer.
    public var fileSize: Int64
    /// The URL after redirects.
    public var effectiveURL: String
    /// The body, for a transfer into memory.
    public var body: [UInt8]?
    /// The checksum of the whole file (the resumed prefix included), when a hasher was given:
    /// the bytes were hashed as they arrived, never read back.
    public var checksum: Checksum?
    /// The server's Last-Modified (seconds since the epoch), when `TransferRequest.remoteTime`
    /// asked for it and the server sent one.
    public var remoteTime: Int64? = nil

    public init(received: Int64, fileSize: Int64, effectiveURL: String, body: [UInt8]? = nil,
                checksum: Checksum? = nil, remoteTime: Int64? = nil) {
        self.received = received
        self.fileSize = fileSize
        self.effectiveURL = effectiveURL
        self.body = body
        self.checksum = checksum
        self.remoteTime = remoteTime
    }
}

/// What one transfer asks for (`PartFetcher.submit`).
public struct TransferRequest: Sendable {
    public var url: String
    /// The file to write; nil: keep the body in memory.
    public var path: String?
    /// An open, writable descriptor of the file at `path` (-1: none), which the caller keeps
    /// open until the completion: the transfer writes through a duplicate of it instead of
    /// opening `path` by name. The pipeline passes the one that holds the partial file's lock,
    /// so the bytes go to the very file it locked, and no path is walked again.
    public var descriptor: Int32 = -1
    /// Bytes of the file before this (kept; a range request asks for the rest).
    public var resumeFrom: Int64 = 0
    /// The file may not grow past this (a longer body is cut off with `.tooLong`).
    public var maxLength: Int64?
    /// The file must end up exactly `maxLength` long: a response announcing another length is
    /// refused before its body is written (`.protocolViolation`).
    public var exactLength = false
    /// Open a new connection instead of reusing one (a retry after a broken response).
    public var freshConnect = false
    /// Hashes the body as it arrives; primed with the resumed prefix by the caller.
    public var hasher: ChecksumHasher?
    /// The mirror location this transfer counts against for concurrency (the URL prefix a
    /// label expands to); nil: the URL's host.
    public var location: String?
    /// Ask for the server's Last-Modified (`TransferSummary.remoteTime`).
    public var remoteTime = false

    public init(url: String, path: String?) {
        self.url = url
        self.path = path
    }
}
