import JigdoFormat
import Synchronization

/// An ISO 9660 file system read straight from an image's bytes: Rock Ridge names, modes,
/// times and symlinks when present, else Joliet names, else plain ISO 9660 names.
///
/// Reads only the volume descriptors, the directory extents it lists (and Rock Ridge
/// continuation areas), and, for `read`, a file's own extents. In a jigdo image those
/// directory bytes normally sit in the template, so browsing costs no part reads.
///
/// Thread-safe: any number of threads may list, look up and read at once. Directories are
/// cached up to a byte budget. Damaged structures (lengths out of bounds, a directory listed
/// in two places, continuation chains that loop) throw `ISO9660Error(.damaged)`; nothing traps
/// or loops forever.
///
/// Locks: `parents` (bookkeeping only, never held across a read) and the cache's own lock;
/// never both at once.
public final class ISO9660Volume: Sendable {
    public enum NameScheme: String, Sendable {
        case rockRidge = "Rock Ridge"
        case joliet = "Joliet"
        case iso9660 = "ISO 9660"
    }

    public let source: any ImageByteSource
    /// Used in error messages (e.g. the image file name).
    public let name: String
    public let blockSize: Int
    public let volumeIdentifier: String
    public let scheme: NameScheme
    public let root: ISOEntry

    /// A directory larger than this is treated as damage rather than allocated.
    public static let maxDirectorySize: Int64 = 64 << 20
    static let maxDescriptors = 64
    static let maxSymlinkFollows = 40

    private let suspSkip: Int
    private let cache: ByteBudgetCache<Int64, Directory>
    /// Directory extent offset -> the extent offset of the directory that lists it.
    private let parents: Mutex<[Int64: Int64]>

    final class Directory: Sendable {
        let entries: [ISOEntry]
        let index: [String: Int]
        let cost: Int

        init(entries: [ISOEntry], cost: Int) {
            self.entries = entries
            var index: [String: Int] = [:]
            for (i, e) in entries.enumerated() where index[e.name] == nil { index[e.name] = i }
            self.index = index
            self.cost = cost
        }
    }

    private init(source: any ImageByteSource, name: String, blockSize: Int, volumeIdentifier: String,
                 scheme: NameScheme, root: ISOEntry, suspSkip: Int, cacheBudget: Int) {
        self.source = source
        self.name = name
        self.blockSize = blockSize
        self.volumeIdentifier = volumeIdentifier
        self.scheme = scheme
        self.root = root
        self.suspSkip = suspSkip
        self.cache = ByteBudgetCache(budget: cacheBudget)
        self.parents = Mutex([root.id: -1])
    }

    // MARK: Opening

    /// Reads the volume descriptors and the root directory. Throws `.notISO9660` when the
    /// image has no ISO 9660 volume descriptors.
    public static func open(_ source: any ImageByteSource, name: String, cacheBudget: Int = 32 << 20,
                            useRockRidge: Bool = true, useJoliet: Bool = true) throws -> ISO9660Volume {
        func damaged(_ m: String) -> ISO9660Error { ISO9660Error(.damaged, image: name, m) }
        var primary: Bytes?
        var joliet: Bytes?
        for i in 0..<maxDescriptors {
            let offset = Int64(16 + i) * 2048
            guard offset + 2048 <= source.size else {
                if i == 0 { throw ISO9660Error(.notISO9660, image: name, "not an ISO 9660 image (too small)") }
                break
            }
            let d = Bytes(try readExactly(source, at: offset, count: 2048, name: name))
            guard d.bytes(1, 5) == Array("CD001".utf8) else {
                if i == 0 { throw ISO9660Error(.notISO9660, image: name, "not an ISO 9660 image (no CD001 volume descriptor at sector 16)") }
                throw damaged("volume descriptor \(16 + i) has no CD001 signature and the set has no terminator")
            }
            let type = d.u8(0)!
            if type == 255 { break }
            if type == 1, primary == nil { primary = d }
            if type == 2, joliet == nil, d.u8(7)! & 1 == 0, let esc = d.bytes(88, 3),
               esc[0] == 0x25, esc[1] == 0x2F, [0x40, 0x43, 0x45].contains(esc[2]) {
                joliet = d
            }
        }
        guard let pvd = primary else {
            throw ISO9660Error(.notISO9660, image: name, "not an ISO 9660 image (no primary volume descriptor)")
        }
        let blockSize = Int(pvd.le16(128)!)
        guard [512, 1024, 2048].contains(blockSize) else {
            throw damaged("logical block size \(blockSize) in the primary volume descriptor")
        }
        let volumeID = String(String(decoding: pvd.bytes(40, 32)!, as: UTF8.self)
            .trimming(leading: { $0 == " " }, trailing: { $0 == " " || $0 == "\0" }))
        let vdTime = longTime(pvd, 830) ?? 0 // modification date of the volume

        // The root of the primary tree, to look for Rock Ridge (SP + RRIP entries in ".").
        let pvdRoot = try rootRecord(pvd, name: name)
        var scheme = NameScheme.iso9660
        var rootRecord = pvdRoot
        var rr = RockRidgeInfo()
        var skip = 0
        if useRockRidge {
            let probe = ISO9660Volume(source: source, name: name, blockSize: blockSize, volumeIdentifier: volumeID,
                                      scheme: .rockRidge, root: placeholderRoot, suspSkip: 0, cacheBudget: 0)
            let off = probe.extentOffset(block: pvdRoot.block, extAttr: pvdRoot.extAttrLength)
            let head = Bytes(try probe.readBytes(at: off, count: min(Int(pvdRoot.dataLength), blockSize), what: "root directory"))
            if let (dot, _) = try RawRecord.parse(head, at: 0, imageOffset: off, damaged: { damaged($0) }), dot.isDot {
                let info = try probe.suspParser.parse(dot.systemUse, skip: 0, recordOffset: off)
                if let s = info.suspSkip, info.sawRockRidge {
                    scheme = .rockRidge
                    skip = s
                    rr = info
                }
            }
        }
        if scheme != .rockRidge, useJoliet, let j = joliet {
            scheme = .joliet
            rootRecord = try Self.rootRecord(j, name: name)
        }
        let rootOffset = Int64(rootRecord.block) + Int64(rootRecord.extAttrLength)
        var root = ISOEntry(
            name: "/", type: .directory, mode: rr.mode ?? 0o040555, links: rr.links ?? 1,
            uid: rr.uid ?? 0, gid: rr.gid ?? 0, size: Int64(rootRecord.dataLength),
            mtime: rr.mtime ?? (rootRecord.recordTime != 0 ? rootRecord.recordTime : vdTime), atime: 0, ctime: 0,
            symlinkTarget: nil, device: nil,
            extents: [ISOExtent(offset: rootOffset * Int64(blockSize), length: Int64(rootRecord.dataLength))],
            id: rootOffset * Int64(blockSize))
        root.atime = rr.atime ?? root.mtime
        root.ctime = rr.ctime ?? root.mtime
        if ISOFileType(mode: root.mode) != .directory { root.mode = 0o040000 | (root.mode & 0o7777) }
        return ISO9660Volume(source: source, name: name, blockSize: blockSize, volumeIdentifier: volumeID,
                             scheme: scheme, root: root, suspSkip: skip, cacheBudget: cacheBudget)
    }

    private static let placeholderRoot = ISOEntry(
        name: "/", type: .directory, mode: 0o040555, links: 2, uid: 0, gid: 0, size: 0, mtime: 0, atime: 0,
        ctime: 0, symlinkTarget: nil, device: nil, extents: [], id: -2)

    private static func rootRecord(_ d: Bytes, name: String) throws -> RawRecord {
        guard let sub = d.sub(156, 34),
              let (rec, _) = try RawRecord.parse(sub, at: 0, imageOffset: 16 * 2048 + 156,
                                                 damaged: { ISO9660Error(.damaged, image: name, "root directory record: \($0)") }),
              rec.isDirectory else {
            throw ISO9660Error(.damaged, image: name, "the volume descriptor's root directory record is not a directory")
        }
        return rec
    }

    // MARK: Directories

    /// The entries of a directory ("." and ".." left out), in the order of the image.
    public func list(_ dir: ISOEntry) throws -> [ISOEntry] {
        try directory(dir).entries
    }

    /// The entry called `name` in `dir`, or nil.
    public func child(named childName: String, of dir: ISOEntry) throws -> ISOEntry? {
        let d = try directory(dir)
        return d.index[childName].map { d.entries[$0] }
    }

    /// The entry at `path` (absolute or relative to the root; "." and ".." allowed). Symlinks
    /// in the middle of the path are followed inside the image; the last one only when
    /// `followSymlinks`. `lookup("/")` is the root.
    public func lookup(_ path: String, followSymlinks: Bool = false) throws -> ISOEntry {
        var stack: [ISOEntry] = [root]
        var pending = Array(path.split(separator: "/", omittingEmptySubsequences: true).map(String.init).reversed())
        var follows = 0
        var walked: [String] = []
        while let component = pending.popLast() {
            let here = "/" + walked.joined(separator: "/")
            if component == "." { continue }
            if component == ".." {
                if stack.count > 1 { stack.removeLast(); walked.removeLast() }
                continue
            }
            let dir = stack.last!
            guard dir.isDirectory else {
                throw ISO9660Error(.notADirectory, image: name, path: here, "not a directory (looking up \(path))")
            }
            guard let entry = try child(named: component, of: dir) else {
                throw ISO9660Error(.notFound, image: name, path: path.hasPrefix("/") ? path : "/" + path, "no such file or directory")
            }
            if entry.type == .symlink, let target = entry.symlinkTarget, !pending.isEmpty || followSymlinks {
                follows += 1
                guard follows <= Self.maxSymlinkFollows else {
                    throw ISO9660Error(.symlinkLoop, image: name, path: path, "too many levels of symbolic links")
                }
                if target.hasPrefix("/") { stack = [root]; walked = [] }
                pending += target.split(separator: "/", omittingEmptySubsequences: true).map(String.init).reversed()
                continue
            }
            stack.append(entry)
            walked.append(component)
        }
        return stack.last!
    }

    private func directory(_ dir: ISOEntry) throws -> Directory {
        guard dir.isDirectory, let ext = dir.extents.first else {
            throw ISO9660Error(.notADirectory, image: name, path: dir.name, "not a directory")
        }
        if let d = cache.value(for: ext.offset) { return d }
        let d = try loadDirectory(ext, label: dir.name)
        cache.insert(d, for: ext.offset, cost: d.cost)
        return d
    }

    private func damaged(_ path: String?, _ message: String) -> ISO9660Error {
        ISO9660Error(.damaged, image: name, path: path, message)
    }

    private func loadDirectory(_ ext: ISOExtent, label: String) throws -> Directory {
        guard ext.length > 0, ext.length <= Self.maxDirectorySize else {
            throw damaged(label, "directory extent of \(ext.length) bytes")
        }
        let raw = try readBytes(at: ext.offset, count: Int(ext.length), what: "directory \(label)")
        let data = Bytes(raw)
        let bs = blockSize
        var records: [RawRecord] = []
        var pos = 0
        while pos < data.count {
            let err = { (m: String) -> Error in self.damaged(label, m) }
            if let (rec, len) = try RawRecord.parse(data, at: pos, imageOffset: ext.offset + Int64(pos), damaged: err) {
                records.append(rec)
                pos += len
            } else {
                pos = (pos / bs + 1) * bs // zero length: the rest of this sector is padding
            }
        }
        guard let first = records.first, first.isDot else {
            throw damaged(label, "directory at offset \(ext.offset) does not start with its \".\" record")
        }

        var entries: [ISOEntry] = []
        var pending: (RawRecord, [ISOExtent], Int64)?
        var childDirs: [(Int64, String)] = []
        for rec in records.dropFirst() where !rec.isDot && !rec.isDotDot {
            if rec.flags & RawRecord.flagAssociated != 0 { continue }
            let extent = ISOExtent(offset: extentOffset(block: rec.block, extAttr: rec.extAttrLength), length: Int64(rec.dataLength))
            if var p = pending {
                guard p.0.identifier == rec.identifier else {
                    throw damaged(label, "multi-extent file at offset \(p.0.recordOffset) is followed by a different file")
                }
                p.1.append(extent)
                p.2 += extent.length
                pending = p
                if rec.flags & RawRecord.flagMultiExtent != 0 { continue }
                pending = nil
                if let e = try makeEntry(p.0, extents: p.1, size: p.2, dirLabel: label) { entries.append(e) }
                continue
            }
            if rec.flags & RawRecord.flagMultiExtent != 0 && !rec.isDirectory {
                pending = (rec, [extent], extent.length)
                continue
            }
            if let e = try makeEntry(rec, extents: [extent], size: extent.length, dirLabel: label) {
                if e.isDirectory { childDirs.append((e.extents[0].offset, e.name)) }
                entries.append(e)
            }
        }
        if pending != nil {
            throw damaged(label, "the last extent of a multi-extent file is missing")
        }
        // A directory reached from two places is a loop (or worse): refuse it.
        let conflict = parents.withLock { parents -> (String, Int64)? in
            for (child, childName) in childDirs {
                if child == ext.offset { return (childName, child) }
                if let p = parents[child], p != ext.offset { return (childName, child) }
            }
            for (child, _) in childDirs { parents[child] = ext.offset }
            return nil
        }
        if let (childName, child) = conflict {
            throw damaged(label, "directory '\(childName)' (extent at offset \(child)) is also listed elsewhere: directory records form a loop")
        }
        let cost = raw.count + entries.reduce(0) { $0 + 160 + $1.name.utf8.count + ($1.symlinkTarget?.utf8.count ?? 0) }
        return Directory(entries: entries, cost: cost)
    }

    private func makeEntry(_ rec: RawRecord, extents: [ISOExtent], size: Int64, dirLabel: String) throws -> ISOEntry? {
        var rr = RockRidgeInfo()
        if scheme == .rockRidge {
            rr = try suspParser.parse(rec.systemUse, skip: suspSkip, recordOffset: rec.recordOffset)
            if rr.relocated { return nil } // shown where its CL record is
        }
        let entryName: String
        if let n = rr.name {
            entryName = String(decoding: n, as: UTF8.self)
        } else if scheme == .joliet {
            entryName = Self.jolietName(rec.identifier)
        } else {
            entryName = Self.isoName(rec.identifier)
        }
        guard !entryName.isEmpty, entryName != ".", entryName != "..", !entryName.contains("/"), !entryName.contains("\0") else {
            throw damaged(dirLabel, "record at offset \(rec.recordOffset) has an invalid name '\(entryName)'")
        }
        var isDir = rec.isDirectory
        var extents = extents
        var size = size
        if let cl = rr.childLink {
            // Rock Ridge relocation: the directory really lives at block `cl`.
            isDir = true
            let off = Int64(cl) * Int64(blockSize)
            let head = Bytes(try readBytes(at: off, count: 34, what: "relocated directory \(entryName)"))
            guard let dl = head.le32(10) else { throw damaged(dirLabel, "relocated directory \(entryName) is unreadable") }
            extents = [ISOExtent(offset: off, length: Int64(dl))]
            size = Int64(dl)
        }
        var type: ISOFileType = isDir ? .directory : .regular
        var mode: UInt32 = isDir ? 0o040555 : 0o100444
        if let m = rr.mode {
            let t = ISOFileType(mode: m)
            if isDir || t != .directory { type = isDir ? .directory : t }
            mode = type.modeBits | (m & 0o7777)
        }
        if type == .symlink && rr.symlink == nil {
            type = .regular
            mode = ISOFileType.regular.modeBits | (mode & 0o7777)
        }
        let mtime = rr.mtime ?? rec.recordTime
        var entry = ISOEntry(
            name: entryName, type: type, mode: mode, links: rr.links ?? 1,
            uid: rr.uid ?? 0, gid: rr.gid ?? 0, size: size, mtime: mtime,
            atime: rr.atime ?? mtime, ctime: rr.ctime ?? mtime, symlinkTarget: nil, device: nil,
            extents: extents.filter { $0.length > 0 },
            id: isDir ? extents[0].offset : rec.recordOffset)
        switch type {
        case .directory:
            entry.extents = extents
        case .symlink:
            entry.symlinkTarget = rr.symlink
            entry.size = Int64(rr.symlink?.utf8.count ?? 0)
            entry.extents = []
        case .characterDevice, .blockDevice:
            if let d = rr.device { entry.device = ISODevice(pnHigh: d.high, low: d.low) }
            entry.size = 0
            entry.extents = []
        case .fifo, .socket:
            entry.size = 0
            entry.extents = []
        case .regular:
            if rec.interleaved {
                entry.storage = .unsupported("interleaved file (unit size or gap set)")
            } else if let z = rr.zisofs {
                if z.algorithm == "pz", (15...17).contains(z.log2BlockSize) {
                    entry.storage = .zisofs(log2BlockSize: z.log2BlockSize)
                    entry.size = z.size
                } else {
                    entry.storage = .unsupported("compressed as '\(z.algorithm)' with blocks of 2^\(z.log2BlockSize) bytes")
                    entry.size = z.size // ZF's size is the uncompressed one
                }
            }
        }
        return entry
    }

    static func isoName(_ id: [UInt8]) -> String {
        var bytes = id
        if let semi = bytes.lastIndex(of: 0x3B) { bytes.removeSubrange(semi...) } // ";1"
        if bytes.last == 0x2E { bytes.removeLast() } // "NAME." (no extension)
        return String(decoding: bytes, as: UTF8.self)
    }

    static func jolietName(_ id: [UInt8]) -> String {
        var units: [UInt16] = []
        var i = 0
        while i + 1 < id.count {
            units.append(UInt16(id[i]) << 8 | UInt16(id[i + 1]))
            i += 2
        }
        if let semi = units.lastIndex(of: 0x3B) { units.removeSubrange(semi...) }
        return String(decoding: units, as: UTF16.self)
    }

    // MARK: Reading files

    /// The image ranges holding bytes `offset..<offset+count` of a file as stored (clipped to
    /// its extents). For a plain file these are its bytes; for a zisofs file, compressed data.
    public func imageRanges(of entry: ISOEntry, offset: Int64 = 0, count: Int64? = nil) -> [ISOExtent] {
        guard entry.type == .regular, offset >= 0 else { return [] }
        let stored = storedSize(entry)
        var want = min(count ?? stored, stored - offset)
        var skip = offset
        var out: [ISOExtent] = []
        for ext in entry.extents where want > 0 {
            if skip >= ext.length { skip -= ext.length; continue }
            let n = min(ext.length - skip, want)
            out.append(ISOExtent(offset: ext.offset + skip, length: n))
            want -= n
            skip = 0
        }
        return out
    }

    /// Fills `buffer` with the file's bytes from `offset`; returns the bytes read, fewer only at
    /// the end of the file. Reads nothing but the file's own extents.
    @discardableResult
    public func read(_ entry: ISOEntry, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        switch entry.type {
        case .regular: break
        case .directory: throw ISO9660Error(.isADirectory, image: name, path: entry.name, "is a directory")
        default: return 0
        }
        guard offset >= 0 else { throw ISO9660Error(.damaged, image: name, path: entry.name, "negative offset \(offset)") }
        switch entry.storage {
        case .plain:
            return try readStored(entry, at: offset, into: buffer)
        case .zisofs(let log2):
            return try readZisofs(entry, log2BlockSize: log2, at: offset, into: buffer)
        case .unsupported(let why):
            throw ISO9660Error(.unsupported, image: name, path: entry.name, "\(why): cannot be read")
        }
    }

    private func storedSize(_ entry: ISOEntry) -> Int64 {
        entry.extents.reduce(0) { $0 + $1.length }
    }

    private func readStored(_ entry: ISOEntry, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        var done = 0
        for r in imageRanges(of: entry, offset: offset, count: Int64(buffer.count)) {
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + Int(r.length))])
            let n = try source.read(at: r.offset, into: slice)
            guard n == slice.count else {
                throw damaged(entry.name, "data at offset \(r.offset) (\(r.length) bytes) reaches past the end of the image (\(source.size) bytes)")
            }
            done += n
        }
        return done
    }

    /// Exactly `count` stored bytes at `offset`, or a damage error.
    private func storedBytes(_ entry: ISOEntry, at offset: Int64, count: Int) throws -> [UInt8] {
        guard offset >= 0, count >= 0, offset + Int64(count) <= storedSize(entry) else {
            throw damaged(entry.name, "zisofs data refers to bytes \(offset)..<\(offset + Int64(count)) of a \(storedSize(entry))-byte file")
        }
        var out = [UInt8](repeating: 0, count: count)
        _ = try out.withUnsafeMutableBytes { try readStored(entry, at: offset, into: $0) }
        return out
    }

    private static let zisofsMagic: [UInt8] = [0x37, 0xE4, 0x53, 0x96, 0xC9, 0xDB, 0xD6, 0x07]

    /// zisofs: a 16-byte header, a table of block offsets, then each block deflated on its own
    /// (a block whose start equals its end is all zeros).
    private func readZisofs(_ entry: ISOEntry, log2BlockSize: Int, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard offset < entry.size, buffer.count > 0 else { return 0 }
        let total = Int(min(Int64(buffer.count), entry.size - offset))
        let header = Bytes(try storedBytes(entry, at: 0, count: 16))
        guard header.bytes(0, 8) == Self.zisofsMagic, let h4 = header.u8(12), let hlog2 = header.u8(13),
              Int(hlog2) == log2BlockSize, h4 >= 4 else {
            throw damaged(entry.name, "zisofs header does not match its ZF entry")
        }
        let blockSize = 1 << log2BlockSize
        let first = offset >> log2BlockSize
        let last = (offset + Int64(total) - 1) >> log2BlockSize
        let table = Bytes(try storedBytes(entry, at: Int64(h4) * 4 + first * 4, count: Int(last - first + 2) * 4))
        var block = [UInt8](repeating: 0, count: blockSize)
        var done = 0
        for b in first...last {
            let i = Int(b - first) * 4
            let start = Int64(table.le32(i)!), end = Int64(table.le32(i + 4)!)
            let blockStart = b << log2BlockSize
            let blockLength = Int(min(Int64(blockSize), entry.size - blockStart))
            guard end >= start, end - start <= Int64(blockSize) * 2 + 1024 else {
                throw damaged(entry.name, "zisofs block \(b) has offsets \(start)..<\(end)")
            }
            try block.withUnsafeMutableBytes { out in
                let dest = UnsafeMutableRawBufferPointer(rebasing: out[0..<blockLength])
                if end == start {
                    dest.initializeMemory(as: UInt8.self, repeating: 0)
                    return
                }
                let compressed = try storedBytes(entry, at: start, count: Int(end - start))
                do {
                    try compressed.withUnsafeBytes { try Decompression.inflateZlib($0, into: dest) }
                } catch {
                    throw damaged(entry.name, "zisofs block \(b): \(error)")
                }
            }
            let within = Int(offset + Int64(done) - blockStart)
            let n = min(blockLength - within, total - done)
            block.withUnsafeBytes { src in
                buffer.baseAddress!.advanced(by: done).copyMemory(from: src.baseAddress! + within, byteCount: n)
            }
            done += n
        }
        return done
    }

    /// Reads a whole small file (tests, configuration files).
    public func contents(of entry: ISOEntry, limit: Int64 = 64 << 20) throws -> [UInt8] {
        guard entry.size <= limit else { throw damaged(entry.name, "\(entry.size) bytes is more than \(limit)") }
        var out = [UInt8](repeating: 0, count: Int(entry.size))
        let n = try out.withUnsafeMutableBytes { try read(entry, at: 0, into: $0) }
        out.removeSubrange(n...)
        return out
    }

    // MARK: Low level

    func extentOffset(block: UInt32, extAttr: UInt8) -> Int64 {
        (Int64(block) + Int64(extAttr)) * Int64(blockSize)
    }

    var suspParser: SUSPParser {
        SUSPParser(readArea: { [self] off, len in try readBytes(at: off, count: len, what: "Rock Ridge continuation area") },
                   blockSize: Int64(blockSize),
                   damaged: { [name] m in ISO9660Error(.damaged, image: name, m) })
    }

    func readBytes(at offset: Int64, count: Int, what: String) throws -> [UInt8] {
        guard offset >= 0, count >= 0, offset <= source.size, Int64(count) <= source.size - offset else {
            throw damaged(nil, "\(what) at offset \(offset) (\(count) bytes) lies outside the image (\(source.size) bytes)")
        }
        return try Self.readExactly(source, at: offset, count: count, name: name)
    }

    static func readExactly(_ source: any ImageByteSource, at offset: Int64, count: Int, name: String) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let n = try out.withUnsafeMutableBytes { try source.read(at: offset, into: $0) }
        guard n == count else {
            throw ISO9660Error(.damaged, image: name, "the image ends at \(offset + Int64(n)), \(count - n) bytes short of what its structures say")
        }
        return out
    }
}
