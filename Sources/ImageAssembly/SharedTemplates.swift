import JigdoFormat
import Synchronization

/// The templates one mount or command has opened, by file identity (device, inode, size,
/// times): the images that name the same template file (the `[Image]` sections of a merged
/// .jigdo, or several .jigdo files) share one parse of it, its tables, its open file and its
/// checksum (hashed once), so N images on one template cost one template's memory. Every
/// parse is charged to `budget`.
public final class SharedTemplates: Sendable {
    public let budget: MetadataBudget

    private struct Parsed {
        var file: ReadOnlyFile
        var info: TemplateInfo
    }
    private struct SumKey: Hashable {
        var identity: FileIdentity
        var kind: ChecksumKind
    }
    private struct State {
        var parsed: [FileIdentity: Parsed] = [:]
        var sums: [SumKey: Checksum] = [:]
        var readers: [FileIdentity: TemplateDataReader] = [:]
        var parses = 0
    }
    private let state = Mutex(State())

    public init(budget: MetadataBudget = MetadataBudget()) {
        self.budget = budget
    }

    /// How many templates were parsed (not taken from this store).
    public var parseCount: Int { state.withLock { $0.parses } }

    /// The parsed template of `file`, parsed (and charged) the first time its identity is
    /// seen; then the file opened first and its tables. Two threads that parse the same file
    /// at once keep the first result, and the second's charge is given back.
    func template(of file: ReadOnlyFile) throws -> (ReadOnlyFile, TemplateInfo) {
        if let p = state.withLock({ $0.parsed[file.identity] }) { return (p.file, p.info) }
        let info = try TemplateInfo.read(file, budget: budget)
        let (kept, duplicate) = state.withLock { s -> (Parsed, Bool) in
            s.parses += 1
            if let p = s.parsed[file.identity] { return (p, true) }
            let p = Parsed(file: file, info: info)
            s.parsed[file.identity] = p
            return (p, false)
        }
        if duplicate {
            budget.release(TemplateInfo.tableCost(parts: info.parts.count, layoutEntries: info.layout.count,
                                                  chunks: info.chunks.count, kind: info.checksumKind))
        }
        return (kept.file, kept.info)
    }

    /// One reader of the template's raw data for every image of it: one decompression cache,
    /// one set of streams and restart points (16 MiB and 8 MiB at most), not one per image.
    public func dataReader(of image: JigdoImage) -> TemplateDataReader {
        let identity = image.templateFile.identity
        if let r = state.withLock({ $0.readers[identity] }) { return r }
        let made = TemplateDataReader(file: image.templateFile, info: image.template)
        return state.withLock { s in
            if let r = s.readers[identity] { return r }
            s.readers[identity] = made
            return made
        }
    }

    /// The `kind` checksum of the whole file, hashed once per identity.
    func checksum(of file: ReadOnlyFile, _ kind: ChecksumKind) throws -> Checksum {
        let key = SumKey(identity: file.identity, kind: kind)
        if let sum = state.withLock({ $0.sums[key] }) { return sum }
        let sum = try file.checksum(kind)
        state.withLock { $0.sums[key] = sum }
        return sum
    }
}
