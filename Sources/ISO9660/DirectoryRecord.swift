/// One directory record as stored (ECMA-119 9.1), before names and Rock Ridge are applied.
struct RawRecord {
    static let flagHidden: UInt8 = 0x01
    static let flagDirectory: UInt8 = 0x02
    static let flagAssociated: UInt8 = 0x04
    static let flagMultiExtent: UInt8 = 0x80

    /// Image offset of the record itself (a stable identity for files).
    var recordOffset: Int64
    var block: UInt32
    var extAttrLength: UInt8
    var dataLength: UInt32
    var recordTime: Int64
    /// Interleaving (file unit size, gap): not supported when non-zero.
    var interleaved: Bool
    var flags: UInt8
    var identifier: [UInt8]
    /// The system use area (SUSP entries), in the directory extent's bytes.
    var systemUse: Bytes

    var isDirectory: Bool { flags & Self.flagDirectory != 0 }
    var isDot: Bool { identifier == [0] }
    var isDotDot: Bool { identifier == [1] }

    /// Parses the record at `at` of `b`. nil for a zero length byte (padding to the next
    /// sector); throws through `damaged` for anything out of bounds.
    static func parse(_ b: Bytes, at: Int, imageOffset: Int64, damaged: (String) -> Error) throws -> (RawRecord, Int)? {
        guard let len8 = b.u8(at) else { throw damaged("directory record at offset \(imageOffset) outside the directory") }
        let len = Int(len8)
        if len == 0 { return nil }
        guard len >= 34 else { throw damaged("directory record at offset \(imageOffset) is \(len) bytes, shorter than the minimum 34") }
        guard let r = b.sub(at, len) else {
            throw damaged("directory record at offset \(imageOffset) (\(len) bytes) runs past the end of its directory")
        }
        let idLen = Int(r.u8(32)!)
        guard let id = r.bytes(33, idLen), idLen > 0 else {
            throw damaged("directory record at offset \(imageOffset): file identifier length \(idLen) does not fit its record length \(len)")
        }
        let suStart = 33 + idLen + (idLen % 2 == 0 ? 1 : 0)
        let su = r.sub(suStart, max(0, len - suStart)) ?? Bytes([], start: 0, count: 0)
        let rec = RawRecord(
            recordOffset: imageOffset,
            block: r.le32(2)!,
            extAttrLength: r.u8(1)!,
            dataLength: r.le32(10)!,
            recordTime: shortTime(r, 18) ?? 0,
            interleaved: r.u8(26)! != 0 || r.u8(27)! != 0,
            flags: r.u8(25)!,
            identifier: id,
            systemUse: su)
        return (rec, len)
    }
}

/// What the Rock Ridge (RRIP over SUSP) entries of one record say.
struct RockRidgeInfo {
    var sawRockRidge = false
    var name: [UInt8]?
    var mode: UInt32?
    var links: UInt32?
    var uid: UInt32?
    var gid: UInt32?
    var inode: UInt32?
    var device: (high: UInt32, low: UInt32)?
    var mtime: Int64?
    var atime: Int64?
    var ctime: Int64?
    var symlink: String?
    /// RE: this directory was relocated; its record here is to be hidden.
    var relocated = false
    /// CL: this (file) record stands for the relocated directory at this block.
    var childLink: UInt32?
    /// ZF: compression algorithm ("pz" is zisofs), log2 of the block size, uncompressed size.
    var zisofs: (algorithm: String, log2BlockSize: Int, size: Int64)?
    /// SP found (only meaningful in the root's "." record) and its skip length.
    var suspSkip: Int?
}

/// Reads the SUSP entries of a system use area, following CE continuation areas.
struct SUSPParser {
    /// Reads `length` bytes of the image at `offset` (for CE areas); bounds are checked by it.
    var readArea: (Int64, Int) throws -> [UInt8]
    var blockSize: Int64
    var damaged: (String) -> Error
    /// At most this many continuation areas per record (a chain that goes on is damage).
    static let maxContinuations = 64

    func parse(_ area: Bytes, skip: Int, recordOffset: Int64) throws -> RockRidgeInfo {
        var info = RockRidgeInfo()
        var nameBytes: [UInt8] = []
        var nameDone = false
        var sawName = false
        var symlink = SymlinkBuilder()
        var sawSymlink = false
        var current = area
        var pos = skip
        var continuations = 0
        var seenAreas = Set<Int64>()
        while true {
            var next: (Int64, Int)?
            while current.has(pos, 4) {
                let sig = (current.u8(pos)!, current.u8(pos + 1)!)
                let len = Int(current.u8(pos + 2)!)
                if len == 0 && sig == (0, 0) { break } // zero padding at the end of an area
                // An entry that does not fit ends the area. genisoimage writes such entries after
                // an SL longer than 255 bytes; like Linux and xorriso, keep what came before.
                guard len >= 4, let e = current.sub(pos, len) else { break }
                switch sig {
                case (0x43, 0x45): // CE
                    guard let block = e.le32(4), let off = e.le32(12), let clen = e.le32(20) else {
                        throw damaged("record at offset \(recordOffset): CE entry too short")
                    }
                    next = (Int64(block) * blockSize + Int64(off), Int(clen))
                case (0x53, 0x54): // ST: end of entries
                    pos = current.count
                    continue
                case (0x53, 0x50): // SP
                    if e.u8(4) == 0xBE, e.u8(5) == 0xEF { info.suspSkip = Int(e.u8(6) ?? 0) }
                case (0x52, 0x52): // RR (RRIP 1.09 flags)
                    info.sawRockRidge = true
                case (0x50, 0x58): // PX
                    info.sawRockRidge = true
                    info.mode = e.le32(4)
                    info.links = e.le32(12)
                    info.uid = e.le32(20)
                    info.gid = e.le32(28)
                    if len >= 44 { info.inode = e.le32(36) }
                case (0x50, 0x4E): // PN
                    info.sawRockRidge = true
                    if let h = e.le32(4), let l = e.le32(12) { info.device = (h, l) }
                case (0x4E, 0x4D): // NM
                    info.sawRockRidge = true
                    sawName = true
                    let flags = e.u8(4) ?? 0
                    if !nameDone, flags & 0x06 == 0, let part = e.bytes(5, len - 5) {
                        nameBytes += part
                        if flags & 0x01 == 0 { nameDone = true }
                    }
                case (0x53, 0x4C): // SL
                    info.sawRockRidge = true
                    sawSymlink = true
                    // Components may reach past an overlong entry's wrapped length byte, so they
                    // are bounded by the area, not the entry.
                    symlink.add(current.sub(pos, current.count - pos)!, len: len)
                case (0x54, 0x46): // TF
                    info.sawRockRidge = true
                    parseTF(e, len: len, into: &info)
                case (0x52, 0x45): // RE
                    info.sawRockRidge = true
                    info.relocated = true
                case (0x43, 0x4C): // CL
                    info.sawRockRidge = true
                    info.childLink = e.le32(4)
                case (0x5A, 0x46): // ZF: zisofs-compressed file (an AAIP/RRIP extension)
                    if let alg = e.bytes(4, 2), let log2 = e.u8(7), let size = e.le32(8) {
                        info.zisofs = (String(decoding: alg, as: UTF8.self), Int(log2), Int64(size))
                    }
                default:
                    break
                }
                pos += len
            }
            guard let (off, clen) = next else { break }
            continuations += 1
            guard continuations <= Self.maxContinuations, seenAreas.insert(off).inserted else {
                throw damaged("record at offset \(recordOffset): continuation (CE) chain loops or is longer than \(Self.maxContinuations) areas")
            }
            guard clen > 0, clen <= Int(blockSize) * 16 else {
                throw damaged("record at offset \(recordOffset): continuation area of \(clen) bytes")
            }
            current = Bytes(try readArea(off, clen))
            pos = 0
        }
        if sawName { info.name = nameBytes }
        if sawSymlink { info.symlink = symlink.target }
        return info
    }

    private func parseTF(_ e: Bytes, len: Int, into info: inout RockRidgeInfo) {
        guard let flags = e.u8(4) else { return }
        let long = flags & 0x80 != 0
        let size = long ? 17 : 7
        var at = 5
        for bit in 0..<7 where flags & (1 << bit) != 0 {
            let t = long ? longTime(e, at) : shortTime(e, at)
            switch bit {
            case 1: info.mtime = t
            case 2: info.atime = t
            case 3: info.ctime = t
            default: break
            }
            at += size
        }
    }

    private func sigText(_ s: (UInt8, UInt8)) -> String {
        let ok = (0x20...0x7E).contains(s.0) && (0x20...0x7E).contains(s.1)
        return ok ? String(decoding: [s.0, s.1], as: UTF8.self) : "(binary)"
    }
}

/// Assembles an SL target from its components, which may continue across SL entries.
struct SymlinkBuilder {
    var target = ""
    private var needSlash = false
    private var inComponent = false

    /// Adds the components of the SL entry at the start of `e` whose length byte says `len`.
    /// A component that runs past the end of `e` ends the target (bounds come from `e`).
    mutating func add(_ e: Bytes, len: Int) {
        var at = 5
        while at < len {
            guard let flags = e.u8(at), let clen = e.u8(at + 1).map(Int.init), let content = e.bytes(at + 2, clen) else {
                return
            }
            if !inComponent && needSlash { target += "/" }
            if flags & 0x08 != 0 {
                if !target.hasSuffix("/") { target += "/" }
                needSlash = false
            } else {
                if flags & 0x02 != 0 { target += "." }
                else if flags & 0x04 != 0 { target += ".." }
                else { target += String(decoding: content, as: UTF8.self) }
                needSlash = true
            }
            inComponent = flags & 0x01 != 0
            at += 2 + clen
        }
    }
}
