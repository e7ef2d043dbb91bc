import Foundation
import JigdoFormat
import Synchronization

/// Reads a whole image in order, as fast as the sources allow, and checks the template's image
/// checksum. Reading and hashing/writing run on two threads with a few large buffers between
/// them, so the slower of the two sets the pace.
public struct ImageStreamer: Sendable {
    public let reader: ImageReader
    public var bufferSize = 4 << 20
    public var bufferCount = 4

    public init(reader: ImageReader) {
        self.reader = reader
    }

    public struct Result: Sendable {
        public var checksum: Checksum
        public var matches: Bool
    }

    /// Streams the image through `sink`; `progress` gets the bytes done so far (from the
    /// consuming thread). Throws the first error of either side.
    public func stream(
        sink: (UnsafeRawBufferPointer) throws -> Void,
        progress: (Int64) -> Void = { _ in }
    ) throws -> Result {
        let size = reader.size
        let kind = reader.info.checksumKind
        let pipe = BufferPipe(count: bufferCount, size: bufferSize)
        defer { pipe.deallocate() }
        let producerError = Mutex<(any Error)?>(nil)
        let reader = self.reader
        let bufferSize = self.bufferSize

        let producer = Thread {
            var offset: Int64 = 0
            while offset < size {
                guard let slot = pipe.takeEmpty() else { return }
                let n = Int(min(Int64(bufferSize), size - offset))
                do {
                    try reader.read(at: offset, into: UnsafeMutableRawBufferPointer(rebasing: pipe.buffers[slot][0..<n]))
                } catch {
                    producerError.withLock { $0 = error }
                    pipe.finish(slot: nil)
                    return
                }
                pipe.putFull(slot: slot, length: n)
                offset += Int64(n)
            }
            pipe.finish(slot: nil)
        }
        producer.stackSize = 1 << 20
        producer.start()

        var hasher = ChecksumHasher(kind)
        var done: Int64 = 0
        do {
            while let (slot, length) = pipe.takeFull() {
                let data = UnsafeRawBufferPointer(rebasing: pipe.buffers[slot][0..<length])
                hasher.update(data)
                try sink(data)
                done += Int64(length)
                pipe.putEmpty(slot: slot)
                progress(done)
            }
        } catch {
            pipe.cancel()
            pipe.waitForProducer()
            throw error
        }
        pipe.waitForProducer()
        if let error = producerError.withLock({ $0 }) { throw error }
        let sum = hasher.finalize()
        return Result(checksum: sum, matches: sum == reader.info.imageChecksum && done == size)
    }
}

/// A fixed set of buffers passed between one producer and one consumer thread.
final class BufferPipe: @unchecked Sendable {
    let buffers: [UnsafeMutableRawBufferPointer]
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var empty: [Int]
    private var full: [(Int, Int)] = []
    private var finished = false
    private var cancelled = false
    private var producerDone = false

    init(count: Int, size: Int) {
        buffers = (0..<count).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 4096) }
        empty = Array(0..<count)
    }

    func deallocate() { buffers.forEach { $0.deallocate() } }

    /// Producer: an empty buffer, or nil when the consumer gave up.
    func takeEmpty() -> Int? {
        condition.lock(); defer { condition.unlock() }
        while empty.isEmpty && !cancelled { condition.wait() }
        if cancelled { producerDone = true; condition.broadcast(); return nil }
        return empty.removeFirst()
    }

    func putFull(slot: Int, length: Int) {
        condition.lock(); defer { condition.unlock() }
        full.append((slot, length))
        condition.broadcast()
    }

    func finish(slot: Int?) {
        condition.lock(); defer { condition.unlock() }
        finished = true
        producerDone = true
        condition.broadcast()
    }

    /// Consumer: the next full buffer, or nil at the end.
    func takeFull() -> (Int, Int)? {
        condition.lock(); defer { condition.unlock() }
        while full.isEmpty && !finished { condition.wait() }
        if full.isEmpty { return nil }
        return full.removeFirst()
    }

    func putEmpty(slot: Int) {
        condition.lock(); defer { condition.unlock() }
        empty.append(slot)
        condition.broadcast()
    }

    func cancel() {
        condition.lock(); defer { condition.unlock() }
        cancelled = true
        condition.broadcast()
    }

    func waitForProducer() {
        condition.lock(); defer { condition.unlock() }
        while !producerDone { condition.wait() }
    }
}
