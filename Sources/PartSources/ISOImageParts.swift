import Dispatch
import ImageAssembly
import ISO9660
import JigdoFormat
import Logging
import Synchronization

/// Parts read from the files inside older images (`--scan-image OLD.iso`): when a new release
/// comes out, every package that did not change is read straight from the old image's extents,
/// with no loop mount.
///
/// Each old image (a plain file, a block device, or a virtual ISO of another mount) is opened
/// as ISO 9660; its files whose size equals some part's length are hashed (reading only their
/// extents) and kept when the checksum is a part's. Reads then go to that file's extents.
///
/// Compose with `LocalParts` through `PartSourceChain([localParts, imageParts])`: scanned
/// directories and mapped mirrors are tried first, the old images next.
public final class ISOImageParts: LocalCopySource {
    /// A file inside an old image that holds a part.
    public struct Match: Sendable {
        public var volume: ISO9660Volume
        public var entry: ISOEntry
        /// The old image's path and the file's path inside it (for messages).
        public var imagePath: String
        public var path: String
    }

    public let template: TemplateInfo
    /// Checksum -> the first matching file (in image order of the arguments, then path order).
    public let matches: [Checksum: Match]
    /// Matches found by their checksum cache entry alone (a hint, never proof): checksum -> the
    /// entry's key and whether the file's bytes turned out wrong. Hashed at the first read; a
    /// match that checks out leaves this table.
    private let hints: Mutex<[Checksum: (key: String, wrong: Bool)]>
    private let checksumCache: ChecksumCache?
    private let logger: Logger
    /// Each plain image file, opened once for the copies handed over (`checkedCopy`).
    private let imageFiles = Mutex<[String: ReadOnlyFile]>([:])

    public typealias ScanProgress = @Sendable (_ hashed: Int64, _ total: Int64) -> Void

    /// `checksumCache`: checksums of files inside image files (not block devices) are kept there,
    /// keyed by the image's path, inode and mtime and the path inside it, so a second run over
    /// the same old image hashes nothing.
    public init(template: TemplateInfo, images: [String], checksumCache: ChecksumCache? = nil,
                logger: Logger = Logger(label: "jigdofs.image-parts"), progress: ScanProgress? = nil) throws {
        self.template = template
        self.checksumCache = checksumCache
        self.logger = logger
        let wanted = WantedParts(template)
        var candidates: [Match] = []
        var cacheKeys: [ScannedFile?] = []
        for imagePath in images {
            let file = try ImageFile(path: imagePath)
            let volume: ISO9660Volume
            do {
                volume = try ISO9660Volume.open(file, name: imagePath)
            } catch let e as ISO9660Error {
                // Not ISO 9660 (or damaged at its very start): a file the user named that is not
                // the kind of file --scan-image takes.
                throw JigdoError(.badFormat, path: imagePath, "--scan-image: \(e.message)", underlying: e)
            }
            do {
                try ISOListing.walk(volume, from: volume.root, path: "/") { dir, _, children in
                    for c in children where c.type == .regular && wanted.fits(size: c.size) {
                        let path = (dir == "/" ? "" : dir) + "/" + c.name
                        candidates.append(Match(volume: volume, entry: c, imagePath: imagePath, path: path))
                        // Real paths are absolute, so this key never meets one of --scan's.
                        cacheKeys.append(file.isBlockDevice ? nil : ScannedFile(
                            path: "iso9660:" + absolutePath(imagePath) + "//" + path, size: c.size,
                            modificationTimeNs: file.modificationTimeNs, inode: file.inode))
                    }
                }
            } catch let e as ISO9660Error {
                throw JigdoError(.io, path: imagePath, "--scan-image: \(e.path.map { "\($0): " } ?? "")\(e.message)", underlying: e)
            }
        }
        let kind = template.checksumKind
        let list = candidates
        let result = CandidateChecksums(
            sizes: list.map(\.entry.size), keys: cacheKeys, kind: kind, cache: checksumCache, progress: progress,
            hash: { i in
                do {
                    return try Self.hash(list[i], kind: kind)
                } catch {
                    logger.warning("\(list[i].imagePath): \(list[i].path): \(error)")
                    return nil
                }
            })
        // Deterministic: the earliest candidate wins whatever the thread timing.
        var found: [Checksum: Int] = [:]
        for (i, sum) in result.sums where wanted.isPart(sum, size: list[i].entry.size) {
            if let old = found[sum], old < i { continue }
            found[sum] = i
        }
        self.matches = found.mapValues { list[$0] }
        var hints: [Checksum: (key: String, wrong: Bool)] = [:]
        for (sum, i) in found where result.fromCacheIndices.contains(i) {
            if let key = cacheKeys[i]?.path { hints[sum] = (key, false) }
        }
        self.hints = Mutex(hints)
    }

    /// A match known only from the checksum cache is hashed before its bytes are served; a
    /// wrong one is logged (never with the file's checksum), its entry dropped, and the part
    /// left to the next source.
    private func checkHint(_ part: TemplatePart, _ m: Match) throws {
        guard let hint = hints.withLock({ $0[part.checksum] }) else { return }
        if !hint.wrong {
            let kind = part.checksum.kind ?? template.checksumKind
            if try Self.hash(m, kind: kind) == part.checksum {
                hints.withLock { _ = $0.removeValue(forKey: part.checksum) }
                return
            }
            hints.withLock { $0[part.checksum]?.wrong = true }
            logger.warning("\(RawNames.display(m.imagePath)): \(RawNames.display(m.path)): its checksum cache entry is wrong (the file is not part \(part.checksum.base64)); not used, and the entry is dropped")
            checksumCache?.forget(path: hint.key, kind: template.checksumKind)
        }
        throw JigdoError(.partUnavailable, "part \(part.checksum.base64) (\(part.length) bytes): the --scan-image file found for it does not match")
    }

    static func hash(_ m: Match, kind: ChecksumKind) throws -> Checksum {
        var hasher = ChecksumHasher(kind)
        let size = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
        defer { buffer.deallocate() }
        var offset: Int64 = 0
        while offset < m.entry.size {
            let n = try m.volume.read(m.entry, at: offset, into: buffer)
            guard n > 0 else { throw JigdoError(.io, path: m.imagePath, "\(m.path): ends early at \(offset)") }
            hasher.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            offset += Int64(n)
        }
        return hasher.finalize()
    }

    public func isLocallyAvailable(_ index: Int) -> Bool {
        let sum = template.parts[index].checksum
        return matches[sum] != nil && hints.withLock({ $0[sum]?.wrong }) != true
    }

    public func missingParts() -> [Int] { missingParts(of: template.parts) }

    public func readPart(_ index: Int, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        let part = template.parts[index]
        let m = try match(part)
        guard offset >= 0, offset + Int64(buffer.count) <= m.entry.size else {
            throw JigdoError(.invalidArgument, path: m.imagePath, "\(m.path): read of \(buffer.count) bytes at \(offset) is outside the file")
        }
        let n = try m.volume.read(m.entry, at: offset, into: buffer)
        // Written to since the scan hashed it: these bytes may not be the part's (never served).
        if let image = m.volume.source as? ImageFile, !image.isUnchanged() {
            throw JigdoError(.partUnavailable, path: m.imagePath, "changed since --scan-image read it: part \(part.checksum.base64) (\(part.length) bytes) is not taken from it")
        }
        guard n == buffer.count else {
            throw JigdoError(.io, path: m.imagePath, "\(m.path): short read at \(offset) (did the image change?)")
        }
    }
}

extension ISOImageParts {
    /// The part's match, its checksum cache hint checked.
    private func match(_ part: TemplatePart) throws -> Match {
        guard let m = matches[part.checksum] else {
            throw JigdoError(.partUnavailable, "part \(part.checksum.base64) (\(part.length) bytes) is in none of the --scan-image images")
        }
        try checkHint(part, m)
        return m
    }

    /// The part as a range of its old image file, when that is simple: a plain (not zisofs)
    /// file of one extent, inside a regular image file that is still as it was when the scan
    /// hashed it (inode, size, mtime). nil otherwise (a block device, several extents, an
    /// image changed since): `readPart` reads it through the ISO reader.
    public func checkedCopy(_ index: Int) throws -> LocalCopy? {
        let part = template.parts[index]
        let m = try match(part)
        guard case .plain = m.entry.storage, m.entry.extents.count == 1, let extent = m.entry.extents.first,
              extent.length == part.length, m.entry.size == part.length,
              let image = m.volume.source as? ImageFile, !image.isBlockDevice,
              extent.offset >= 0, extent.offset + extent.length <= image.size else { return nil }
        let opened = imageFiles.withLock { $0[image.path] }
        guard let file = opened ?? (try? ReadOnlyFile(path: image.path)), file.isRegularFile,
              let now = file.currentIdentity(), now.inode == image.inode, now.size == image.size,
              now.modificationTimeNs == image.modificationTimeNs else { return nil }
        if opened == nil { imageFiles.withLock { $0[image.path] = $0[image.path] ?? file } }
        return LocalCopy(file: file, base: extent.offset, identity: now)
    }
}

/// Several part sources tried in order: for a read, first those that have the part locally,
/// in order, then the others (e.g. a downloader), until one succeeds. The first error is
/// reported when all fail.
public final class PartSourceChain: PartSource {
    public let sources: [any PartSource]
    /// The parts of the image all `sources` serve.
    public let parts: TemplateParts
    /// Part index -> the source that delivered it last, tried first next time.
    private let lastGood = Mutex<[Int: Int]>([:])

    public init(_ sources: [any PartSource], template: TemplateInfo) {
        self.sources = sources
        self.parts = template.parts
    }

    public func isLocallyAvailable(_ index: Int) -> Bool {
        sources.contains { $0.isLocallyAvailable(index) }
    }

    public func missingParts() -> [Int] { missingParts(of: parts) }

    public func readPart(_ index: Int, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        var firstError: Error?
        let known = lastGood.withLock { $0[index] }
        if let k = known {
            do {
                try sources[k].readPart(index, at: offset, into: buffer)
                return
            } catch {
                firstError = error
            }
        }
        let order = sources.indices.filter { $0 != known }
        let local = order.filter { sources[$0].isLocallyAvailable(index) }
        let others = order.filter { !sources[$0].isLocallyAvailable(index) }
        for i in local + others {
            do {
                try sources[i].readPart(index, at: offset, into: buffer)
                lastGood.withLock { $0[index] = i }
                return
            } catch {
                if firstError == nil { firstError = error }
            }
        }
        throw firstError ?? JigdoError(.partUnavailable, "part \(index) has no source")
    }
}
