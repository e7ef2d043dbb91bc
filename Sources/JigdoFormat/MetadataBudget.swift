import Synchronization

/// The memory that what .jigdo files and templates declare may cost one mount or one command:
/// the `[Parts]` entries of every .jigdo, the DESC entries of every template (a template named
/// by several images is parsed and charged once), and the per-image tables built from them.
/// Each is charged before it is built, at a measured cost per entry (see the constants), so a
/// file that declares too much is refused with one line before it costs the memory, never by
/// the kernel's OOM killer.
public final class MetadataBudget: Sendable {
    /// Admits Debian's Blu-ray releases (4 images of some 50,000 parts each: about 45 MiB with
    /// their .jigdo files) some five times over.
    public static let defaultLimit: Int64 = 256 << 20
    /// The option that sets the limit, named in the refusal.
    public static let optionName = "--max-metadata-memory"

    /// Bytes per `[Parts]` location kept in `JigdoDescriptor.parts`: its key, its location
    /// and their share of the tables (measured with `/usr/bin/time -v` on a million distinct
    /// lines, see README "Hostile .jigdo files").
    public static let bytesPerPartsEntry: Int64 = 160
    /// Bytes per template DESC entry: a part's checksum and length, a layout entry (offset and
    /// source); the checksum length is added per part.
    public static let bytesPerDescPart: Int64 = 8
    public static let bytesPerLayoutEntry: Int64 = 16
    /// Bytes per part of what each image builds from its template and .jigdo (the local
    /// lookup of its parts, the download book's entries), charged per image even when the
    /// template is shared.
    public static let bytesPerImagePart: Int64 = 16

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
        let of = available >= limit ? "the \(Self.size(limit)) limit" : "the \(Self.size(available)) left of the \(Self.size(limit)) limit"
        throw JigdoError(.overLimit, path: path, "\(what) need ~\(Self.size(bytes + chargedBefore)), more than \(of) (\(Self.optionName))")
    }

    /// Gives back what was charged for something that was not kept after all.
    public func release(_ bytes: Int64) {
        used.withLock { $0 = max(0, $0 - bytes) }
    }

    /// "37 MiB", "512 KiB", "200 bytes" (rounded up: a need is never shown smaller than it is).
    static func size(_ bytes: Int64) -> String {
        if bytes >= 1 << 20 { return "\((bytes + (1 << 20) - 1) >> 20) MiB" }
        if bytes >= 1 << 10 { return "\((bytes + 1023) >> 10) KiB" }
        return "\(bytes) bytes"
    }
}
