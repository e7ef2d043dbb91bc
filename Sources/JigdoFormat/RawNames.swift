#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// File names as raw bytes.
///
/// jigdo-file writes file names exactly as the file system holds them, so a `.jigdo` for old
/// media may carry Latin-1 or CP850 bytes that are not UTF-8. Such a file is still read: every
/// byte that is not part of valid UTF-8 becomes one scalar of a private-use block
/// (U+10FE80 ... U+10FEFF for bytes 0x80 ... 0xFF), so the text keeps splitting into lines and
/// words as usual and every byte can be recovered. Local lookups turn those scalars back into the
/// original bytes (`RawNames.fileSystemBytes`), URLs percent-encode them, and messages show
/// them as `\xE9`.
public enum RawNames {
    static let base: UInt32 = 0x10FE00

    /// The text of `bytes`: plain UTF-8 when valid, else with each stray byte as its raw scalar.
    /// `raw` tells whether any byte needed that.
    public static func decode(_ bytes: [UInt8]) -> (text: String, raw: Bool) {
        if let text = String(validating: bytes, as: UTF8.self) { return (text, false) }
        var scalars = String.UnicodeScalarView()
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b < 0x80 {
                scalars.append(Unicode.Scalar(b))
                i += 1
                continue
            }
            let n = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC2 ? 2 : 0
            if n > 0, i + n <= bytes.count, let s = String(validating: bytes[i..<(i + n)], as: UTF8.self) {
                scalars.append(contentsOf: s.unicodeScalars)
                i += n
            } else {
                scalars.append(Unicode.Scalar(base + UInt32(b))!)
                i += 1
            }
        }
        return (String(scalars), true)
    }

    /// `decode(bytes).text` for any collection of bytes (a slice of a line), without a copy
    /// when the bytes are UTF-8.
    static func text<Bytes: Collection>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        if let text = String(validating: bytes, as: UTF8.self) { return text }
        return decode(Array(bytes)).text
    }

    /// `text` of a slice of a buffer (a .jigdo line): ASCII without a validating pass.
    static func text(_ bytes: Slice<UnsafeBufferPointer<UInt8>>) -> String {
        let buffer = UnsafeBufferPointer(rebasing: bytes)
        if !buffer.contains(where: { $0 >= 0x80 }) { return String(decoding: buffer, as: UTF8.self) }
        if let text = String(validating: buffer, as: UTF8.self) { return text }
        return decode(Array(buffer)).text
    }

    /// The raw byte a scalar stands for, if it is one of the raw-byte scalars.
    @inline(__always)
    static func rawByte(_ s: Unicode.Scalar) -> UInt8? {
        s.value >= base + 0x80 && s.value <= base + 0xFF ? UInt8(s.value - base) : nil
    }

    /// Whether `text` holds any raw-byte scalar.
    public static func hasRawBytes(_ text: String) -> Bool {
        text.unicodeScalars.contains { rawByte($0) != nil }
    }

    /// The bytes to hand to the file system for `path`: raw-byte scalars become their byte,
    /// everything else UTF-8.
    public static func fileSystemBytes(_ path: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(path.utf8.count)
        for s in path.unicodeScalars {
            if let b = rawByte(s) { out.append(b) } else { out.append(contentsOf: String(s).utf8) }
        }
        return out
    }

    /// Calls `body` with a NUL-terminated file system form of `path` (raw bytes restored).
    public static func withFileSystemPath<R>(_ path: String, _ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        guard hasRawBytes(path) else { return try path.withCString(body) }
        var bytes = fileSystemBytes(path).map { CChar(bitPattern: $0) }
        bytes.append(0)
        return try bytes.withUnsafeBufferPointer { try body($0.baseAddress!) }
    }

    /// A file system path (bytes, as `readdir` gives them) as text that round-trips through
    /// `fileSystemBytes`.
    public static func text(fileSystemBytes bytes: [UInt8]) -> String { decode(bytes).text }

    /// The name of a `readdir` entry as `text(fileSystemBytes:)` gives it: the one decoding of
    /// `d_name` (its bytes up to the NUL, never assumed to be UTF-8).
    public static func name(of entry: UnsafePointer<dirent>) -> String {
        withUnsafeBytes(of: entry.pointee.d_name) { raw in
            text(fileSystemBytes: Array(raw.prefix(while: { $0 != 0 })))
        }
    }

    /// `\xE9` for each raw byte, for messages and listings.
    public static func display(_ text: String) -> String {
        guard hasRawBytes(text) else { return text }
        var out = ""
        for s in text.unicodeScalars {
            if let b = rawByte(s) {
                out += "\\x" + String(b, radix: 16, uppercase: true)
            } else {
                out.unicodeScalars.append(s)
            }
        }
        return out
    }

    /// `text` safe to show or log: every control character (C0 U+0000...U+001F, DEL, C1
    /// U+0080...U+009F) and every raw byte becomes `\xHH`, one per byte of the name as the file
    /// system holds it (newline `\x0A`, ESC `\x1B`, NUL `\x00`, U+009B `\xC2\x9B`, a Latin-1
    /// byte `\xE9`). Nothing else changes, so text that went through it once goes through it
    /// again unchanged; a name from a .jigdo, a template or an image can then neither end a
    /// line (forge a log line) nor send a terminal escape sequence. The log writer and the
    /// CLI's output apply it to every line they write.
    public static func printable(_ text: String) -> String {
        // Fast path: no byte that can start an escaped scalar (C0, DEL, 0xC2 of C1, 0xF4 of a
        // raw-byte scalar).
        guard text.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F || $0 == 0xC2 || $0 == 0xF4 }),
              text.unicodeScalars.contains(where: isEscaped) else { return text }
        return escape(text, backslash: false)
    }

    /// A name shown on its own (a listing line, as `ls -b` shows names): `printable`, and a
    /// backslash as `\\`, so every shown name stands for exactly one name.
    public static func printableName(_ name: String) -> String {
        guard name.contains("\\") || printable(name) != name else { return name }
        return escape(name, backslash: true)
    }

    /// Whether `printable` writes `s` as `\xHH`.
    @inline(__always)
    static func isEscaped(_ s: Unicode.Scalar) -> Bool {
        s.value < 0x20 || (s.value >= 0x7F && s.value <= 0x9F) || rawByte(s) != nil
    }

    private static func escape(_ text: String, backslash: Bool) -> String {
        let digits = Array("0123456789ABCDEF".unicodeScalars)
        var out = String.UnicodeScalarView()
        for s in text.unicodeScalars {
            if backslash && s == "\\" {
                out.append(contentsOf: "\\\\".unicodeScalars)
            } else if isEscaped(s) {
                for b in rawByte(s).map({ [$0] }) ?? Array(String(s).utf8) {
                    out.append("\\")
                    out.append("x")
                    out.append(digits[Int(b >> 4)])
                    out.append(digits[Int(b & 15)])
                }
            } else {
                out.append(s)
            }
        }
        return String(out)
    }

    /// A URL with each raw byte percent-encoded (`%E9`), the rest unchanged.
    public static func urlEncoded(_ url: String) -> String {
        guard hasRawBytes(url) else { return url }
        var out = ""
        for s in url.unicodeScalars {
            if let b = rawByte(s) {
                out += "%" + (b < 16 ? "0" : "") + String(b, radix: 16, uppercase: true)
            } else {
                out.unicodeScalars.append(s)
            }
        }
        return out
    }
}
