/// Bounds-checked little-endian field access over a byte array slice. Every accessor returns nil
/// when the field would reach past the end, so damaged lengths never trap.
struct Bytes {
    let base: [UInt8]
    let start: Int
    let count: Int

    init(_ base: [UInt8], start: Int = 0, count: Int? = nil) {
        self.base = base
        self.start = start
        self.count = count ?? (base.count - start)
    }

    func has(_ offset: Int, _ length: Int) -> Bool {
        offset >= 0 && length >= 0 && offset + length <= count
    }

    func u8(_ offset: Int) -> UInt8? {
        has(offset, 1) ? base[start + offset] : nil
    }

    func le16(_ offset: Int) -> UInt16? {
        guard has(offset, 2) else { return nil }
        return UInt16(base[start + offset]) | UInt16(base[start + offset + 1]) << 8
    }

    func le32(_ offset: Int) -> UInt32? {
        guard has(offset, 4) else { return nil }
        var v: UInt32 = 0
        for i in 0..<4 { v |= UInt32(base[start + offset + i]) << (8 * i) }
        return v
    }

    func bytes(_ offset: Int, _ length: Int) -> [UInt8]? {
        guard has(offset, length) else { return nil }
        return Array(base[(start + offset)..<(start + offset + length)])
    }

    func sub(_ offset: Int, _ length: Int) -> Bytes? {
        guard has(offset, length) else { return nil }
        return Bytes(base, start: start + offset, count: length)
    }
}

/// Seconds since 1970-01-01 UTC of a civil date (proleptic Gregorian), without libc.
func epochSeconds(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int, gmtOffsetQuarters: Int) -> Int64 {
    let m = (1...12).contains(month) ? month : 1
    let d = (1...31).contains(day) ? day : 1
    let y = m <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let mp = (m + 9) % 12
    let doy = (153 * mp + 2) / 5 + d - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    let days = Int64(era) * 146097 + Int64(doe) - 719468
    let local = days * 86400 + Int64(hour) * 3600 + Int64(minute) * 60 + Int64(second)
    return local - Int64(gmtOffsetQuarters) * 15 * 60
}

/// The 7-byte date of a directory record (and of Rock Ridge TF short form).
func shortTime(_ b: Bytes, _ at: Int) -> Int64? {
    guard let raw = b.bytes(at, 7) else { return nil }
    if raw.allSatisfy({ $0 == 0 }) { return 0 }
    return epochSeconds(year: 1900 + Int(raw[0]), month: Int(raw[1]), day: Int(raw[2]),
                        hour: Int(raw[3]), minute: Int(raw[4]), second: Int(raw[5]),
                        gmtOffsetQuarters: Int(Int8(bitPattern: raw[6])))
}

/// The 17-byte ASCII date of volume descriptors (and of Rock Ridge TF long form).
func longTime(_ b: Bytes, _ at: Int) -> Int64? {
    guard let raw = b.bytes(at, 17) else { return nil }
    func num(_ from: Int, _ len: Int) -> Int? {
        var v = 0
        for c in raw[from..<(from + len)] {
            guard c >= 0x30, c <= 0x39 else { return nil }
            v = v * 10 + Int(c - 0x30)
        }
        return v
    }
    guard let y = num(0, 4), y > 0, let mo = num(4, 2), let d = num(6, 2), let h = num(8, 2),
          let mi = num(10, 2), let s = num(12, 2) else { return 0 }
    return epochSeconds(year: y, month: mo, day: d, hour: h, minute: mi, second: s,
                        gmtOffsetQuarters: Int(Int8(bitPattern: raw[16])))
}
