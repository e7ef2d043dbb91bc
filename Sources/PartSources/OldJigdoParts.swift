import ImageAssembly
import JigdoFormat

/// Parts of another jigdo image, typically the previous release (`--scan-jigdo OLD.jigdo`): a
/// part of this image with the same checksum as one of the other image is read through the
/// other image's own part sources (its local locations, its `--map`, the shared cache).
/// Nothing is hashed: the checksums in the two templates say which parts are the same.
public final class OldJigdoParts: PartSource {
    private let other: any PartSource
    /// This image's part index -> the other image's part index with the same checksum.
    private let counterpart: [Int?]

    public init(template: TemplateInfo, otherTemplate: TemplateInfo, otherParts: any PartSource) {
        var byChecksum: [Checksum: Int] = [:]
        for (i, part) in otherTemplate.parts.enumerated() where byChecksum[part.checksum] == nil {
            byChecksum[part.checksum] = i
        }
        counterpart = template.parts.map { byChecksum[$0.checksum] }
        other = otherParts
    }

    public func isLocallyAvailable(_ index: Int) -> Bool {
        guard let o = counterpart[index] else { return false }
        return other.isLocallyAvailable(o)
    }

    public func readPart(_ index: Int, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        guard let o = counterpart[index] else {
            throw JigdoError(.partUnavailable, "part \(index) is not in the other image")
        }
        try other.readPart(o, at: offset, into: buffer)
    }
}
