import Crypto

/// The checksum algorithm a jigdo image uses for its parts and for the whole image.
public enum ChecksumKind: String, Sendable, CaseIterable {
    case md5 = "MD5"
    case sha256 = "SHA256"

    public var byteCount: Int { self == .md5 ? 16 : 32 }
    /// The prefix of fallback labels in `[Servers]`: `MD5Sum:<b64>` / `SHA256Sum:<b64>`.
    public var labelPrefix: String { self == .md5 ? "MD5Sum" : "SHA256Sum" }
}

/// A raw checksum value (16 bytes MD5 or 32 bytes SHA256).
public struct Checksum: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// All the bytes in one call (seeded SipHash, so crafted checksums cannot collide on
    /// purpose); the synthesized hash fed the length and then each byte on its own, which was
    /// the largest cost of a status report over 200,000 parts.
    public func hash(into hasher: inout Hasher) {
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }

    public static func == (a: Checksum, b: Checksum) -> Bool { a.bytes == b.bytes }

    public var kind: ChecksumKind? {
        switch bytes.count {
        case 16: return .md5
        case 32: return .sha256
        default: return nil
        }
    }

    /// jigdo's Base64 variant: `-` and `_` instead of `+` and `/`, no padding.
    public var base64: String { JigdoBase64.encode(bytes) }

    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public var description: String { base64 }
}

/// Incremental hashing with the algorithm of a jigdo image.
public struct ChecksumHasher: @unchecked Sendable {
    private enum State {
        case md5(Insecure.MD5)
        case sha256(SHA256)
    }
    private var state: State
    public let kind: ChecksumKind

    public init(_ kind: ChecksumKind) {
        self.kind = kind
        switch kind {
        case .md5: state = .md5(Insecure.MD5())
        case .sha256: state = .sha256(SHA256())
        }
    }

    public mutating func update(_ buffer: UnsafeRawBufferPointer) {
        switch state {
        case .md5(var h):
            h.update(bufferPointer: buffer)
            state = .md5(h)
        case .sha256(var h):
            h.update(bufferPointer: buffer)
            state = .sha256(h)
        }
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    public func finalize() -> Checksum {
        switch state {
        case .md5(let h): return Checksum(Array(h.finalize()))
        case .sha256(let h): return Checksum(Array(h.finalize()))
        }
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

    public static func encode(_ bytes: [UInt8]) -> String {
        bytes.withUnsafeBytes { encode($0) }
    }

    /// Written straight into the string's storage: one allocation (none for an MD5's 22
    /// characters, which fit in a small string), where appending to an array cost five (a
    /// cache path is made from it several times a part).
    public static func encode(_ bytes: UnsafeRawBufferPointer) -> String {
        let count = (bytes.count * 8 + 5) / 6
        return alphabet.withUnsafeBufferPointer { alphabet in
            String(unsafeUninitializedCapacity: count) { out in
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
    }

    /// Decodes a checksum; nil if the text has characters outside the alphabet or does not
    /// have the length of an MD5 (22 chars) or SHA256 (43 chars) value.
    public static func decodeChecksum(_ text: Substring) -> Checksum? {
        guard text.utf8.count == 22 || text.utf8.count == 43 else { return nil }
        var out = [UInt8]()
        var acc: UInt32 = 0
        var bits = 0
        for c in text.utf8 {
            let v = reverse[Int(c)]
            if v < 0 { return nil }
            acc = (acc << 6) | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8((acc >> UInt32(bits)) & 0xff))
            }
        }
        return Checksum(out)
    }

    public static func decodeChecksum(_ text: String) -> Checksum? { decodeChecksum(Substring(text)) }
}
