import Synchronization

/// The memory that what .jigdo files and templates declare may cost one mount or one command:
/// the `[Parts]` and `[Servers]` locations of every .jigdo and the DESC entries of every
/// template (a template named by several images is parsed and charged once: `SharedTemplates`).
/// Each is charged before it is kept, at a measured cost per entry (see the constants), so a
/// file that declares too much is refused with one line before it costs the memory, never by
/// the kernel's OOM killer.
public final class MetadataBudget: Sendable {
    /// Admits Debian's Blu-ray releases (4 images of some 50,000 parts each: about 42 MiB with
    /// their .jigdo files) six times over.
    public static let defaultLimit: Int64 = 256 << 20
    /// The option that sets the limit, named in the refusal.
    public static let optionName = "--max-metadata-memory"

    /// Bytes per `[Parts]` location kept in `JigdoDescriptor.parts` (`JigdoPartsTable`), at
    /// the table's peak while it grows: `info` of a million distinct SHA256 lines of 17-byte
    /// locations peaks 97 MiB above a tiny .jigdo's RSS (102 bytes a line; MD5: 79 MiB;
    /// `bench/hostile-jigdo.sh`, uniqsha and uniqparts). A byte of location text costs up to 2
    /// while the arena grows: 160 covers Debian's ~45-byte `Debian:pool/main/...` locations.
    /// It was 288 while `[Parts]` was a dictionary of String keys and arrays.
    public static let bytesPerPartsEntry: Int64 = 160
    /// Bytes per `[Servers]` location kept in `JigdoDescriptor.servers`: a dictionary of String
    /// keys and arrays, as `[Parts]` was when 288 was measured for it.
    public static let bytesPerServersEntry: Int64 = 288
    /// Bytes per template DESC entry: a part's length (its checksum's 16 or 32 bytes are
    /// added), a layout entry's start and source. `info` of 2,150,000 MD5 entries peaks 94 MiB
    /// above a tiny template's RSS: these 82 MiB and the sort that counts distinct parts.
    public static let bytesPerDescPart: Int64 = 8
    public static let bytesPerLayoutEntry: Int64 = 16

    public let limit: Int64
    private let used = Mutex<Int64>(0)

    public init(limit: Int64 = MetadataBudget.defaultLimit) {
        self.limit = limit
    }

    /// What has been charged so far.
    public var charged: Int64 { used.withLock { $0 } }

    /// Takes `bytes` for `what` (e.g. "2150000 DESC entries") of the file at `path`, or throws
    /// one line naming the file, what it declares, what that needs and the limit.
    /// `chargedBefore`: what was already charged for the same thing (a file read in batches),
    /// counted in the need the line shows.
    public func charge(_ bytes: Int64, for what: String, path: String, chargedBefore: Int64 = 0) throws {
        let left: Int64? = used.withLock { used in
            let left = limit - used
            guard bytes <= left else { return left }
            used += bytes
            return nil
        }
        guard let left else { return }
        let available = max(0, left + chargedBefore)
        // Less than 1 MiB taken by other files (a .jigdo's few servers) is not worth a word.
        let of = limit - available < min(limit, 1 << 20) ? "the \(Self.size(limit)) limit"
            : "the \(Self.size(available, roundingUp: false)) left of the \(Self.size(limit)) limit"
        throw JigdoError(.overLimit, path: path, "\(what) need ~\(Self.size(bytes + chargedBefore)), more than \(of) (\(Self.optionName))")
    }

    /// Gives back what was charged for something that was not kept after all.
    public func release(_ bytes: Int64) {
        used.withLock { $0 = max(0, $0 - bytes) }
    }

    /// "37 MiB", "512 KiB", "200 bytes"; rounded up by default (a need is never shown smaller
    /// than it is), down for what is left.
    static func size(_ bytes: Int64, roundingUp: Bool = true) -> String {
        if bytes >= 1 << 20 { return "\((bytes + (roundingUp ? (1 << 20) - 1 : 0)) >> 20) MiB" }
        if bytes >= 1 << 10 { return "\((bytes + (roundingUp ? 1023 : 0)) >> 10) KiB" }
        return "\(bytes) bytes"
    }
}
