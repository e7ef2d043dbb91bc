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

    public enum Failure: Error, Equatable {
        case unterminatedQuote(Character)
        case danglingBackslash
    }

    public static func split(_ text: Substring) throws(Failure) -> ValueWords {
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
