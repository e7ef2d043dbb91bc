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
public final class LocalParts: LocalCopySource {
    private enum Resolution: Sendable {
        /// The file and what it was when its bytes were checked: a file whose identity has
        /// changed since (rewritten, replaced) is checked again before it is served.
        case verified(String, FileIdentity)
        /// No usable copy; `rejected` says why the local candidates were refused (for the error).
        case unavailable(rejected: [String])
    }

    public let template: TemplateInfo
    private let logger: Logger
    /// Checksum -> files already known to have that checksum (from the scan).
    private let scanned: [Checksum: [String]]
    /// What the scan saw of each file it hashed and matched (size, mtime, inode): unchanged at
    /// first use, the scan's checksum holds; changed, the file is hashed again.
    private let scannedFiles: [String: ScannedFile]
    /// Files matched by their checksum cache entry alone: a hint, hashed at first use (anyone
    /// who could write the cache could have mapped any file of the right size to a part).
    private let hinted: [String: ScannedFile]
    private let checksumCache: ChecksumCache?
    /// Checksum -> local locations to check on first use, in order.
    private let unverified: [Checksum: [String]]
    /// The local directories locations are confined to: every `--map` directory and local
    /// server of a label (the .jigdo's own only if it may name local files).
    private let roots: [String]
    /// Whether a local path under no root is used as it is: only a local .jigdo names one (a
    /// `file:` or relative part location without a label); from a remote one it is refused.
    private let plainPathsAllowed: Bool
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
        // Only parts that have local locations get an entry: a .jigdo of download locations
        // costs no table here (each image would hold one per part).
        var unverified: [Checksum: [String]] = [:]
        for i in template.parts.indices {
            let sum = template.parts.checksum(i)
            guard resolver.mayHaveLocalLocation(forPart: sum), unverified[sum] == nil else { continue }
            var paths: [String] = []
            for loc in resolver.locations(forPart: sum) {
                if case .local(let p) = loc { paths.append(p) }
            }
            if !paths.isEmpty { unverified[sum] = paths }
        }
        self.unverified = unverified
        self.roots = Self.localRoots(resolver)
        self.plainPathsAllowed = resolver.allowLocalFromJigdo
        self.checksumCache = checksumCache
        (self.scanned, self.scannedFiles, self.hinted, self.scanReport) = try Self.scan(scanDirectories, template: template, cache: checksumCache, progress: progress, logger: logger)
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
        /// The file's real path (links resolved), inside a directory it is confined to.
        case inside(String)
        /// Under no such directory: the path as it is (links and all).
        case unconfined(String)
        case outside
        case missing
    }

    /// Where `path` really is: under one of `roots` (lexically) it must also be there with
    /// links resolved. A path under no root was written as a plain local location of a local
    /// .jigdo, and is taken as it is; a remote one cannot name local files (refused here too).
    private func confine(_ path: String) -> Confinement {
        // Byte-wise: a name starting with a combining mark would end String.hasPrefix's match.
        let containing = roots.filter { path.utf8.starts(with: $0.utf8) }
        if containing.isEmpty { return plainPathsAllowed ? .unconfined(path) : .outside }
        guard fileExists(path) else { return .missing }
        for root in containing {
            if let real = realPath(path, inside: root) { return .inside(real) }
        }
        return .outside
    }

    /// Walks the directories, hashes only files whose size equals some part's size, and keeps
    /// those whose checksum is a part's.
    /// Files whose checksum is in `cache` (same path, size, mtime and inode) are not read now;
    /// they are returned as hints, hashed when first used.
    static func scan(_ dirs: [String], template: TemplateInfo, cache: ChecksumCache?, progress: ScanProgress?,
                     logger: Logger = Logger(label: "jigdofs.local")) throws -> ([Checksum: [String]], [String: ScannedFile], [String: ScannedFile], ScanReport) {
        guard !dirs.isEmpty else { return ([:], [:], [:], ScanReport()) }
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
            hash: { i in
                do {
                    return try ReadOnlyFile(path: list[i].path).checksum(kind)
                } catch {
                    // Removed or made unreadable since the walk saw it: it is no candidate, and
                    // the scan goes on. Said at info level, so `--log-level info` tells why a
                    // file that is there was not used.
                    logger.info("\(error); not used as a part")
                    return nil
                }
            })
        var found: [Checksum: [String]] = [:]
        var files: [String: ScannedFile] = [:]
        var hinted: [String: ScannedFile] = [:]
        for (i, sum) in result.sums where wanted.isPart(sum, size: list[i].size) {
            found[sum, default: []].append(list[i].path)
            if result.fromCacheIndices.contains(i) {
                hinted[list[i].path] = list[i]
            } else {
                files[list[i].path] = list[i]
            }
        }
        let report = ScanReport(candidates: list.count, hashedFiles: result.hashedFiles,
                                hashedBytes: result.hashedBytes, fromCache: result.fromCache)
        // Deterministic order: the same path wins whatever the thread timing.
        return (found.mapValues { $0.sorted() }, files, hinted, report)
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
            switch confine(path) {
            case .inside(let p), .unconfined(let p): return fileSize(p) == part.length
            case .outside, .missing: return false
            }
        }
    }

    /// Indices of parts with no local copy.
    public func missingParts() -> [Int] { missingParts(of: template.parts) }

    /// A file that changed since its check (size, mtime, ctime or inode) is checked again;
    /// if it no longer matches, this source has no copy and the next source serves the part.
    public func readPart(_ index: Int, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        let part = template.parts[index]
        for _ in 0..<3 {
            let file = try verifiedFile(for: part)
            try file.read(at: offset, into: buffer)
            // Changed while (or before) it was read: these bytes are not served.
            if file.currentIdentity() == file.identity { return }
            forget(part, file.path)
        }
        throw keepsChanging(part)
    }

    /// The part's checked file, to be read by the pipeline's table without asking again
    /// (`LocalCopySource`): the file `readPart` would read, checked the same way. One that
    /// changed since its check (the table saw a read's identity differ) is checked again.
    public func checkedCopy(_ index: Int) throws -> LocalCopy? {
        let part = template.parts[index]
        for _ in 0..<3 {
            let file = try verifiedFile(for: part)
            if file.currentIdentity() == file.identity {
                return LocalCopy(file: file, base: 0, identity: file.identity)
            }
            forget(part, file.path)
        }
        throw keepsChanging(part)
    }

    private func keepsChanging(_ part: TemplatePart) -> JigdoError {
        JigdoError(.partUnavailable, "part \(part.checksum.base64) (\(part.length) bytes): the local copy keeps changing while it is read")
    }

    /// Drops what is known of a file that changed since its check.
    private func forget(_ part: TemplatePart, _ path: String) {
        openFiles.remove(path)
        resolved.withLock { r in
            if case .verified(path, _)? = r[part.checksum] { r[part.checksum] = nil }
        }
        logger.info("\(RawNames.display(path)): changed since it was checked; checking it again")
    }

    /// An open file whose bytes match the part, as they were when checked.
    private func verifiedFile(for part: TemplatePart) throws -> ReadOnlyFile {
        switch resolved.withLock({ $0[part.checksum] }) {
        case .verified(let p, let identity)?:
            if let f = openFiles.value(for: p), f.identity == identity { return f }
            // Not openable any more, or replaced: why is not kept, the file is checked (or
            // another source found) again below as if it had never been verified.
            if let f = try? ReadOnlyFile(path: p), f.identity == identity {
                openFiles.insert(f, for: p, cost: 1)
                return f
            }
            forget(part, p)
        case .unavailable(let rejected)?: throw unavailable(part, rejected: rejected)
        case nil: break
        }
        var rejected: [String] = []
        let candidates = (scanned[part.checksum] ?? []).map { ($0, false) } + (unverified[part.checksum] ?? []).map { ($0, true) }
        for (location, mustConfine) in candidates {
            var path = location
            var resolvedLinks = false
            if mustConfine {
                switch confine(location) {
                case .inside(let real):
                    path = real
                    resolvedLinks = true
                case .unconfined: break
                case .missing: continue
                case .outside:
                    rejected.append("\(location) leaves its mapped directory (links or ..), refused")
                    logger.debug("part \(part.checksum.base64): local copy refused: \(rejected.last!)")
                    continue
                }
            }
            // A confined path has its links resolved: a link put there since is not followed.
            let f: ReadOnlyFile
            do {
                f = try ReadOnlyFile(path: path, extraFlags: resolvedLinks ? O_NOFOLLOW : 0)
            } catch {
                // A location that cannot be opened is no copy (like one that is absent): the
                // next candidate is tried; why is said at debug level only.
                logger.debug("part \(part.checksum.base64): local copy not usable: \(error)")
                continue
            }
            // Not a regular file or of another size: no copy of this part, nothing to say.
            guard f.isRegularFile, f.size == part.length else { continue }
            // The scan hashed this file: unchanged since, its checksum holds.
            if let seen = scannedFiles[path], seen.size == f.size, seen.inode == f.identity.inode,
               seen.modificationTimeNs == f.identity.modificationTimeNs {
                resolved.withLock { $0[part.checksum] = .verified(path, f.identity) }
                openFiles.insert(f, for: path, cost: 1)
                return f
            }
            do {
                let sum = try f.checksum(part.checksum.kind ?? template.checksumKind)
                if sum == part.checksum, f.currentIdentity() == f.identity {
                    resolved.withLock { $0[part.checksum] = .verified(path, f.identity) }
                    openFiles.insert(f, for: path, cost: 1)
                    return f
                }
                // Never the file's checksum: it would tell what any local file holds.
                rejected.append("\(path) does not match")
                if let row = hinted[location], row.size == f.size, row.inode == f.identity.inode,
                   row.modificationTimeNs == f.identity.modificationTimeNs {
                    // Said at warning level: the checksum cache held a wrong entry (damaged, or
                    // written by someone else). The entry goes; the part comes from elsewhere.
                    logger.warning("\(RawNames.display(location)): its checksum cache entry is wrong (the file is not part \(part.checksum.base64)); not used, and the entry is dropped")
                    checksumCache?.forget(path: location, kind: template.checksumKind)
                }
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
    // A path from a .jigdo may hold raw (non-UTF-8) name bytes: hand those to the system.
    guard RawNames.withFileSystemPath(path, { Syscalls.stat($0, &st) }) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
    return Int64(st.st_size)
}
