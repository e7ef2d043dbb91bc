import JigdoFormat

/// Reads the image bytes held in a template: the concatenated raw data of its DATA/BZIP parts.
///
/// A read decompresses only the chunks it touches; decompressed chunks are kept in a cache with
/// a byte budget, so sequential reads decompress each chunk once and memory stays bounded.
public final class TemplateDataReader: Sendable {
    public let info: TemplateInfo
    private let file: ReadOnlyFile
    private let cache: ByteBudgetCache<Int, ChunkBytes>

    /// Decompressed bytes of one chunk (immutable once made).
    final class ChunkBytes: Sendable {
        let bytes: [UInt8]
        init(_ bytes: [UInt8]) { self.bytes = bytes }
    }

    public init(file: ReadOnlyFile, info: TemplateInfo, cacheBudget: Int = 32 << 20) {
        self.file = file
        self.info = info
        self.cache = ByteBudgetCache(budget: cacheBudget)
    }

    /// Copies raw data at `dataOffset` into `buffer` (all of it).
    public func read(at dataOffset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        var done = 0
        var offset = dataOffset
        while done < buffer.count {
            guard let index = info.chunkIndex(containing: offset) else {
                throw JigdoError(.corruptTemplate, path: info.path, "raw data offset \(offset) is outside the template's data")
            }
            let chunk = info.chunks[index]
            let bytes = try chunkBytes(index)
            let inChunk = Int(offset - chunk.dataOffset)
            let n = min(buffer.count - done, chunk.uncompressedLength - inChunk)
            bytes.bytes.withUnsafeBytes { src in
                (buffer.baseAddress! + done).copyMemory(from: src.baseAddress! + inChunk, byteCount: n)
            }
            done += n
            offset += Int64(n)
        }
    }

    private func chunkBytes(_ index: Int) throws -> ChunkBytes {
        if let cached = cache.value(for: index) { return cached }
        let chunk = info.chunks[index]
        let compressed = try file.read(at: chunk.fileOffset, count: chunk.compressedLength)
        var out = [UInt8](repeating: 0, count: chunk.uncompressedLength)
        do {
            try compressed.withUnsafeBytes { input in
                try out.withUnsafeMutableBytes { output in
                    switch chunk.compression {
                    case .zlib: try Decompression.inflateZlib(input, into: output)
                    case .bzip2: try Decompression.decompressBzip2(input, into: output)
                    }
                }
            }
        } catch {
            let id = chunk.compression == .zlib ? "DATA" : "BZIP"
            throw JigdoError(.corruptTemplate, path: info.path, "\(id) part at offset \(chunk.fileOffset - 16): \(error)")
        }
        let bytes = ChunkBytes(out)
        cache.insert(bytes, for: index, cost: out.count)
        return bytes
    }
}
