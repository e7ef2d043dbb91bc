/// Passwords in URLs, as every text a person (or another user of the machine) reads shows them:
/// the userinfo's password becomes `***` (`http://alice:***@host/`, as curl and wget print it);
/// a user name without a password stays. The real URL is what a transfer uses; status reports,
/// log lines, messages, `info`, the mount table and the daemon's argv show the masked form.
public enum Passwords {
    public static let mask = "***"

    /// One URL (or a proxy variable's value, which may have no scheme: `user:pw@proxy:3128`)
    /// with its password masked. Its authority runs to the first `/`, `?` or `#`, so a password
    /// with any other character (quotes, commas) is masked whole.
    public static func masked(url: String) -> String {
        guard url.utf8.contains(UInt8(ascii: "@")) else { return url }
        let bytes = Array(url.utf8)
        var start = 0
        if let sep = find(bytes, "://", from: 0) { start = sep + 3 }
        var end = start
        while end < bytes.count, !isPathStart(bytes[end]) { end += 1 }
        guard let out = masking(bytes, authority: start..<end) else { return url }
        return String(decoding: out, as: UTF8.self)
    }

    /// `text` (a log line, an error message, a command line argument) with the password of every
    /// `scheme://user:password@host` in it masked. In free text a URL's authority also ends at a
    /// blank or a character a URL cannot hold unencoded (`"`, `<`, `>`, ...), so JSON and
    /// sentences around a URL are left as they are.
    public static func masked(text: String) -> String {
        guard text.utf8.contains(UInt8(ascii: "@")) else { return text }
        var bytes = Array(text.utf8)
        var changed = false
        var from = 0
        while let sep = find(bytes, "://", from: from) {
            let start = sep + 3
            var end = start
            while end < bytes.count, !isPathStart(bytes[end]), !endsURLInText(bytes[end]) { end += 1 }
            if let out = masking(bytes, authority: start..<end) {
                let removed = bytes.count - out.count
                bytes = out
                changed = true
                from = end - removed
            } else {
                from = end
            }
        }
        return changed ? String(decoding: bytes, as: UTF8.self) : text
    }

    /// Whether `text` holds a URL with a password (what the masked forms hide).
    public static func containsPassword(_ text: String) -> Bool {
        masked(text: text) != text
    }

    /// `bytes` with the password in `authority` (user:password@host) replaced, nil if it has none.
    private static func masking(_ bytes: [UInt8], authority: Range<Int>) -> [UInt8]? {
        guard let at = authority.last(where: { bytes[$0] == UInt8(ascii: "@") }),
              let colon = (authority.lowerBound..<at).first(where: { bytes[$0] == UInt8(ascii: ":") }) else { return nil }
        // Already masked: nothing to do (and no change to report).
        if bytes[(colon + 1)..<at].elementsEqual(mask.utf8) { return nil }
        return Array(bytes[..<(colon + 1)]) + Array(mask.utf8) + Array(bytes[at...])
    }

    private static func isPathStart(_ b: UInt8) -> Bool {
        b == UInt8(ascii: "/") || b == UInt8(ascii: "?") || b == UInt8(ascii: "#")
    }

    private static func endsURLInText(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "\""), UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "\\"), UInt8(ascii: "^"),
             UInt8(ascii: "`"), UInt8(ascii: "{"), UInt8(ascii: "|"), UInt8(ascii: "}"):
            return true
        default:
            return b <= 0x20 || b == 0x7F
        }
    }

    private static func find(_ bytes: [UInt8], _ needle: StaticString, from: Int) -> Int? {
        let n = needle.utf8CodeUnitCount
        guard n > 0, bytes.count >= n else { return nil }
        let p = needle.utf8Start
        var i = from
        while i + n <= bytes.count {
            var j = 0
            while j < n, bytes[i + j] == p[j] { j += 1 }
            if j == n { return i }
            i += 1
        }
        return nil
    }
}
