import Dispatch
import JigdoFormat
import Synchronization

/// The checksums of scan candidates (files whose size fits some part), shared by `--scan` and
/// `--scan-image`: taken from the persistent cache where a candidate's key (path, size, mtime,
/// inode) still matches, else hashed on all cores with progress, and the new ones recorded.
/// A checksum from the cache is a hint (`fromCacheIndices`): the caller hashes that file before
/// serving it, since anyone who could write the cache could have written it.
struct CandidateChecksums {
    /// Candidate index -> checksum (candidates that could not be read are absent).
    var sums: [Int: Checksum] = [:]
    /// The candidates whose checksum came from the cache, unchecked.
    var fromCacheIndices = Set<Int>()
    var hashedFiles = 0
    var hashedBytes: Int64 = 0
    var fromCache = 0

    /// `keys[i]`: the cache key of candidate i, nil for one that is never cached.
    /// `hash(i)`: reads candidate i; nil when it cannot be read (the closure reports why).
    init(
        sizes: [Int64], keys: [ScannedFile?], kind: ChecksumKind, cache: ChecksumCache?,
        progress: (@Sendable (_ hashed: Int64, _ total: Int64) -> Void)?,
        hash: @Sendable (Int) -> Checksum?
    ) {
        let known = cache?.lookup(keys.compactMap { $0 }, kind: kind) ?? [:]
        var pending: [Int] = []
        for i in sizes.indices {
            if let key = keys[i], let sum = known[key.path] {
                sums[i] = sum
                fromCacheIndices.insert(i)
                fromCache += 1
            } else {
                pending.append(i)
            }
        }
        let total = pending.reduce(Int64(0)) { $0 + sizes[$1] }
        let toHash = pending
        let results = Mutex<(sums: [Int: Checksum], hashed: Int64, new: [(ScannedFile, Checksum)])>(([:], 0, []))
        DispatchQueue.concurrentPerform(iterations: toHash.count) { j in
            let i = toHash[j]
            guard let sum = hash(i) else { return }
            let hashed = results.withLock { r -> Int64 in
                r.sums[i] = sum
                r.hashed += sizes[i]
                if let key = keys[i] { r.new.append((key, sum)) }
                return r.hashed
            }
            progress?(hashed, total)
        }
        let (newSums, hashedBytes, newEntries) = results.withLock { ($0.sums, $0.hashed, $0.new) }
        sums.merge(newSums) { $1 }
        hashedFiles = newSums.count
        self.hashedBytes = hashedBytes
        cache?.store(newEntries, kind: kind)
    }
}

/// Part checksums by size, to pick scan candidates and to keep only checksums that are parts.
struct WantedParts: Sendable {
    let bySize: [Int64: Set<Checksum>]

    init(_ template: TemplateInfo) {
        var bySize: [Int64: Set<Checksum>] = [:]
        for p in template.parts { bySize[p.length, default: []].insert(p.checksum) }
        self.bySize = bySize
    }

    func fits(size: Int64) -> Bool { bySize[size] != nil }
    func isPart(_ sum: Checksum, size: Int64) -> Bool { bySize[size]?.contains(sum) == true }
}
