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

/// What is wrong with compressed data. A type of its own, not a `JigdoError`: the
/// decompressor sees bytes only, not which file or chunk they came from; each caller wraps it
/// (as the `underlying` cause) in an error that says where (`.corruptTemplate` with the
/// chunk's offset, `.syntax` for a .jigdo, ISO 9660 `.damaged` for a zisofs block).
public struct DecompressionFailure: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}
