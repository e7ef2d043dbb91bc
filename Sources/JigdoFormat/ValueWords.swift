/// Splitting of .jigdo entry values into words, following jigdo-file(1): whitespace separates
/// words, `'...'` quotes literally, `"..."` keeps backslash escapes, `\` escapes the next
/// character, and an unquoted `#` starts a comment.
public struct ValueWords: Sendable, Equatable {
    /// The words, with quoting removed.
    public var words: [String]
    /// The unquoted whitespace between word i and word i+1 (exactly as written).
    public var separators: [String]

    public init(words: [String], separators: [String]) {
        self.words = words
        self.separators = separators
    }

    /// All words joined with the whitespace that separated them. Generators such as libjte
    /// write `[Parts]` paths with spaces unquoted; joining restores the path.
    public var joined: String {
        var out = words.first ?? ""
        for i in 1..<max(words.count, 1) where i < words.count {
            out += separators[i - 1] + words[i]
        }
        return out
    }

    /// Why a value cannot be split. A type of its own (typed throws, no allocation): the
    /// callers know the file and line and throw `JigdoError(.syntax)` saying so.
    public enum Failure: Error, Equatable {
        case unterminatedQuote(Character)
        case danglingBackslash
    }

    public static func split(_ text: Substring) throws(Failure) -> ValueWords {
        // Most values are one plain word (a path or URL): no need to look at characters.
        if !text.utf8.contains(where: { $0 == 0x20 || $0 == 0x09 || $0 == 0x23 || $0 == 0x5C || $0 == 0x27 || $0 == 0x22 }) {
            return ValueWords(words: text.isEmpty ? [] : [String(text)], separators: [])
        }
        var words: [String] = []
        var separators: [String] = []
        var current = ""
        var inWord = false
        var pendingSeparator = ""
        var chars = text.makeIterator()
        func endWord() {
            if inWord {
                if !words.isEmpty { separators.append(pendingSeparator) }
                words.append(current)
                current = ""
                inWord = false
                pendingSeparator = ""
            }
        }
        while let c = chars.next() {
            switch c {
            case " ", "\t":
                endWord()
                if !words.isEmpty { pendingSeparator.append(c) }
            case "#":
                endWord()
                return ValueWords(words: words, separators: separators)
            case "\\":
                guard let next = chars.next() else { throw .danglingBackslash }
                current.append(next)
                inWord = true
            case "'":
                inWord = true
                var closed = false
                while let q = chars.next() {
                    if q == "'" { closed = true; break }
                    current.append(q)
                }
                if !closed { throw .unterminatedQuote("'") }
            case "\"":
                inWord = true
                var closed = false
                while let q = chars.next() {
                    if q == "\"" { closed = true; break }
                    if q == "\\" {
                        guard let escaped = chars.next() else { throw .danglingBackslash }
                        current.append(escaped)
                    } else {
                        current.append(q)
                    }
                }
                if !closed { throw .unterminatedQuote("\"") }
            default:
                current.append(c)
                inWord = true
            }
        }
        endWord()
        return ValueWords(words: words, separators: separators)
    }
}

extension ValueWords {
    /// A location value and its trailing options (`--try-first[=W]`, `--try-last[=W]`, as
    /// jigdo's url-mapping reads them): every word after the first that starts with `--` at the
    /// end of the value is an option; the words before it, joined, are the location.
    public struct Location: Sendable, Equatable {
        public var value: String
        /// The sum of the `--try-first`/`--try-last` weights (0 when none is given).
        public var weight: Int
        /// Options that are not jigdo's (ignored), as written.
        public var unknownOptions: [String]
    }

    /// `--name` or `--name=value` with a name of letters, digits and `-` (so an unquoted path
    /// word such as `--notes.txt` stays part of the path).
    static func isOption(_ word: String) -> Bool {
        guard word.hasPrefix("--") else { return false }
        let name = word.dropFirst(2).prefix { $0 != "=" }
        guard let first = name.first, first.isASCII, first.isLetter else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
    }

    /// Weights beyond this are taken as this (sums along label chains never overflow).
    public static let maxWeight = 1_000_000

    public var location: Location {
        var end = words.count
        while end > 1, Self.isOption(words[end - 1]) { end -= 1 }
        var value = words.first ?? ""
        for i in 1..<max(end, 1) where i < end { value += separators[i - 1] + words[i] }
        var weight = 0
        var unknown: [String] = []
        for option in words[max(end, 1)...] {
            let name: Substring, argument: Substring?
            if let eq = option.firstIndex(of: "=") {
                name = option[..<eq]
                argument = option[option.index(after: eq)...]
            } else {
                name = Substring(option)
                argument = nil
            }
            let sign: Int
            switch name {
            case "--try-first": sign = 1
            case "--try-last": sign = -1
            default:
                unknown.append(option)
                continue
            }
            var w = 1
            if let argument {
                guard let n = Int(argument), n >= 0 else {
                    unknown.append(option)
                    continue
                }
                w = min(n, Self.maxWeight)
            }
            weight = max(-Self.maxWeight, min(Self.maxWeight, weight + sign * w))
        }
        return Location(value: value, weight: weight, unknownOptions: unknown)
    }
}
