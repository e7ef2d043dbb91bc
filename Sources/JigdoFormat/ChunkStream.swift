#if canImport(Glibc)
import Glibc
#endif
import CBzip2
import CZlib
import Synchronization

// Streamed decompression of template chunks too large to hold whole (jigdo-file writes zlib
// chunks of some 270 MB for long runs of zeros; a hostile template may hold one of 1 GiB),
// with restart points so that a read deep inside such a chunk does not decompress everything
// before it each time.
//
// Restart points are recorded the first time a stream passes a place, every `spacing` bytes
// of output or so:
// - zlib (as zlib's examples/zran.c does): at a deflate block boundary, the compressed byte
//   offset, the bits of the previous byte still unused, and the 32 KiB window (the dictionary
//   the next block may refer to), itself kept deflate-compressed (a window of zeros costs some
//   hundred bytes). A stream restarts as a raw deflate stream primed with those bits and that
//   dictionary.
// - bzip2: at block boundaries. bzip2 blocks are independent (each carries its own CRC and
//   needs no earlier data), but start at any bit and libbzip2 has no call that says where a
//   block starts. So the compressed bytes are scanned for the 48-bit block magic as they are
//   read, and input is given to libbzip2 only up to each candidate: when libbzip2 then stops
//   for want of input with room left for output, every block before the candidate is out,
//   and the output offset is where that block starts. A stream restarts as a new stream: a
//   "BZh9" header followed by the compressed bits from that block on, shifted into byte
//   alignment. Such a stream's final check (the CRC of all blocks) cannot match; its end is
//   accepted only when a stream from the chunk's start has checked it before. A candidate
//   that was not a block start (the magic inside data by chance) fails libbzip2's own checks
//   when used; it is then dropped and the read goes on from an earlier point.

/// Where a chunk's stream can start again.
public struct RestartPoint: Sendable {
    /// Offset in the chunk's uncompressed output.
    public var output: Int
    /// zlib: the first compressed byte not yet wholly used (relative to the chunk's data).
    /// bzip2: the bit offset of the block's magic, over 8.
    public var input: Int
    /// zlib: bits of byte `input - 1` still to use (0-7). bzip2: the magic's bit within byte `input`.
    public var bits: Int
    /// zlib only: the dictionary (up to 32 KiB of output before `output`), zlib-compressed.
    public var window: [UInt8]
    var cost: Int { window.count + 64 }
}

/// The restart points of one chunk, shared by all its streams (thread-safe).
public final class RestartIndex: Sendable {
    public let spacing: Int
    private struct State {
        var points: [RestartPoint] = []
        var bytes = 0
        /// A stream from the start of the chunk ended as it should (bzip2: restarted streams may
        /// end without their own whole-stream check).
        var endVerified = false
    }
    private let state = Mutex(State())
    /// Bytes of points of all indexes sharing this budget (a hostile template's incompressible
    /// windows cannot take more than it).
    private let budget: RestartBudget

    public init(spacing: Int, budget: RestartBudget) {
        self.spacing = max(spacing, 1)
        self.budget = budget
    }

    /// Output offset after which the next point is wanted.
    func nextMark(after output: Int) -> Int {
        state.withLock { s in
            let last = s.points.last(where: { $0.output <= output })?.output ?? 0
            return last + spacing
        }
    }

    func add(_ point: RestartPoint) {
        guard budget.take(point.cost) else { return }
        let added = state.withLock { s -> Bool in
            // Points arrive in order from one stream; another stream may have added them already.
            if let i = s.points.firstIndex(where: { $0.output >= point.output }) {
                if s.points[i].output == point.output { return false }
                s.points.insert(point, at: i)
            } else {
                s.points.append(point)
            }
            s.bytes += point.cost
            return true
        }
        if !added { budget.give(point.cost) }
    }

    /// The last point at or before `output` (points after output 0 only).
    public func point(atOrBefore output: Int) -> RestartPoint? {
        state.withLock { s in s.points.last(where: { $0.output <= output }) }
    }

    func remove(output: Int) {
        let cost = state.withLock { s -> Int in
            guard let i = s.points.firstIndex(where: { $0.output == output }) else { return 0 }
            return s.points.remove(at: i).cost
        }
        budget.give(cost)
    }

    public var count: Int { state.withLock { $0.points.count } }
    public var bytes: Int { state.withLock { $0.bytes } }
    public var endVerified: Bool {
        get { state.withLock { $0.endVerified } }
    }
    func setEndVerified() { state.withLock { $0.endVerified = true } }

    deinit { budget.give(state.withLock { $0.bytes }) }
}

/// A byte budget shared by the restart indexes of one template.
public final class RestartBudget: Sendable {
    private let used = Mutex(0)
    public let limit: Int
    public init(limit: Int) { self.limit = limit }
    func take(_ n: Int) -> Bool {
        used.withLock { u in
            guard u + n <= limit else { return false }
            u += n
            return true
        }
    }
    func give(_ n: Int) { used.withLock { $0 -= n } }
    public var bytesUsed: Int { used.withLock { $0 } }
}

/// Decompresses one template chunk piece by piece, front to back, reading its compressed bytes
/// from the file as needed (never all at once), from the chunk's start or from a restart point.
///
/// Not thread-safe: one thread at a time (callers check a stream out and put it back).
/// The stream must yield exactly `outputLength` bytes; the call that produces the last byte
/// also checks that the compressed stream ends there.
public final class ChunkStreamDecompressor: @unchecked Sendable {
    public let compression: TemplateChunk.Compression
    public let outputLength: Int
    /// Output offset in the chunk of the next byte (where the stream started plus bytes produced).
    public private(set) var produced = 0
    /// The point this stream started from (nil: the chunk's start).
    public let startPoint: RestartPoint?

    private let file: ReadOnlyFile
    private let fileOffset: Int64
    private let compressedLength: Int
    private let index: RestartIndex?
    private static let inputSize = 64 << 10
    private let input: UnsafeMutableRawBufferPointer
    /// Compressed bytes of the chunk read so far (the next file read starts there).
    private var inputRead = 0
    /// bzip2 restarted streams: the bits are shifted by this much (0-7) into alignment.
    private var shift = 0
    private var carry: UInt8 = 0
    // zlib and bzip2 keep a back pointer to their stream struct, so it must not move: heap.
    private let zstream: UnsafeMutablePointer<z_stream>?
    private let bzstream: UnsafeMutablePointer<bz_stream>?
    private var failed: DecompressionFailure?
    private var nextMark: Int

    // bzip2 block boundary search (streams from the chunk's start only).
    /// The last 8 compressed bytes seen, for the magic search across buffer refills.
    private var magicRegister: UInt64 = 0
    /// Stall positions (byte offsets in the chunk: input is given only up to there) and bit
    /// offsets of candidate block starts not yet reached, in order.
    private var candidates: [(stallAt: Int, bit: Int)] = []
    private var candidateHead = 0
    /// Compressed bytes of the chunk given to libbzip2 so far.
    private var inputFed = 0
    /// Bytes of `input` not yet given to libbzip2 (from `inputStart`).
    private var inputStart = 0
    private var inputEnd = 0

    /// - Parameters:
    ///   - index: where points are recorded (and whose end check a restarted bzip2 stream relies on).
    ///   - point: start here instead of at the chunk's start.
    public init(compression: TemplateChunk.Compression, file: ReadOnlyFile, fileOffset: Int64, compressedLength: Int,
                outputLength: Int, index: RestartIndex?, from point: RestartPoint? = nil) throws(DecompressionFailure) {
        self.compression = compression
        self.outputLength = outputLength
        self.file = file
        self.fileOffset = fileOffset
        self.compressedLength = compressedLength
        self.index = index
        self.startPoint = point
        input = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.inputSize + 8, alignment: 16)
        produced = point?.output ?? 0
        nextMark = index?.nextMark(after: produced) ?? Int.max
        switch compression {
        case .zlib:
            let z = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
            z.initialize(to: z_stream())
            zstream = z
            bzstream = nil
            // Raw deflate from a point (no zlib header there, its trailer is not checked).
            guard jfs_inflateInit2(z, point == nil ? 15 : -15) == Z_OK else {
                z.deallocate()
                input.deallocate()
                throw DecompressionFailure("zlib initialisation failed")
            }
            if let point {
                do {
                    try primeZlib(z, point)
                } catch {
                    inflateEnd(z)
                    z.deallocate()
                    input.deallocate()
                    throw error
                }
            }
        case .bzip2:
            let b = UnsafeMutablePointer<bz_stream>.allocate(capacity: 1)
            b.initialize(to: bz_stream())
            bzstream = b
            zstream = nil
            // Its 3.6 MB of block state straight from mmap (see bzipAllocate).
            b.pointee.bzalloc = bzipAllocate
            b.pointee.bzfree = bzipFree
            guard BZ2_bzDecompressInit(b, 0, 0) == BZ_OK else {
                b.deallocate()
                input.deallocate()
                throw DecompressionFailure("bzip2 initialisation failed")
            }
            if let point {
                // A stream header, then the block's bits from its magic on.
                for (i, c) in "BZh9".utf8.enumerated() { input[i] = c }
                inputEnd = 4
                inputRead = point.input
                inputFed = point.input
                shift = point.bits
                if shift > 0 {
                    let first: UInt8
                    do throws(DecompressionFailure) {
                        first = try readByte(at: point.input)
                    } catch {
                        BZ2_bzDecompressEnd(b)
                        b.deallocate()
                        input.deallocate()
                        throw error
                    }
                    carry = first
                    inputRead += 1
                }
            }
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

    private var name: String { compression == .zlib ? "zlib" : "bzip2" }

    private func readCompressed(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(DecompressionFailure) {
        do {
            try file.read(at: fileOffset + Int64(offset), into: buffer)
        } catch {
            throw DecompressionFailure("\(error)")
        }
    }

    private func readByte(at offset: Int) throws(DecompressionFailure) -> UInt8 {
        do {
            return try file.read(at: fileOffset + Int64(offset), count: 1)[0]
        } catch {
            throw DecompressionFailure("\(error)")
        }
    }

    private func primeZlib(_ z: UnsafeMutablePointer<z_stream>, _ point: RestartPoint) throws(DecompressionFailure) {
        if point.bits > 0 {
            guard point.input >= 1 else { throw DecompressionFailure("bad restart point") }
            let byte = try readByte(at: point.input - 1)
            guard inflatePrime(z, Int32(point.bits), Int32(byte >> (8 - UInt8(point.bits)))) == Z_OK else {
                throw DecompressionFailure("zlib cannot restart at offset \(point.input)")
            }
        }
        if !point.window.isEmpty {
            var dictionary = [UInt8](repeating: 0, count: 32 << 10)
            var length = uLongf(dictionary.count)
            let rc = point.window.withUnsafeBytes { src in
                dictionary.withUnsafeMutableBytes { dst in
                    uncompress(dst.baseAddress!.assumingMemoryBound(to: Bytef.self), &length,
                               src.baseAddress!.assumingMemoryBound(to: Bytef.self), uLong(src.count))
                }
            }
            guard rc == Z_OK,
                  dictionary.withUnsafeBytes({ inflateSetDictionary(z, $0.baseAddress!.assumingMemoryBound(to: Bytef.self), uInt(length)) }) == Z_OK
            else { throw DecompressionFailure("zlib cannot restart at offset \(point.input)") }
        }
        inputRead = point.input
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
                if ended { return finished() }
            }
            if produced == outputLength {
                // All promised bytes are out: the stream must end here, with no byte to spare.
                var scratch: UInt8 = 0
                let ended = try withUnsafeMutableBytes(of: &scratch) { s throws(DecompressionFailure) in
                    try step(into: s, probing: true)
                }
                if !ended { throw DecompressionFailure("\(name) data holds more than the \(outputLength) bytes its header says") }
                finished()
            }
        } catch {
            failed = error
            // A point that leads to bad data is no point (a bzip2 magic found inside data).
            if let startPoint { index?.remove(output: startPoint.output) }
            throw error
        }
    }

    private func finished() {
        if startPoint == nil { index?.setEndVerified() }
    }

    /// Decompresses until `buffer` is full or the stream ends. Returns whether it ended.
    /// `probing`: the buffer is a one-byte probe; filling it means the data is too long.
    private func step(into buffer: UnsafeMutableRawBufferPointer, probing: Bool = false) throws(DecompressionFailure) -> Bool {
        if let z = zstream { return try stepZlib(z, buffer, probing: probing) }
        return try stepBzip2(bzstream!, buffer, probing: probing)
    }

    private func stepZlib(_ z: UnsafeMutablePointer<z_stream>, _ buffer: UnsafeMutableRawBufferPointer, probing: Bool) throws(DecompressionFailure) -> Bool {
        z.pointee.next_out = buffer.baseAddress!.assumingMemoryBound(to: Bytef.self)
        z.pointee.avail_out = uInt(buffer.count)
        while true {
            if z.pointee.avail_in == 0 && inputRead < compressedLength {
                let n = min(Self.inputSize, compressedLength - inputRead)
                try readCompressed(at: inputRead, into: UnsafeMutableRawBufferPointer(rebasing: input[0..<n]))
                inputRead += n
                z.pointee.next_in = input.baseAddress!.assumingMemoryBound(to: Bytef.self)
                z.pointee.avail_in = uInt(n)
            }
            // Z_BLOCK: stop at each deflate block boundary, where a point may be recorded.
            let rc = inflate(z, index == nil || probing ? Z_NO_FLUSH : Z_BLOCK)
            let out = produced + buffer.count - Int(z.pointee.avail_out)
            if rc == Z_STREAM_END {
                if z.pointee.avail_out != 0 && !probing {
                    throw DecompressionFailure("zlib data holds \(out) bytes, header says \(outputLength)")
                }
                if probing && z.pointee.avail_out == 0 { return false }
                return true
            }
            if rc == Z_OK {
                // At a block boundary that is not the end: 128 set, 64 (last block) clear.
                let type = z.pointee.data_type
                if out >= nextMark && type & 128 != 0 && type & 64 == 0 && !probing {
                    recordZlibPoint(z, output: out)
                }
                if z.pointee.avail_out == 0 { return false }
                continue
            }
            if z.pointee.avail_out == 0 { return false }
            if rc == Z_BUF_ERROR {
                if z.pointee.avail_in == 0 && inputRead < compressedLength { continue }
                throw DecompressionFailure("zlib data is truncated")
            }
            let msg = z.pointee.msg.map { String(cString: $0) } ?? "error \(rc)"
            throw DecompressionFailure("bad zlib data (\(msg))")
        }
    }

    private func recordZlibPoint(_ z: UnsafeMutablePointer<z_stream>, output: Int) {
        guard let index else { return }
        var dictionary = [UInt8](repeating: 0, count: 32 << 10)
        var length = uInt(0)
        guard dictionary.withUnsafeMutableBytes({ inflateGetDictionary(z, $0.baseAddress!.assumingMemoryBound(to: Bytef.self), &length) }) == Z_OK else { return }
        var packed = [UInt8](repeating: 0, count: Int(compressBound(uLong(length))))
        var packedLength = uLongf(packed.count)
        let rc = dictionary.withUnsafeBytes { src in
            packed.withUnsafeMutableBytes { dst in
                compress2(dst.baseAddress!.assumingMemoryBound(to: Bytef.self), &packedLength,
                          src.baseAddress!.assumingMemoryBound(to: Bytef.self), uLong(length), 1)
            }
        }
        guard rc == Z_OK else { return }
        packed.removeSubrange(Int(packedLength)...)
        let consumed = inputRead - Int(z.pointee.avail_in)
        index.add(RestartPoint(output: output, input: consumed, bits: Int(z.pointee.data_type & 7), window: packed))
        nextMark = output + index.spacing
    }

    /// Reads more compressed bytes into `input` (shifted into alignment for a restarted
    /// bzip2 stream), scanning them for block magics (streams from the start).
    private func refillBzip2() throws(DecompressionFailure) {
        guard inputRead < compressedLength else { return }
        // Candidates already passed are done with; a hostile input full of magics cannot make
        // the list grow past a bound (later ones are just not candidates).
        candidates.removeFirst(candidateHead)
        candidateHead = 0
        let n = min(Self.inputSize, compressedLength - inputRead)
        let raw = UnsafeMutableRawBufferPointer(rebasing: input[inputEnd..<inputEnd + n])
        try readCompressed(at: inputRead, into: raw)
        if startPoint == nil && index != nil {
            for i in 0..<n {
                magicRegister = magicRegister << 8 | UInt64(raw[i])
                let byteEnd = inputRead + i + 1
                guard byteEnd >= 7 else { continue }
                // The magic ends somewhere in this byte: 48 bits at 8 possible alignments.
                for s in 0..<8 {
                    if (magicRegister >> UInt64(s)) & 0xFFFF_FFFF_FFFF == 0x3141_5926_5359 {
                        let bit = byteEnd * 8 - s - 48
                        // Not the first block (its start is the chunk's start), not one that
                        // libbzip2 already has the start of.
                        if bit > 32, (bit + 7) / 8 >= inputFed, candidates.count < 1 << 14 {
                            candidates.append((stallAt: (bit + 7) / 8, bit: bit))
                        }
                    }
                }
            }
        }
        if shift > 0 {
            // Byte i of the stream is the bits from `shift` of raw byte i on, then the high bits
            // of the next one. The last raw byte stays behind as the carry.
            let s = UInt8(shift)
            var previous = carry
            for i in 0..<n {
                let b = raw[i]
                raw[i] = previous << s | b >> (8 - s)
                previous = b
            }
            carry = previous
            if inputRead + n == compressedLength {
                raw.baseAddress!.storeBytes(of: carry << s, toByteOffset: n, as: UInt8.self)
                inputEnd += 1
            }
        }
        inputRead += n
        inputEnd += n
    }

    private func stepBzip2(_ b: UnsafeMutablePointer<bz_stream>, _ buffer: UnsafeMutableRawBufferPointer, probing: Bool) throws(DecompressionFailure) -> Bool {
        b.pointee.next_out = buffer.baseAddress!.assumingMemoryBound(to: CChar.self)
        b.pointee.avail_out = UInt32(buffer.count)
        while true {
            if b.pointee.avail_in == 0 {
                if inputStart == inputEnd {
                    inputStart = 0
                    inputEnd = 0
                    try refillBzip2()
                }
                // Up to the next candidate's stall position only (chunk offsets = inputFed + i).
                var available = inputEnd - inputStart
                while candidateHead < candidates.count && candidates[candidateHead].stallAt < inputFed { candidateHead += 1 }
                if candidateHead < candidates.count { available = min(available, candidates[candidateHead].stallAt - inputFed) }
                b.pointee.next_in = (input.baseAddress! + inputStart).assumingMemoryBound(to: CChar.self)
                b.pointee.avail_in = UInt32(available)
                inputStart += available
                inputFed += available
            }
            let before = b.pointee.avail_in
            let rc = BZ2_bzDecompress(b)
            let out = produced + buffer.count - Int(b.pointee.avail_out)
            if rc == BZ_STREAM_END || rc == BZ_DATA_ERROR && startPoint != nil && out == outputLength && (index?.endVerified ?? false) {
                if b.pointee.avail_out != 0 && !probing {
                    throw DecompressionFailure("bzip2 data holds \(out) bytes, header says \(outputLength)")
                }
                if probing && b.pointee.avail_out == 0 { return false }
                return true
            }
            if rc != BZ_OK { throw DecompressionFailure("bad bzip2 data (error \(rc))") }
            if b.pointee.avail_out == 0 { return false }
            if b.pointee.avail_in == 0 {
                if candidateHead < candidates.count && candidates[candidateHead].stallAt == inputFed {
                    // Starved at a candidate with room for output: every block before it is out.
                    let c = candidates[candidateHead]
                    candidateHead += 1
                    if out >= nextMark, let index {
                        index.add(RestartPoint(output: out, input: c.bit / 8, bits: c.bit % 8, window: []))
                        nextMark = out + index.spacing
                    }
                    continue
                }
                if inputStart == inputEnd && inputRead >= compressedLength && before == 0 {
                    throw DecompressionFailure("bzip2 data is truncated")
                }
            }
        }
    }
}

// libbzip2's allocator for streams: large blocks (its per-block arrays, 3.6 MB at level 9) are
// mapped and unmapped, so a stream that ends gives its memory back at once; through malloc,
// glibc keeps such blocks in per-thread arenas once one has been freed (its mmap threshold
// rises), and many reader threads make that many arenas. A header before each block keeps its size.
private let bzipHeader = 16

private func bzipAllocate(_ opaque: UnsafeMutableRawPointer?, _ items: Int32, _ size: Int32) -> UnsafeMutableRawPointer? {
    let (bytes, overflow) = Int(items).multipliedReportingOverflow(by: Int(size))
    guard !overflow, bytes >= 0 else { return nil }
    let total = bytes + bzipHeader
    guard let p = mmap(nil, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else { return nil }
    p.storeBytes(of: total, as: Int.self)
    return p + bzipHeader
}

private func bzipFree(_ opaque: UnsafeMutableRawPointer?, _ pointer: UnsafeMutableRawPointer?) {
    guard let pointer else { return }
    let p = pointer - bzipHeader
    munmap(p, p.load(as: Int.self))
}
