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
