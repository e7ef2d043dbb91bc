import JigdoFormat
import Synchronization

/// Reads the image bytes held in a template: the concatenated raw data of its DATA/BZIP parts.
///
/// A read decompresses only the chunks it touches; decompressed bytes are kept in a cache with
/// a byte budget, so sequential reads decompress each chunk once and memory stays bounded.
///
/// Small chunks (the usual ~1 MB or less) are decompressed whole. Large ones (jigdo-file packs a
/// long run of zeros into one zlib chunk of some 270 MB) are decompressed as a stream, in
/// windows of `windowSize`: the stream of a chunk is kept between reads, so reading a large
/// chunk front to back decompresses it once; a read behind the stream's position starts that
/// chunk's stream again.
public final class TemplateDataReader: Sendable {
    public let info: TemplateInfo
    private let file: ReadOnlyFile
    private let cache: ByteBudgetCache<CacheKey, ChunkBytes>
    /// Chunks larger than this are streamed in windows.
    public let largeChunkThreshold: Int
    public let windowSize: Int
    /// Streams of large chunks not in use, most recently used last. Checked out while a thread
    /// decompresses with one (the lock covers only the list, never decompression).
    private let streams = Mutex<[(chunk: Int, stream: ChunkStreamDecompressor)]>([])
    private static let maxIdleStreams = 8

    struct CacheKey: Hashable, Sendable {
        var chunk: Int
        /// Window index within a large chunk; 0 for a chunk cached whole.
        var window: Int
    }

    /// Decompressed bytes of one chunk or window (immutable once made).
    final class ChunkBytes: Sendable {
        let bytes: [UInt8]
        init(_ bytes: [UInt8]) { self.bytes = bytes }
    }

    public init(file: ReadOnlyFile, info: TemplateInfo, cacheBudget: Int = 32 << 20,
                largeChunkThreshold: Int = 4 << 20, windowSize: Int = 1 << 20) {
        self.file = file
        self.info = info
        self.cache = ByteBudgetCache(budget: cacheBudget)
        self.largeChunkThreshold = largeChunkThreshold
        self.windowSize = max(windowSize, 1)
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
            let inChunk = Int(offset - chunk.dataOffset)
            let bytes: ChunkBytes
            let start: Int
            if chunk.uncompressedLength > largeChunkThreshold {
                let window = inChunk / windowSize
                bytes = try windowBytes(index, window)
                start = inChunk - window * windowSize
            } else {
                bytes = try chunkBytes(index)
                start = inChunk
            }
            let n = min(buffer.count - done, bytes.bytes.count - start)
            bytes.bytes.withUnsafeBytes { src in
                (buffer.baseAddress! + done).copyMemory(from: src.baseAddress! + start, byteCount: n)
            }
            done += n
            offset += Int64(n)
        }
    }

    private func chunkError(_ chunk: TemplateChunk, _ error: any Error) -> JigdoError {
        let id = chunk.compression == .zlib ? "DATA" : "BZIP"
        return JigdoError(.corruptTemplate, path: info.path, "\(id) part at offset \(chunk.fileOffset - 16): \(error)")
    }

    private func chunkBytes(_ index: Int) throws -> ChunkBytes {
        let key = CacheKey(chunk: index, window: 0)
        if let cached = cache.value(for: key) { return cached }
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
            throw chunkError(chunk, error)
        }
        let bytes = ChunkBytes(out)
        cache.insert(bytes, for: key, cost: out.count)
        return bytes
    }

    /// Window `window` of large chunk `index`, from the cache or from a stream.
    private func windowBytes(_ index: Int, _ window: Int) throws -> ChunkBytes {
        let key = CacheKey(chunk: index, window: window)
        if let cached = cache.value(for: key) { return cached }
        let chunk = info.chunks[index]
        let target = window * windowSize
        // The idle stream of this chunk that is furthest along without having passed the window.
        var stream = streams.withLock { list -> ChunkStreamDecompressor? in
            let best = list.indices
                .filter { list[$0].chunk == index && list[$0].stream.produced <= target }
                .max { list[$0].stream.produced < list[$1].stream.produced }
            return best.map { list.remove(at: $0).stream }
        }
        do {
            if stream == nil {
                let compressed = try file.read(at: chunk.fileOffset, count: chunk.compressedLength)
                stream = try ChunkStreamDecompressor(
                    compression: chunk.compression, compressed: compressed, outputLength: chunk.uncompressedLength)
            }
            let s = stream!
            // Decompress (and drop) the windows before the target, then the target itself.
            var scratch: [UInt8] = []
            while s.produced < target {
                let n = min(windowSize, target - s.produced)
                if scratch.count != n { scratch = [UInt8](repeating: 0, count: n) }
                try scratch.withUnsafeMutableBytes { try s.next(into: $0) }
            }
            var out = [UInt8](repeating: 0, count: min(windowSize, chunk.uncompressedLength - target))
            try out.withUnsafeMutableBytes { try s.next(into: $0) }
            let bytes = ChunkBytes(out)
            cache.insert(bytes, for: key, cost: out.count)
            if s.produced < s.outputLength {
                streams.withLock { list in
                    list.append((index, s))
                    if list.count > Self.maxIdleStreams { list.removeFirst() }
                }
            }
            return bytes
        } catch let error as JigdoError {
            throw error
        } catch {
            throw chunkError(chunk, error)
        }
    }
}
