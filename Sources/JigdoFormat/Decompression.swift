import CBzip2
import CZlib

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
        var out = [UInt8]()
        var pos = 0
        while pos < data.count {
            if pos + 1 < data.count && data[pos] == 0x1f && data[pos + 1] == 0x8b {
                pos += try inflateGzipMember(data, from: pos, appendingTo: &out, limit: limit)
            } else {
                // Plain text up to the next gzip magic.
                var end = pos
                while end < data.count && !(data[end] == 0x1f && end + 1 < data.count && data[end + 1] == 0x8b) { end += 1 }
                out.append(contentsOf: data[pos..<end])
                if out.count > limit { throw DecompressionFailure("content is larger than \(limit >> 20) MiB") }
                pos = end
            }
        }
        return out
    }

    /// Inflates the gzip member at `start`; returns the number of input bytes it used.
    private static func inflateGzipMember(_ data: [UInt8], from start: Int, appendingTo out: inout [UInt8], limit: Int) throws(DecompressionFailure) -> Int {
        var stream = z_stream()
        guard jfs_inflateInit2(&stream, 15 + 16) == Z_OK else { throw DecompressionFailure("zlib initialisation failed") }
        defer { inflateEnd(&stream) }
        let chunk = 1 << 16
        var buffer = [UInt8](repeating: 0, count: chunk)
        var result: Result<Int, DecompressionFailure> = .failure(DecompressionFailure("gzip data is truncated"))
        data.withUnsafeBytes { input in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress!.assumingMemoryBound(to: Bytef.self) + start)
            stream.avail_in = uInt(data.count - start)
            buffer.withUnsafeMutableBytes { outBuf in
                while true {
                    stream.next_out = outBuf.baseAddress!.assumingMemoryBound(to: Bytef.self)
                    stream.avail_out = uInt(chunk)
                    let rc = inflate(&stream, Z_NO_FLUSH)
                    let produced = chunk - Int(stream.avail_out)
                    out.append(contentsOf: outBuf[0..<produced])
                    if out.count > limit {
                        result = .failure(DecompressionFailure("gzip data expands to more than \(limit >> 20) MiB"))
                        return
                    }
                    if rc == Z_STREAM_END {
                        result = .success(data.count - start - Int(stream.avail_in))
                        return
                    }
                    if rc == Z_BUF_ERROR && stream.avail_in == 0 { return }
                    if rc != Z_OK {
                        let msg = stream.msg.map { String(cString: $0) } ?? "error \(rc)"
                        result = .failure(DecompressionFailure("bad gzip data (\(msg))"))
                        return
                    }
                }
            }
        }
        return try result.get()
    }
}

public struct DecompressionFailure: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Decompresses one template chunk piece by piece, front to back, for chunks too large to hold
/// whole (jigdo-file writes zlib chunks of some 270 MB for long runs of zeros).
///
/// Not thread-safe: one thread at a time (callers check a stream out and put it back).
/// The stream must yield exactly `outputLength` bytes; the call that produces the last byte
/// also checks that the compressed stream ends there.
public final class ChunkStreamDecompressor: @unchecked Sendable {
    public let compression: TemplateChunk.Compression
    public let outputLength: Int
    /// Bytes produced so far.
    public private(set) var produced = 0

    private let input: UnsafeMutableRawBufferPointer
    // zlib and bzip2 keep a back pointer to their stream struct, so it must not move: heap.
    private let zstream: UnsafeMutablePointer<z_stream>?
    private let bzstream: UnsafeMutablePointer<bz_stream>?
    private var failed: DecompressionFailure?

    public init(compression: TemplateChunk.Compression, compressed: [UInt8], outputLength: Int) throws(DecompressionFailure) {
        self.compression = compression
        self.outputLength = outputLength
        let input = UnsafeMutableRawBufferPointer.allocate(byteCount: max(compressed.count, 1), alignment: 16)
        compressed.withUnsafeBytes { input.copyMemory(from: $0) }
        self.input = input
        switch compression {
        case .zlib:
            let z = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
            z.initialize(to: z_stream())
            guard jfs_inflateInit2(z, 15) == Z_OK else {
                z.deallocate()
                input.deallocate()
                throw DecompressionFailure("zlib initialisation failed")
            }
            z.pointee.next_in = input.baseAddress!.assumingMemoryBound(to: Bytef.self)
            z.pointee.avail_in = uInt(compressed.count)
            zstream = z
            bzstream = nil
        case .bzip2:
            let b = UnsafeMutablePointer<bz_stream>.allocate(capacity: 1)
            b.initialize(to: bz_stream())
            guard BZ2_bzDecompressInit(b, 0, 0) == BZ_OK else {
                b.deallocate()
                input.deallocate()
                throw DecompressionFailure("bzip2 initialisation failed")
            }
            b.pointee.next_in = input.baseAddress!.assumingMemoryBound(to: CChar.self)
            b.pointee.avail_in = UInt32(compressed.count)
            bzstream = b
            zstream = nil
        }
    }

    deinit {
        if let zstream {
            inflateEnd(zstream)
            zstream.deallocate()
        }
        if let bzstream {
            BZ2_bzDecompressEnd(bzstream)
            bzstream.deallocate()
        }
        input.deallocate()
    }

    /// Fills `buffer` with the next `buffer.count` bytes (at most `outputLength - produced`).
    public func next(into buffer: UnsafeMutableRawBufferPointer) throws(DecompressionFailure) {
        if let failed { throw failed }
        do throws(DecompressionFailure) {
            guard buffer.count <= outputLength - produced else {
                throw DecompressionFailure("asked for \(buffer.count) bytes, only \(outputLength - produced) left")
            }
            if buffer.count > 0 {
                let ended = try step(into: buffer)
                produced += buffer.count
                if ended && produced < outputLength {
                    throw DecompressionFailure("\(name) data holds \(produced) bytes, header says \(outputLength)")
                }
                if ended { return }
            }
            if produced == outputLength {
                // All promised bytes are out: the stream must end here, with no byte to spare.
                var scratch: UInt8 = 0
                let ended = try withUnsafeMutableBytes(of: &scratch) { s throws(DecompressionFailure) in
                    try step(into: s, probing: true)
                }
                if !ended { throw DecompressionFailure("\(name) data holds more than the \(outputLength) bytes its header says") }
            }
        } catch {
            failed = error
            throw error
        }
    }

    private var name: String { compression == .zlib ? "zlib" : "bzip2" }

    /// Decompresses until `buffer` is full or the stream ends. Returns whether it ended.
    /// `probing`: the buffer is a one-byte probe; filling it means the data is too long.
    private func step(into buffer: UnsafeMutableRawBufferPointer, probing: Bool = false) throws(DecompressionFailure) -> Bool {
        if let z = zstream {
            z.pointee.next_out = buffer.baseAddress!.assumingMemoryBound(to: Bytef.self)
            z.pointee.avail_out = uInt(buffer.count)
            while true {
                let rc = inflate(z, Z_NO_FLUSH)
                if rc == Z_STREAM_END {
                    if z.pointee.avail_out != 0 && !probing {
                        throw DecompressionFailure("zlib data holds \(produced + buffer.count - Int(z.pointee.avail_out)) bytes, header says \(outputLength)")
                    }
                    if probing && z.pointee.avail_out == 0 { return false }
                    return true
                }
                if z.pointee.avail_out == 0 { return false }
                if rc == Z_OK { continue }
                if rc == Z_BUF_ERROR { throw DecompressionFailure("zlib data is truncated") }
                let msg = z.pointee.msg.map { String(cString: $0) } ?? "error \(rc)"
                throw DecompressionFailure("bad zlib data (\(msg))")
            }
        }
        let b = bzstream!
        b.pointee.next_out = buffer.baseAddress!.assumingMemoryBound(to: CChar.self)
        b.pointee.avail_out = UInt32(buffer.count)
        while true {
            let rc = BZ2_bzDecompress(b)
            if rc == BZ_STREAM_END {
                if b.pointee.avail_out != 0 && !probing {
                    throw DecompressionFailure("bzip2 data holds \(produced + buffer.count - Int(b.pointee.avail_out)) bytes, header says \(outputLength)")
                }
                if probing && b.pointee.avail_out == 0 { return false }
                return true
            }
            if rc != BZ_OK { throw DecompressionFailure("bad bzip2 data (error \(rc))") }
            if b.pointee.avail_out == 0 { return false }
            if b.pointee.avail_in == 0 { throw DecompressionFailure("bzip2 data is truncated") }
        }
    }
}
