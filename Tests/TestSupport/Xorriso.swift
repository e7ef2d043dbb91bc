import Foundation

/// xorriso's own reading of an ISO image, to compare ours (and the mount's) against.
public enum Xorriso {
    /// One line of `xorriso -indev ISO -find / -exec lsdl`.
    public struct LsdlLine: Sendable {
        /// `ls -l` mode string (`drwxr-xr-x`, `-rw-r--r--`, `lrwxrwxrwx`, ...).
        public var mode: String
        public var size: Int64
        /// Absolute path inside the image ("/" for the root).
        public var path: String
        /// The target of a symbolic link.
        public var target: String?
    }

    /// Every entry of the image, as xorriso lists it (its stderr is ignored).
    public static func lsdl(_ iso: String) throws -> [LsdlLine] {
        let r = try Subprocess.check(["xorriso", "-indev", iso, "-find", "/", "-exec", "lsdl"])
        var out: [LsdlLine] = []
        for line in r.stdout.split(separator: "\n") {
            let (fields, rest) = leadingFields(line, 8)
            let words = shellWords(String(rest.drop { $0 == " " }))
            guard fields.count == 8, let size = Int64(fields[4]), let path = words.first else { continue }
            let target = words.count == 3 && words[1] == "->" ? words[2] : nil
            out.append(LsdlLine(mode: String(fields[0]), size: size, path: path, target: target))
        }
        return out
    }
}

/// The first `count` blank-separated fields of `line` (leading blanks skipped) and what follows
/// the last of them (starting with the blank after it).
public func leadingFields(_ line: Substring, _ count: Int) -> (fields: [Substring], rest: Substring) {
    var rest = line
    var fields: [Substring] = []
    for _ in 0..<count {
        rest = rest.drop { $0 == " " }
        let f = rest.prefix { $0 != " " }
        fields.append(f)
        rest = rest.dropFirst(f.count)
    }
    return (fields, rest)
}

/// Words of xorriso's (shell-like) quoting: '...' and "..." pieces join the word they touch,
/// blanks separate words, a backslash inside "..." escapes the next character.
public func shellWords(_ s: String) -> [String] {
    var words: [String] = []
    var cur = ""
    var inWord = false
    let chars = Array(s)
    var i = 0
    while i < chars.count {
        let c = chars[i]
        if c == "'" {
            inWord = true
            i += 1
            while i < chars.count, chars[i] != "'" { cur.append(chars[i]); i += 1 }
        } else if c == "\"" {
            inWord = true
            i += 1
            while i < chars.count, chars[i] != "\"" {
                if chars[i] == "\\", i + 1 < chars.count { i += 1 }
                cur.append(chars[i])
                i += 1
            }
        } else if c == " " {
            if inWord { words.append(cur); cur = ""; inWord = false }
        } else {
            inWord = true
            cur.append(c)
        }
        i += 1
    }
    if inWord { words.append(cur) }
    return words
}

/// The real jigdo generator.
public enum JigdoFile {
    /// `jigdo-file make-template` of `image` into `jigdo` and `template`, matching files under
    /// `parts` (a directory; its files become `Label:path` entries as jigdo-file writes them
    /// for `DIR//`). Throws with jigdo-file's stderr when it fails.
    public static func makeTemplate(image: String, jigdo: String, template: String, parts: String,
                                    options: [String] = []) throws {
        try Subprocess.check(["jigdo-file", "make-template", "-r", "quiet", "--force", "-i", image,
                              "-j", jigdo, "-t", template] + options + [parts + "//"])
    }
}
