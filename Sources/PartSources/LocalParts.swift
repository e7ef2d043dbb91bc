#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import ImageAssembly
import JigdoFormat
import Logging
import Synchronization

/// Parts found on local disk: files from `--scan` directories (matched by size, then checksum),
/// and local locations the jigdo resolves to (`--map LABEL=DIR`, `file:` servers), which are
/// checked against their checksum the first time they are used.
public final class LocalParts: PartSource {
    private enum Resolution: Sendable {
        case verified(String)
        /// No usable copy; `rejected` says why the local candidates were refused (for the error).
        case unavailable(rejected: [String])
    }

    public let template: TemplateInfo
    private let logger: Logger
    /// Checksum -> files already known to have that checksum (from the scan).
    private let scanned: [Checksum: [String]]
    /// Checksum -> local locations to check on first use, in order.
    private let unverified: [Checksum: [String]]
    /// The local directories locations are confined to: every `--map` directory and local
    /// server of a label (the .jigdo's own only if it may name local files).
    private let roots: [String]
    private let resolved = Mutex<[Checksum: Resolution]>([:])
    private let openFiles = ByteBudgetCache<String, ReadOnlyFile>(budget: 64)

    /// What a `--scan` did: files whose size fit a part, how many of them were read and hashed,
    /// and how many checksums came from the persistent cache instead.
    public struct ScanReport: Sendable, Equatable {
        public var candidates = 0
        public var hashedFiles = 0
        public var hashedBytes: Int64 = 0
        public var fromCache = 0
    }
    public let scanReport: ScanReport

    /// Progress of a scan: bytes hashed so far and bytes to hash in total.
    public typealias ScanProgress = @Sendable (_ hashed: Int64, _ total: Int64) -> Void

    public init(
        template: TemplateInfo,
        resolver: LocationResolver,
        scanDirectories: [String],
        checksumCache: ChecksumCache? = nil,
        logger: Logger = Logger(label: "jigdofs.local"),
        progress: ScanProgress? = nil
    ) throws {
        self.template = template
        self.logger = logger
        var unverified: [Checksum: [String]] = [:]
        for part in template.parts where unverified[part.checksum] == nil {
            var paths: [String] = []
            for loc in resolver.locations(forPart: part.checksum) {
                if case .local(let p) = loc { paths.append(p) }
            }
            unverified[part.checksum] = paths
        }
        self.unverified = unverified
        self.roots = Self.localRoots(resolver)
        (self.scanned, self.scanReport) = try Self.scan(scanDirectories, template: template, cache: checksumCache, progress: progress)
    }

    static func localRoots(_ resolver: LocationResolver) -> [String] {
        var roots = Set<String>()
        let labels = Set(resolver.descriptor.servers.keys).union(resolver.prepend.keys).union(resolver.replace.keys).union(resolver.append.keys)
        for label in labels {
            let user = Set((resolver.prepend[label] ?? []) + (resolver.replace[label] ?? []) + (resolver.append[label] ?? []))
            for entry in resolver.serverEntries(for: label) where user.contains(entry) || resolver.allowLocalFromJigdo {
                if let dir = localDirectory(ofServerValue: entry.value, base: entry.base) { roots.insert(dir) }
            }
        }
        return roots.sorted()
    }

    private enum Confinement {
        /// The file's real path, inside a directory it is confined to (or not under any).
        case inside(String)
        case outside
        case missing
    }

    /// Where `path` really is: under one of `roots` (lexically) it must also be there with
    /// links resolved. A path under no root was written as a plain local location of a local
    /// .jigdo (a remote one cannot name local files), and is taken as it is.
    private func confine(_ path: String) -> Confinement {
        let containing = roots.filter { path.hasPrefix($0) }
        if containing.isEmpty { return .inside(path) }
        guard fileExists(path) else { return .missing }
        for root in containing {
            if let real = realPath(path, inside: root) { return .inside(real) }
        }
        return .outside
    }

    /// Walks the directories, hashes only files whose size equals some part's size, and keeps
    /// those whose checksum is a part's.
    /// Files whose checksum is in `cache` (same path, size, mtime and inode) are not read again.
    static func scan(_ dirs: [String], template: TemplateInfo, cache: ChecksumCache?, progress: ScanProgress?) throws -> ([Checksum: [String]], ScanReport) {
        guard !dirs.isEmpty else { return ([:], ScanReport()) }
        let wanted = WantedParts(template)
        var candidates: [ScannedFile] = []
        var seen = Set<String>()
        for dir in dirs {
            try DirectoryWalker.walk(absolutePath(dir)) { file in
                if wanted.fits(size: file.size), seen.insert(file.path).inserted { candidates.append(file) }
            }
        }
        let kind = template.checksumKind
        let list = candidates
        let result = CandidateChecksums(
            sizes: list.map(\.size), keys: list, kind: kind, cache: cache, progress: progress,
            hash: { try? ReadOnlyFile(path: list[$0].path).checksum(kind) })
        var found: [Checksum: [String]] = [:]
        for (i, sum) in result.sums where wanted.isPart(sum, size: list[i].size) {
            found[sum, default: []].append(list[i].path)
        }
        let report = ScanReport(candidates: list.count, hashedFiles: result.hashedFiles,
                                hashedBytes: result.hashedBytes, fromCache: result.fromCache)
        // Deterministic order: the same path wins whatever the thread timing.
        return (found.mapValues { $0.sorted() }, report)
    }

    /// Whether a local copy exists (found by the scan, or a local location with the right size;
    /// the latter is verified on first use).
    public func isLocallyAvailable(_ index: Int) -> Bool {
        let part = template.parts[index]
        switch resolved.withLock({ $0[part.checksum] }) {
        case .verified?: return true
        case .unavailable?: return false
        case nil: break
        }
        if scanned[part.checksum] != nil { return true }
        return (unverified[part.checksum] ?? []).contains { path in
            guard case .inside(let real) = confine(path) else { return false }
            return fileSize(real) == part.length
        }
    }

    /// Indices of parts with no local copy.
    public func missingParts() -> [Int] {
        template.parts.indices.filter { !isLocallyAvailable($0) }
    }

    public func readPart(_ index: Int, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        let part = template.parts[index]
        let path = try verifiedPath(for: part)
        let file = try open(path)
        guard file.size == part.length else {
            throw JigdoError(.io, path: path, "changed size since it was checked (\(file.size) bytes, part is \(part.length))")
        }
        try file.read(at: offset, into: buffer)
    }

    private func open(_ path: String) throws -> ReadOnlyFile {
        if let f = openFiles.value(for: path) { return f }
        let f = try ReadOnlyFile(path: path)
        openFiles.insert(f, for: path, cost: 1)
        return f
    }

    private func verifiedPath(for part: TemplatePart) throws -> String {
        switch resolved.withLock({ $0[part.checksum] }) {
        case .verified(let p)?: return p
        case .unavailable(let rejected)?: throw unavailable(part, rejected: rejected)
        case nil: break
        }
        if let p = scanned[part.checksum]?.first {
            resolved.withLock { $0[part.checksum] = .verified(p) }
            return p
        }
        var rejected: [String] = []
        for location in unverified[part.checksum] ?? [] {
            let path: String
            switch confine(location) {
            case .inside(let real): path = real
            case .missing: continue
            case .outside:
                rejected.append("\(location) leaves its mapped directory (links or ..), refused")
                logger.debug("part \(part.checksum.base64): local copy refused: \(rejected.last!)")
                continue
            }
            guard fileSize(path) == part.length else { continue }
            do {
                let sum = try ReadOnlyFile(path: path).checksum(part.checksum.kind ?? template.checksumKind)
                if sum == part.checksum {
                    resolved.withLock { $0[part.checksum] = .verified(path) }
                    return path
                }
                // Never the file's checksum: it would tell what any local file holds.
                rejected.append("\(path) does not match")
            } catch {
                rejected.append("\(error)")
            }
            // Debug only: the error thrown below carries the reason, and the CLI prints errors
            // as one line.
            logger.debug("part \(part.checksum.base64): local copy refused: \(rejected.last!)")
        }
        resolved.withLock { $0[part.checksum] = .unavailable(rejected: rejected) }
        throw unavailable(part, rejected: rejected)
    }

    private func unavailable(_ part: TemplatePart, rejected: [String]) -> JigdoError {
        if rejected.isEmpty {
            return JigdoError(.partUnavailable, "part \(part.checksum.base64) (\(part.length) bytes) has no local copy")
        }
        return JigdoError(.partUnavailable,
            "part \(part.checksum.base64) (\(part.length) bytes): no local copy with the right checksum (\(rejected.joined(separator: "; ")))")
    }
}

func fileSize(_ path: String) -> Int64? {
    var st = stat()
    guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
    return Int64(st.st_size)
}
