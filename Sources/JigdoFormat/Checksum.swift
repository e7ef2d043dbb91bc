import Crypto

/// The checksum algorithm a jigdo image uses for its parts and for the whole image.
public enum ChecksumKind: String, Sendable, CaseIterable {
    case md5 = "MD5"
    case sha256 = "SHA256"

    public var byteCount: Int { self == .md5 ? 16 : 32 }
    /// The prefix of fallback labels in `[Servers]`: `MD5Sum:<b64>` / `SHA256Sum:<b64>`.
    public var labelPrefix: String { self == .md5 ? "MD5Sum" : "SHA256Sum" }
}

/// A raw checksum value (16 bytes MD5 or 32 bytes SHA256), held inline: four words and a
/// length, no heap object (an Array per checksum was an allocation on every
/// `TemplateParts.checksum(i)`, on the hot path of reads and of status over 200,000 parts).
/// The words past the length are zero, so `==` compares words.
public struct Checksum: Hashable, Comparable, Sendable, CustomStringConvertible {
    private var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    private let count: UInt8

    /// Whether a checksum of `count` bytes can be made: only the two lengths jigdo uses.
    public static func isValidLength(_ count: Int) -> Bool { count == 16 || count == 32 }

    /// `bytes` must be 16 or 32 bytes long (a programming error otherwise: every input path
    /// checks the length first, see `init?(validating:)`).
    public init(_ bytes: [UInt8]) {
        precondition(Self.isValidLength(bytes.count), "a checksum is 16 or 32 bytes, not \(bytes.count)")
        self = bytes.withUnsafeBytes { Checksum(unchecked: $0) }
    }

    /// nil unless `bytes` is 16 or 32 bytes long (untrusted input: a cache's blob).
    public init?(validating bytes: UnsafeRawBufferPointer) {
        guard Self.isValidLength(bytes.count) else { return nil }
        self.init(unchecked: bytes)
    }

    /// `bytes.count` is 16 or 32 (checked by the caller).
    init(unchecked bytes: UnsafeRawBufferPointer) {
        count = UInt8(truncatingIfNeeded: bytes.count)
        Swift.withUnsafeMutableBytes(of: &words) { $0.copyMemory(from: bytes) }
    }

    /// The bytes as an Array (allocates; hot code uses `withUnsafeBytes`).
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// The number of bytes: 16 or 32.
    public var byteCount: Int { Int(count) }

    /// Calls `body` with the checksum's bytes (16 or 32), without allocating.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var w = words
        let n = Int(count)
        return try Swift.withUnsafeBytes(of: &w) { try body(UnsafeRawBufferPointer(rebasing: $0[..<n])) }
    }

    /// The used bytes in one call (seeded SipHash, so crafted checksums cannot collide on
    /// purpose); the synthesized hash fed each byte on its own.
    public func hash(into hasher: inout Hasher) {
        withUnsafeBytes { hasher.combine(bytes: $0) }
    }

    public static func == (a: Checksum, b: Checksum) -> Bool {
        a.count == b.count && a.words.0 == b.words.0 && a.words.1 == b.words.1
            && a.words.2 == b.words.2 && a.words.3 == b.words.3
    }

    /// Shorter first, then the bytes in lexicographic order (as `memcmp`).
    public static func < (a: Checksum, b: Checksum) -> Bool {
        if a.count != b.count { return a.count < b.count }
        let x = a.words, y = b.words
        if x.0 != y.0 { return UInt64(bigEndian: x.0) < UInt64(bigEndian: y.0) }
        if x.1 != y.1 { return UInt64(bigEndian: x.1) < UInt64(bigEndian: y.1) }
        if x.2 != y.2 { return UInt64(bigEndian: x.2) < UInt64(bigEndian: y.2) }
        return UInt64(bigEndian: x.3) < UInt64(bigEndian: y.3)
    }

    public var kind: ChecksumKind? {
        switch count {
        case 16: return .md5
        case 32: return .sha256
        default: return nil
        }
    }

    /// jigdo's Base64 variant: `-` and `_` instead of `+` and `/`, no padding.
    public var base64: String { withUnsafeBytes { JigdoBase64.encode($0) } }

    public var hex: String {
        withUnsafeBytes { bytes in
            let digits = Array("0123456789abcdef".utf8)
            var out = [UInt8]()
            out.reserveCapacity(bytes.count * 2)
            for b in bytes {
                out.append(digits[Int(b >> 4)])
                out.append(digits[Int(b & 15)])
            }
            return String(decoding: out, as: UTF8.self)
        }
    }

    public var description: String { base64 }
}

/// Incremental hashing with the algorithm of a jigdo image.
public struct ChecksumHasher: @unchecked Sendable {
    // One of the two is set. Updated in place (optional chaining): a hasher taken out of an
    // enum's payload to be updated was a second reference to its context, so every update
    // copied the context first (copy on write), an allocation and a context copy per piece.
    private var md5: Insecure.MD5?
    private var sha256: SHA256?
    public let kind: ChecksumKind

    public init(_ kind: ChecksumKind) {
        self.kind = kind
        switch kind {
        case .md5: md5 = Insecure.MD5()
        case .sha256: sha256 = SHA256()
        }
    }

    public mutating func update(_ buffer: UnsafeRawBufferPointer) {
        md5?.update(bufferPointer: buffer)
        sha256?.update(bufferPointer: buffer)
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    public func finalize() -> Checksum {
        if let h = md5 { return h.finalize().withUnsafeBytes { Checksum(unchecked: $0) } }
        return sha256!.finalize().withUnsafeBytes { Checksum(unchecked: $0) }
    }
}

/// jigdo's Base64: RFC 2045 with `-` for `+`, `_` for `/`, and no `=` padding.
public enum JigdoBase64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    private static let reverse: [Int8] = {
        var table = [Int8](repeating: -1, count: 256)
        for (i, c) in alphabet.enumerated() { table[Int(c)] = Int8(i) }
        return table
    }()

    /// The 6-bit value of a character of the alphabet; nil for any other byte.
    public static func value(of c: UInt8) -> UInt8? {
        let v = reverse[Int(c)]
        return v < 0 ? nil : UInt8(v)
    }

    public static func encode<Bytes: Sequence<UInt8>>(_ bytes: Bytes) -> String {
        if let s = bytes.withContiguousStorageIfAvailable({ encode(UnsafeRawBufferPointer($0)) }) { return s }
        return Array(bytes).withUnsafeBytes { encode($0) }
    }

    /// Written straight into the string's storage: one allocation (none for an MD5's 22
    /// characters, which fit in a small string), where appending to an array cost five (a
    /// cache path is made from it several times a part).
    public static func encode(_ bytes: UnsafeRawBufferPointer) -> String {
        String(unsafeUninitializedCapacity: encodedCount(bytes.count)) { encode(bytes, into: $0) }
    }

    /// The characters `count` bytes encode to.
    public static func encodedCount(_ count: Int) -> Int { (count * 8 + 5) / 6 }

    /// Encodes into `out` (at least `encodedCount(bytes.count)` long); returns the count
    /// written. For callers that build a longer string around it in one allocation.
    public static func encode(_ bytes: UnsafeRawBufferPointer, into out: UnsafeMutableBufferPointer<UInt8>) -> Int {
        alphabet.withUnsafeBufferPointer { alphabet in
            var acc: UInt32 = 0
            var bits = 0
            var n = 0
            for b in bytes {
                acc = (acc << 8) | UInt32(b)
                bits += 8
                while bits >= 6 {
                    bits -= 6
                    out[n] = alphabet[Int((acc >> UInt32(bits)) & 63)]
                    n += 1
                }
            }
            if bits > 0 {
                out[n] = alphabet[Int((acc << UInt32(6 - bits)) & 63)]
                n += 1
            }
            return n
        }
    }

    /// Decodes a checksum; nil if the text has characters outside the alphabet or does not
    /// have the length of an MD5 (22 chars) or SHA256 (43 chars) value.
    public static func decodeChecksum(_ text: Substring) -> Checksum? {
        var text = text
        return text.withUTF8 { decode($0, canonicalOnly: false) }
    }

    /// `decodeChecksum`, and nil unless `text` is the checksum's own encoding (`base64`): the
    /// bits of the last character past the checksum's bytes are zero.
    public static func decodeCanonicalChecksum(_ text: String) -> Checksum? {
        var text = text
        return text.withUTF8 { decode($0, canonicalOnly: true) }
    }

    private static func decode(_ text: UnsafeBufferPointer<UInt8>, canonicalOnly: Bool) -> Checksum? {
        let length = text.count == 22 ? 16 : text.count == 43 ? 32 : 0
        guard length > 0 else { return nil }
        var out: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        let valid = withUnsafeMutableBytes(of: &out) { out -> Bool in
            var acc: UInt32 = 0
            var bits = 0
            var at = 0
            for c in text {
                let v = reverse[Int(c)]
                if v < 0 { return false }
                acc = (acc << 6) | UInt32(v)
                bits += 6
                if bits >= 8 {
                    bits -= 8
                    out[at] = UInt8((acc >> UInt32(bits)) & 0xff)
                    at += 1
                }
            }
            return at == length && (!canonicalOnly || acc & ((1 << UInt32(bits)) - 1) == 0)
        }
        guard valid else { return nil }
        return withUnsafeBytes(of: &out) { Checksum(unchecked: UnsafeRawBufferPointer(rebasing: $0[..<length])) }
    }

    public static func decodeChecksum(_ text: String) -> Checksum? { decodeChecksum(Substring(text)) }
}
