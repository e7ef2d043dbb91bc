#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import JigdoFormat
import Synchronization

/// Reads the image bytes held in a template: the concatenated raw data of its DATA/BZIP parts.
///
/// A read decompresses only the chunks it touches; decompressed bytes are kept in a cache with
/// a byte budget, so sequential reads decompress each chunk once and memory stays bounded.
///
/// Small chunks (the usual ~1 MB or less) are decompressed whole. Large ones (jigdo-file packs a
/// long run of zeros into one zlib chunk of some 270 MB) are decompressed as a stream, in
/// windows of `windowSize`, reading their compressed bytes from the file as they go: the stream
/// of a chunk is kept between reads, so reading a large chunk front to back decompresses it
/// once. Streams record restart points as they pass (see ChunkStream.swift), so a read behind
/// every stream starts from the nearest point before it instead of the chunk's start: a random
/// read costs about `restartSpacing` of decompression.
///
/// Memory: the window cache (`cacheBudget`), at most `maxStreams` live streams (a bzip2 one
/// holds some 3.6 MB), and restart points within `restartBudget`.
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
    private static let maxIdleStreams = 2
    /// Streams alive at once (idle or in use); more readers wait for one.
    public static let maxStreams = 3
    private let streamSlots = DispatchSemaphore(value: TemplateDataReader.maxStreams)
    /// Restart points of the large chunks, made on first use.
    private let indexes = Mutex<[Int: RestartIndex]>([:])
    private let restartBudget: RestartBudget
    public let restartSpacing: Int
    private let streamedBytes = Atomic<Int>(0)
    /// Bytes decompressed by streams of large chunks so far (what random reads cost).
    public var streamedDecompressedBytes: Int { streamedBytes.load(ordering: .relaxed) }
    private let wholeChunks = Atomic<Int>(0)
    /// Small chunks decompressed (whole) so far: with the cache, each once while it stays
    /// cached, however many reads touch it.
    public var wholeChunkDecompressions: Int { wholeChunks.load(ordering: .relaxed) }

    struct CacheKey: Hashable, Sendable {
        var chunk: Int
        /// Window index within a large chunk; 0 for a chunk cached whole.
        var window: Int
    }

    /// Decompressed bytes of one chunk or window (immutable once made), in memory of their own
    /// (mmap): freed, they go back to the system at once. From malloc, glibc would keep such
    /// buffers in its per-thread arenas and the daemon's RSS would grow with its FUSE threads.
    final class ChunkBytes: @unchecked Sendable {
        let base: UnsafeMutableRawPointer
        let count: Int

        init(count: Int) throws {
            guard let p = mmap(nil, max(count, 1), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
                throw JigdoError(.io, "cannot allocate \(count) bytes", errno: SystemErrno(errno))
            }
            base = p
            self.count = count
        }

        deinit { munmap(base, max(count, 1)) }

        /// For filling, before the bytes are shared.
        var mutableBytes: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base, count: count) }
    }

    public init(file: ReadOnlyFile, info: TemplateInfo, cacheBudget: Int = 16 << 20,
                largeChunkThreshold: Int = 4 << 20, windowSize: Int = 1 << 20,
                restartSpacing: Int = 2 << 20, restartBudget: Int = 8 << 20) {
        self.file = file
        self.info = info
        self.cache = ByteBudgetCache(budget: cacheBudget)
        self.largeChunkThreshold = largeChunkThreshold
        self.windowSize = max(windowSize, 1)
        self.restartSpacing = max(restartSpacing, 1)
        self.restartBudget = RestartBudget(limit: restartBudget)
    }

    /// Restart points recorded so far (count and bytes, over all chunks).
    public var restartPoints: (count: Int, bytes: Int) {
        indexes.withLock { all in (all.values.reduce(0) { $0 + $1.count }, restartBudget.bytesUsed) }
    }

    private func restartIndex(_ chunk: Int) -> RestartIndex {
        indexes.withLock { all in
            if let i = all[chunk] { return i }
            let i = RestartIndex(spacing: restartSpacing, budget: restartBudget)
            all[chunk] = i
            return i
        }
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
            // Streamed: large output, or (a hostile template) large input for small output.
            if chunk.uncompressedLength > largeChunkThreshold || chunk.compressedLength > largeChunkThreshold {
                let window = inChunk / windowSize
                bytes = try windowBytes(index, window)
                start = inChunk - window * windowSize
            } else {
                bytes = try chunkBytes(index)
                start = inChunk
            }
            let n = min(buffer.count - done, bytes.count - start)
            (buffer.baseAddress! + done).copyMemory(from: bytes.base + start, byteCount: n)
            done += n
            offset += Int64(n)
        }
    }

    private func chunkError(_ chunk: TemplateChunk, _ error: any Error) -> JigdoError {
        let id = chunk.compression == .zlib ? "DATA" : "BZIP"
        return JigdoError(.corruptTemplate, path: info.path, "\(id) part at offset \(chunk.fileOffset - 16): \(error)", underlying: error)
    }

    private func chunkBytes(_ index: Int) throws -> ChunkBytes {
        let key = CacheKey(chunk: index, window: 0)
        if let cached = cache.value(for: key) { return cached }
        let chunk = info.chunks[index]
        let compressed = try file.read(at: chunk.fileOffset, count: chunk.compressedLength)
        let bytes = try ChunkBytes(count: chunk.uncompressedLength)
        do {
            try compressed.withUnsafeBytes { input in
                switch chunk.compression {
                case .zlib: try Decompression.inflateZlib(input, into: bytes.mutableBytes)
                case .bzip2: try Decompression.decompressBzip2(input, into: bytes.mutableBytes)
                }
            }
        } catch {
            throw chunkError(chunk, error)
        }
        wholeChunks.add(1, ordering: .relaxed)
        cache.insert(bytes, for: key, cost: bytes.count)
        return bytes
    }

    /// Window `window` of large chunk `index`, from the cache or from a stream.
    private func windowBytes(_ index: Int, _ window: Int) throws -> ChunkBytes {
        let key = CacheKey(chunk: index, window: window)
        if let cached = cache.value(for: key) { return cached }
        let chunk = info.chunks[index]
        let target = window * windowSize
        let restart = restartIndex(index)
        streamSlots.wait()
        defer { streamSlots.signal() }
        if let cached = cache.value(for: key) { return cached }
        // The idle stream of this chunk that is furthest along without having passed the window.
        let idle = streams.withLock { list -> ChunkStreamDecompressor? in
            let best = list.indices
                .filter { list[$0].chunk == index && list[$0].stream.produced <= target }
                .max { list[$0].stream.produced < list[$1].stream.produced }
            return best.map { list.remove(at: $0).stream }
        }
        // A restart point nearer than that stream. Not for the last window while no stream
        // from the start has checked the chunk's end (a restarted bzip2 stream cannot).
        let isLast = target + windowSize >= chunk.uncompressedLength
        var point = restart.point(atOrBefore: target)
        if isLast && !restart.endVerified { point = nil }
        if let p = point, let idle, idle.produced >= p.output { point = nil }
        var stream = point == nil ? idle : nil
        if stream == nil, let idle { keepIdle(index, idle) }
        do {
            do {
                return try decompressWindow(index, chunk, key, target, restart, &stream, from: point)
            } catch let failure as DecompressionFailure where point != nil {
                // A bad point (it is dropped): from the chunk's start instead, which checks all.
                _ = failure
                stream = nil
                return try decompressWindow(index, chunk, key, target, restart, &stream, from: nil)
            }
        } catch let error as JigdoError {
            throw error
        } catch {
            throw chunkError(chunk, error)
        }
    }

    private func decompressWindow(_ index: Int, _ chunk: TemplateChunk, _ key: CacheKey, _ target: Int, _ restart: RestartIndex,
                                  _ stream: inout ChunkStreamDecompressor?, from point: RestartPoint?) throws -> ChunkBytes {
        if stream == nil {
            stream = try ChunkStreamDecompressor(
                compression: chunk.compression, file: file, fileOffset: chunk.fileOffset, compressedLength: chunk.compressedLength,
                outputLength: chunk.uncompressedLength, index: restart, from: point)
        }
        let s = stream!
        let startedAt = s.produced
        defer { streamedBytes.add(s.produced - startedAt, ordering: .relaxed) }
        // Decompress (and drop) the bytes before the target, then the target window itself.
        let bytes = try ChunkBytes(count: min(windowSize, chunk.uncompressedLength - target))
        while s.produced < target {
            let n = min(bytes.count, target - s.produced)
            try s.next(into: UnsafeMutableRawBufferPointer(rebasing: bytes.mutableBytes[0..<n]))
        }
        try s.next(into: bytes.mutableBytes)
        cache.insert(bytes, for: key, cost: bytes.count)
        if s.produced < s.outputLength { keepIdle(index, s) }
        return bytes
    }

    private func keepIdle(_ index: Int, _ s: ChunkStreamDecompressor) {
        streams.withLock { list in
            list.append((index, s))
            if list.count > Self.maxIdleStreams { list.removeFirst() }
        }
    }
}
