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
        try split(bytes: Array(text.utf8))
    }

    /// Splits the bytes of a value (raw bytes of a .jigdo line: each word is decoded with
    /// `RawNames`). Works on bytes, as jigdo-file does: the special characters are all ASCII,
    /// and an ASCII byte never occurs inside a UTF-8 sequence.
    static func split<Bytes: RandomAccessCollection>(bytes: Bytes) throws(Failure) -> ValueWords
    where Bytes.Element == UInt8, Bytes.Index == Int {
        // Most values are one plain word (a path or URL): no need to look at each byte twice.
        if !bytes.contains(where: isSpecial) {
            return ValueWords(words: bytes.isEmpty ? [] : [RawNames.text(bytes)], separators: [])
        }
        var words: [String] = []
        var separators: [String] = []
        try scan(bytes) { word, separator in
            if !words.isEmpty { separators.append(RawNames.text(separator)) }
            words.append(RawNames.text(word))
        }
        return ValueWords(words: words, separators: separators)
    }

    /// The number of words of a value, with the same errors as `split`, without keeping them.
    static func countWords<Bytes: RandomAccessCollection>(bytes: Bytes) throws(Failure) -> Int
    where Bytes.Element == UInt8, Bytes.Index == Int {
        if !bytes.contains(where: isSpecial) { return bytes.isEmpty ? 0 : 1 }
        var n = 0
        try scan(bytes) { _, _ in n += 1 }
        return n
    }

    @inline(__always)
    private static func isSpecial(_ b: UInt8) -> Bool {
        b == 0x20 || b == 0x09 || b == 0x23 || b == 0x5C || b == 0x27 || b == 0x22
    }

    /// Calls `word` with each word's bytes (quoting removed) and the blanks before it.
    private static func scan<Bytes: RandomAccessCollection>(_ bytes: Bytes, word: ([UInt8], [UInt8]) -> Void) throws(Failure)
    where Bytes.Element == UInt8, Bytes.Index == Int {
        var current: [UInt8] = []
        var inWord = false
        var any = false
        var pendingSeparator: [UInt8] = []
        func endWord() {
            if inWord {
                word(current, pendingSeparator)
                current.removeAll(keepingCapacity: true)
                inWord = false
                any = true
                pendingSeparator.removeAll(keepingCapacity: true)
            }
        }
        var i = bytes.startIndex
        let end = bytes.endIndex
        while i < end {
            let c = bytes[i]
            i += 1
            switch c {
            case 0x20, 0x09: // blank
                endWord()
                if any { pendingSeparator.append(c) }
            case 0x23: // '#'
                endWord()
                return
            case 0x5C: // '\'
                guard i < end else { throw .danglingBackslash }
                current.append(bytes[i])
                i += 1
                inWord = true
            case 0x27: // "'"
                inWord = true
                guard let close = bytes[i...].firstIndex(of: 0x27) else { throw .unterminatedQuote("'") }
                current.append(contentsOf: bytes[i..<close])
                i = close + 1
            case 0x22: // '"'
                inWord = true
                var closed = false
                while i < end {
                    let q = bytes[i]
                    i += 1
                    if q == 0x22 { closed = true; break }
                    if q == 0x5C {
                        guard i < end else { throw .danglingBackslash }
                        current.append(bytes[i])
                        i += 1
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
