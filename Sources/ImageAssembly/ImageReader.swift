import JigdoFormat

/// Random access to the bytes of a jigdo image: the single read path used by make-image,
/// verify, the FUSE mount and the browse view.
///
/// Thread-safe: any number of threads may read any ranges at once. A read touches only the
/// template chunks and parts its range covers. A read of several parts is planned whole
/// (`PartSource.reading`): every part it lacks is started at once, and it waits once.
public final class ImageReader: Sendable {
    public let template: TemplateDataReader
    public let parts: any PartSource
    public var info: TemplateInfo { template.info }
    public var size: Int64 { template.info.imageLength }

    public init(template: TemplateDataReader, parts: any PartSource) {
        self.template = template
        self.parts = parts
    }

    /// Fills `buffer` with image bytes from `offset`. Returns the number of bytes read, which is
    /// less than `buffer.count` only at the end of the image (0 at or past the end).
    @discardableResult
    public func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard offset >= 0 else { throw JigdoError(.invalidArgument, "negative offset \(offset)") }
        guard offset < size, buffer.count > 0 else { return 0 }
        let total = Int(min(Int64(buffer.count), size - offset))
        let info = template.info
        guard let first = info.layoutIndex(containing: offset) else { return 0 }
        // The areas the read covers, mapped once: from `first` to the one holding its last byte.
        let end = offset + Int64(total)
        var last = first
        while info.layout.imageOffset(last + 1) < end { last += 1 }
        func readAreas() throws {
            var index = first
            var done = 0
            while done < total {
                let entry = info.layout[index]
                let pos = offset + Int64(done)
                let within = pos - entry.imageOffset
                let n = Int(min(Int64(total - done), entry.length - within))
                let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<done + n])
                switch entry.source {
                case .templateData(let dataOffset):
                    try template.read(at: dataOffset + within, into: slice)
                case .part(let p):
                    try parts.readPart(p, at: within, into: slice)
                }
                done += n
                index += 1
            }
        }
        // A read of several parts is planned whole: the source starts every part it lacks at
        // once (one wait for the set) before a byte is read. A read within one part needs no plan.
        let covered = ReadParts(layout: info.layout, areas: first..<(last + 1))
        if covered.coversSeveral {
            try parts.reading(covered, readAreas)
        } else {
            try readAreas()
        }
        return total
    }

    /// Convenience for tests and small reads.
    public func read(at offset: Int64, count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let n = try out.withUnsafeMutableBytes { try read(at: offset, into: $0) }
        out.removeSubrange(n...)
        return out
    }
}
