#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The lines of a byte stream, one at a time, without holding the stream: memory is one buffer
/// of the longest line seen (at most `maxLineLength`), whatever the stream's size.
///
/// A line is what lies between two LF bytes (the last one may have no LF; a stream ending in LF
/// has an empty last line, as `split(omittingEmptySubsequences: false)` gives it). A line
/// longer than `maxLineLength` comes as its first `overlongPrefix` bytes with its real length.
final class LineReader {
    /// Fills the buffer with the next bytes of the stream; returns how many (0: no more).
    typealias Fill = (UnsafeMutableRawBufferPointer) throws -> Int

    struct Line {
        /// The line's bytes without its LF (only a prefix when `length > bytes.count`); valid
        /// until the next call of `next`.
        var bytes: UnsafeBufferPointer<UInt8>
        /// The whole line's length.
        var length: Int
        var isOverlong: Bool { length > bytes.count }
    }

    let maxLineLength: Int
    let overlongPrefix: Int
    private let fill: Fill
    private var buffer: UnsafeMutableRawBufferPointer
    private var start = 0
    private var end = 0
    /// Bytes from `start` already searched for LF in vain.
    private var searched = 0
    private var ended = false
    private var finished = false

    init(maxLineLength: Int = 1 << 20, overlongPrefix: Int = 4 << 10, initialCapacity: Int = 128 << 10, fill: @escaping Fill) {
        self.maxLineLength = maxLineLength
        self.overlongPrefix = min(overlongPrefix, maxLineLength / 2)
        self.fill = fill
        buffer = .allocate(byteCount: max(min(initialCapacity, maxLineLength), 16), alignment: 16)
    }

    deinit { buffer.deallocate() }

    private var base: UnsafeMutablePointer<UInt8> { buffer.baseAddress!.assumingMemoryBound(to: UInt8.self) }

    /// At least the first `count` bytes of what is left (fewer at the end of the stream),
    /// without consuming them; valid until the next call.
    func peek(_ count: Int) throws -> UnsafeBufferPointer<UInt8> {
        while end - start < count && !ended {
            if start + count > buffer.count { compactOrGrow(to: count) }
            try readMore()
        }
        return UnsafeBufferPointer(start: base + start, count: min(count, end - start))
    }

    /// Every byte that is left, dropped.
    func discardRest() throws {
        while !ended {
            start = 0
            end = 0
            try readMore()
        }
        start = 0
        end = 0
        finished = true
    }

    func next() throws -> Line? {
        if finished { return nil }
        while true {
            let from = start + searched
            if end > from, let p = memchr(base + from, 0x0A, end - from) {
                let lf = base.distance(to: p.assumingMemoryBound(to: UInt8.self))
                let line = Line(bytes: UnsafeBufferPointer(start: base + start, count: lf - start), length: lf - start)
                start = lf + 1
                searched = 0
                return line
            }
            searched = end - start
            if ended {
                finished = true
                let line = Line(bytes: UnsafeBufferPointer(start: base + start, count: end - start), length: end - start)
                start = end
                return line
            }
            if end - start >= maxLineLength { return try overlongLine() }
            if end == buffer.count { compactOrGrow(to: end - start + 1) }
            try readMore()
        }
    }

    /// A line of more than `maxLineLength` bytes: its first `overlongPrefix` are kept at the
    /// buffer's front, the rest is read through behind them up to the LF.
    private func overlongLine() throws -> Line {
        let prefix = overlongPrefix
        memmove(base, base + start, prefix)
        var length = end - start
        start = prefix
        end = prefix
        while true {
            try readMore()
            if end == start {
                finished = true
                return Line(bytes: UnsafeBufferPointer(start: base, count: prefix), length: length)
            }
            if let p = memchr(base + start, 0x0A, end - start) {
                let lf = base.distance(to: p.assumingMemoryBound(to: UInt8.self))
                length += lf - start
                start = lf + 1
                searched = 0
                return Line(bytes: UnsafeBufferPointer(start: base, count: prefix), length: length)
            }
            length += end - start
            end = prefix
        }
    }

    /// Moves the unread bytes to the front, growing the buffer (up to `maxLineLength`) when it
    /// cannot hold `needed` bytes.
    private func compactOrGrow(to needed: Int) {
        let left = end - start
        if needed > buffer.count {
            var size = buffer.count
            while size < needed { size *= 2 }
            let grown = UnsafeMutableRawBufferPointer.allocate(byteCount: min(max(size, needed), max(maxLineLength, needed)), alignment: 16)
            grown.baseAddress!.copyMemory(from: buffer.baseAddress! + start, byteCount: left)
            buffer.deallocate()
            buffer = grown
        } else if start > 0 {
            memmove(base, base + start, left)
        }
        start = 0
        end = left
    }

    private func readMore() throws {
        guard !ended else { return }
        if end == buffer.count { compactOrGrow(to: end - start + 1) }
        let n = try fill(UnsafeMutableRawBufferPointer(rebasing: buffer[end...]))
        if n == 0 { ended = true }
        end += n
    }
}
