import ImageAssembly
import Synchronization

/// A PartSource that records which parts were read.
public final class CountingParts: PartSource {
    public let inner: any PartSource
    public let reads = Mutex<[Int: Int]>([:])
    public init(_ inner: any PartSource) { self.inner = inner }
    public func readPart(_ index: Int, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        reads.withLock { $0[index, default: 0] += 1 }
        try inner.readPart(index, at: offset, into: buffer)
    }
    public func isLocallyAvailable(_ index: Int) -> Bool { inner.isLocallyAvailable(index) }
    public var partsRead: Set<Int> { reads.withLock { Set($0.keys) } }
}
