import JigdoFormat

/// Where the bytes of parts (the files matched into the image) come from.
///
/// Implementations must be safe to call from many threads at once. `readPart` may block, e.g.
/// while a download completes; it must only deliver bytes of a part whose checksum matched.
public protocol PartSource: Sendable {
    /// Copies `buffer.count` bytes of part `index` (index into `TemplateInfo.parts`), starting at
    /// `offset` within the part, into `buffer`. Throws `JigdoError(.partUnavailable)` when no
    /// location has the part.
    func readPart(_ index: Int, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws

    /// Whether the part can be read without waiting for the network (known local copy or cache).
    func isLocallyAvailable(_ index: Int) -> Bool

    /// Readies the parts one read of the image covers (`parts`, in read order) and runs
    /// `read`, which reads them (`readPart`). A source that would have to wait for some of them
    /// starts them all at once and waits once: under `ReadContext.mustNotWait` it throws one
    /// `WouldWait` for the whole set (it may try `read` first and plan only when a part would
    /// wait); otherwise it waits for the set, then reads. A source that never waits (the
    /// default) just runs `read`.
    func reading(_ parts: ReadParts, _ read: () throws -> Void) throws
}

extension PartSource {
    public func reading(_ parts: ReadParts, _ read: () throws -> Void) throws { try read() }
}

/// The parts one read of the image covers, in read order: the part areas among the layout
/// areas `areas` (`ImageReader` maps a read to its areas once). Nothing is allocated.
public struct ReadParts: Sequence, Sendable {
    public let layout: TemplateLayout
    public let areas: Range<Int>

    public init(layout: TemplateLayout, areas: Range<Int>) {
        self.layout = layout
        self.areas = areas
    }

    public struct Iterator: IteratorProtocol {
        let layout: TemplateLayout
        var area: Int
        let end: Int

        public mutating func next() -> Int? {
            while area < end {
                defer { area += 1 }
                if case .part(let p) = layout[area].source { return p }
            }
            return nil
        }
    }

    public func makeIterator() -> Iterator { Iterator(layout: layout, area: areas.lowerBound, end: areas.upperBound) }

    /// Whether the read covers more than one part area.
    public var coversSeveral: Bool {
        var it = makeIterator()
        return it.next() != nil && it.next() != nil
    }
}

extension PartSource {
    /// Indices of the `parts` (this source's template's) that cannot be read without the
    /// network. A zero-length part is never missing: it has no bytes to fetch. The one rule
    /// behind every `missingParts()`.
    public func missingParts(of parts: [TemplatePart]) -> [Int] {
        parts.indices.filter { parts[$0].length > 0 && !isLocallyAvailable($0) }
    }

    public func missingParts(of parts: TemplateParts) -> [Int] {
        parts.indices.filter { parts.length($0) > 0 && !isLocallyAvailable($0) }
    }
}

/// A source with no parts at all: every part read fails (used for template-only reads).
public struct NoParts: PartSource {
    public init() {}
    public func readPart(_ index: Int, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        throw JigdoError(.partUnavailable, "part \(index) is not available")
    }
    public func isLocallyAvailable(_ index: Int) -> Bool { false }
}
