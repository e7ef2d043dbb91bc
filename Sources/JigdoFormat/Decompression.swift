import CBzip2
import CZlib
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Decompression of template chunks and gzip-compressed .jigdo files.
public enum Decompression {
    /// Inflates one zlib stream (a template `DATA` part) that must yield exactly `output.count` bytes.
    public static func inflateZlib(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws(DecompressionFailure) {
        var stream = z_stream()
        guard jfs_inflateInit2(&stream, 15) == Z_OK else { throw DecompressionFailure("zlib initialisation failed") }
        defer { inflateEnd(&stream) }
        stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = uInt(input.count)
        stream.next_out = output.baseAddress?.assumingMemoryBound(to: Bytef.self)
        stream.avail_out = uInt(output.count)
        let rc = inflate(&stream, Z_FINISH)
        if rc == Z_STREAM_END {
            if stream.avail_out != 0 {
                throw DecompressionFailure("zlib data holds \(output.count - Int(stream.avail_out)) bytes, header says \(output.count)")
            }
            return
        }
        if rc == Z_BUF_ERROR && stream.avail_out == 0 {
            throw DecompressionFailure("zlib data holds more than the \(output.count) bytes its header says")
        }
        if rc == Z_BUF_ERROR {
            throw DecompressionFailure("zlib data is truncated")
        }
        let msg = stream.msg.map { String(cString: $0) } ?? "error \(rc)"
        throw DecompressionFailure("bad zlib data (\(msg))")
    }

    /// Decompresses one bzip2 stream (a template `BZIP` part) that must yield exactly `output.count` bytes.
    public static func decompressBzip2(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws(DecompressionFailure) {
        var stream = bz_stream()
        guard BZ2_bzDecompressInit(&stream, 0, 0) == BZ_OK else { throw DecompressionFailure("bzip2 initialisation failed") }
        defer { BZ2_bzDecompressEnd(&stream) }
        stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: CChar.self))
        stream.avail_in = UInt32(input.count)
        stream.next_out = output.baseAddress?.assumingMemoryBound(to: CChar.self)
        stream.avail_out = UInt32(output.count)
        // The stream must end exactly when the output is full: once it is, decompress into a
        // one-byte scratch buffer; any byte landing there means the data is longer than promised.
        var scratch: CChar = 0
        var inScratch = false
        while true {
            let rc = withUnsafeMutablePointer(to: &scratch) { scratchPointer -> Int32 in
                if inScratch {
                    stream.next_out = scratchPointer
                    stream.avail_out = 1
                }
                return BZ2_bzDecompress(&stream)
            }
            if inScratch && stream.avail_out == 0 {
                throw DecompressionFailure("bzip2 data holds more than the \(output.count) bytes its header says")
            }
            if rc == BZ_STREAM_END {
                if !inScratch && stream.avail_out != 0 {
                    throw DecompressionFailure("bzip2 data holds \(output.count - Int(stream.avail_out)) bytes, header says \(output.count)")
                }
                return
            }
            if rc != BZ_OK {
                throw DecompressionFailure("bad bzip2 data (error \(rc))")
            }
            if !inScratch && stream.avail_out == 0 {
                inScratch = true
                continue
            }
            if stream.avail_in == 0 {
                throw DecompressionFailure("bzip2 data is truncated")
            }
        }
    }

    /// The content of a .jigdo file: plain text, gzip, or any concatenation of gzip members and
    /// plain text (jigdo-file(1)), detected by content, not by file name.
    /// More than `limit` bytes of content is an error (a small gzip file can expand enormously).
    public static func gunzipConcatenated(_ data: [UInt8], limit: Int = .max) throws(DecompressionFailure) -> [UInt8] {
        let stream = ConcatenatedGzipStream(bytes: data, limit: limit)
        var out = [UInt8]()
        var piece = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n: Int
            do {
                n = try piece.withUnsafeMutableBytes { try stream.read(into: $0) }
            } catch let e as DecompressionFailure {
                throw e
            } catch {
                // Bytes in memory cannot fail to be read; kept as a failure all the same.
                throw DecompressionFailure("\(error)")
            }
            if n == 0 { return out }
            out.append(contentsOf: piece[0..<n])
        }
    }
}

/// The content of a .jigdo file as a stream (`Decompression.gunzipConcatenated` without holding
/// it whole): plain text passes through, gzip members are inflated, in any order and number.
/// Memory is two fixed buffers whatever the size, so a file is parsed while it is read.
public final class ConcatenatedGzipStream {
    /// Fills the buffer with the next raw bytes; returns how many (0: no more).
    public typealias Input = (UnsafeMutableRawBufferPointer) throws -> Int

    private let input: Input
    private let limit: Int
    private let inBuffer: UnsafeMutableRawBufferPointer
    private var inStart = 0
    private var inEnd = 0
    private var inputEnded = false
    private let stream: UnsafeMutablePointer<z_stream>
    private var streamReady = false
    private var inGzip = false
    /// Content bytes delivered so far.
    public private(set) var produced = 0

    /// `input` errors other than `DecompressionFailure` are passed through unchanged by `read`.
    public init(limit: Int = .max, inputBufferSize: Int = 1 << 16, input: @escaping Input) {
        self.input = input
        self.limit = limit
        inBuffer = .allocate(byteCount: max(inputBufferSize, 2), alignment: 16)
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
    }

    /// A stream over bytes already in memory.
    public convenience init(bytes: [UInt8], limit: Int = .max) {
        var offset = 0
        self.init(limit: limit) { buffer in
            let n = min(buffer.count, bytes.count - offset)
            guard n > 0 else { return 0 }
            bytes.withUnsafeBytes { src in
                buffer.baseAddress!.copyMemory(from: src.baseAddress! + offset, byteCount: n)
            }
            offset += n
            return n
        }
    }

    deinit {
        if streamReady { inflateEnd(stream) }
        stream.deinitialize(count: 1)
        stream.deallocate()
        inBuffer.deallocate()
    }

    /// Fills `output` with the next content bytes; returns how many, 0 at the end. Throws
    /// `DecompressionFailure` for bad or too much data, and the input's own errors as they are.
    public func read(into output: UnsafeMutableRawBufferPointer) throws -> Int {
        guard output.count > 0 else { return 0 }
        while true {
            if inEnd - inStart < 2 && !inputEnded {
                try refill()
                continue
            }
            var n = 0
            if inGzip {
                n = try inflateSome(into: output)
                if n == 0 && inGzip && inStart == inEnd && inputEnded {
                    throw DecompressionFailure("gzip data is truncated")
                }
            } else {
                if inStart == inEnd { return 0 }
                n = plainSome(into: output)
            }
            if n > 0 {
                produced += n
                if produced > limit {
                    throw DecompressionFailure("content is larger than \(limit >> 20) MiB")
                }
                return n
            }
        }
    }

    /// Moves what is left to the buffer's front and reads more behind it.
    private func refill() throws {
        if inStart > 0 {
            let left = inEnd - inStart
            if left > 0 { inBuffer.baseAddress!.copyMemory(from: inBuffer.baseAddress! + inStart, byteCount: left) }
            inStart = 0
            inEnd = left
        }
        let n = try input(UnsafeMutableRawBufferPointer(rebasing: inBuffer[inEnd...]))
        if n == 0 { inputEnded = true }
        inEnd += n
    }

    /// Plain text up to the next gzip magic (0x1f 0x8b); starts a gzip member when it is next.
    private func plainSome(into output: UnsafeMutableRawBufferPointer) -> Int {
        let base = inBuffer.baseAddress!.assumingMemoryBound(to: UInt8.self)
        if base[inStart] == 0x1f && inEnd - inStart >= 2 && base[inStart + 1] == 0x8b {
            inGzip = true
            return 0
        }
        // Up to (not including) the next 0x1f after the first byte; a 0x1f that is not
        // followed by 0x8b is text and comes out on the next call.
        var end = inEnd
        if inEnd - inStart > 1, let p = memchr(base + inStart + 1, 0x1f, inEnd - inStart - 1) {
            end = base.distance(to: p.assumingMemoryBound(to: UInt8.self))
        }
        let n = min(end - inStart, output.count)
        output.baseAddress!.copyMemory(from: base + inStart, byteCount: n)
        inStart += n
        return n
    }

    /// Inflates from the current gzip member (also with no input left: zlib may hold output);
    /// at the member's end the stream goes back to plain text.
    private func inflateSome(into output: UnsafeMutableRawBufferPointer) throws -> Int {
        if !streamReady {
            guard jfs_inflateInit2(stream, 15 + 16) == Z_OK else { throw DecompressionFailure("zlib initialisation failed") }
            streamReady = true
        }
        let available = inEnd - inStart
        stream.pointee.next_in = (inBuffer.baseAddress! + inStart).assumingMemoryBound(to: Bytef.self)
        stream.pointee.avail_in = uInt(available)
        stream.pointee.next_out = output.baseAddress!.assumingMemoryBound(to: Bytef.self)
        stream.pointee.avail_out = uInt(output.count)
        let rc = inflate(stream, Z_NO_FLUSH)
        inStart += available - Int(stream.pointee.avail_in)
        switch rc {
        case Z_STREAM_END:
            inGzip = false
            inflateReset(stream)
        case Z_OK:
            break
        case Z_BUF_ERROR where stream.pointee.avail_in == 0:
            break // needs more input
        default:
            let msg = stream.pointee.msg.map { String(cString: $0) } ?? "error \(rc)"
            throw DecompressionFailure("bad gzip data (\(msg))")
        }
        return output.count - Int(stream.pointee.avail_out)
    }
}

/// What is wrong with compressed data. A type of its own, not a `JigdoError`: the
/// decompressor sees bytes only, not which file or chunk they came from; each caller wraps it
/// (as the `underlying` cause) in an error that says where (`.corruptTemplate` with the
/// chunk's offset, `.syntax` for a .jigdo, ISO 9660 `.damaged` for a zisofs block).
public struct DecompressionFailure: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}
