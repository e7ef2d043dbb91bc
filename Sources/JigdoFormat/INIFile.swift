/// A file in the .jigdo file's INI syntax (jigdo-file(1), FORMAT OF .JIGDO FILES), read as a
/// plain list of entries: `[Section]` lines, `Label=Value` lines whose value is split into words
/// with `ValueWords` (quotes, backslashes, `#` comments), blank and `#` lines ignored, CRLF line
/// ends accepted, `[Comment]` sections skipped. jigdofs' configuration file uses it, so the
/// config is written exactly like the .jigdo files it configures.
public struct INIFile: Sendable {
    public struct Entry: Sendable, Equatable {
        /// The section the entry is in (`Servers`), as written.
        public var section: String
        /// The text before `=`, blanks trimmed.
        public var key: String
        /// The value's words (quoting removed), joined with the whitespace between them.
        public var value: String
        /// 1-based line number.
        public var line: Int

        public init(section: String, key: String, value: String, line: Int) {
            self.section = section
            self.key = key
            self.value = value
            self.line = line
        }
    }

    /// The file's path (as given), for messages.
    public var path: String
    public var entries: [Entry]

    /// Every entry of `section`, in file order.
    public func entries(in section: String) -> [Entry] {
        entries.filter { $0.section == section }
    }

    /// Reads a small text file (at most 1 MiB: a configuration, not data).
    public static func load(path: String) throws -> INIFile {
        let file = try ReadOnlyFile(path: path)
        guard file.size <= 1 << 20 else {
            throw JigdoError(.syntax, path: path, "too large for a configuration file (\(file.size) bytes)")
        }
        guard let text = String(validating: try file.readAll(), as: UTF8.self) else {
            throw JigdoError(.syntax, path: path, "not UTF-8 text")
        }
        return try parse(text: text, path: path)
    }

    /// Parses `text`. Every line outside `[Comment]` must be blank, a `#` comment, a section
    /// line or `Label=Value` (an entry before the first section is an error too): a
    /// configuration that silently ignored a mistyped line would be worse than none.
    public static func parse(text: String, path: String) throws -> INIFile {
        var entries: [Entry] = []
        var section: String?
        var lineNumber = 0
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNumber += 1
            var line = rawLine
            if line.last == "\r" { line = line.dropLast() }
            let trimmed = line.trimmingBlanks()
            let inComment = section == "Comment" || section == "comment"
            if inComment && !trimmed.hasPrefix("[") { continue }
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            if trimmed.hasPrefix("[") {
                guard let close = trimmed.lastIndex(of: "]"),
                      trimmed[trimmed.index(after: close)...].trimmingBlanks().isEmpty else {
                    throw JigdoError(.syntax, path: path, "line \(lineNumber): section line without ']'")
                }
                let name = trimmed[trimmed.index(after: trimmed.startIndex)..<close].trimmingBlanks()
                guard !name.isEmpty else { throw JigdoError(.syntax, path: path, "line \(lineNumber): empty section name") }
                section = String(name)
                continue
            }
            guard let eq = trimmed.firstIndex(of: "=") else {
                throw JigdoError(.syntax, path: path, "line \(lineNumber): expected 'Label=Value' or '[Section]', got '\(trimmed.prefix(80))'")
            }
            guard let section else {
                throw JigdoError(.syntax, path: path, "line \(lineNumber): '\(trimmed.prefix(80))' comes before any [Section]")
            }
            let key = trimmed[..<eq].trimmingBlanks()
            guard !key.isEmpty else { throw JigdoError(.syntax, path: path, "line \(lineNumber): entry without a label before '='") }
            let words: ValueWords
            do {
                words = try ValueWords.split(trimmed[trimmed.index(after: eq)...].trimmingBlanks())
            } catch .unterminatedQuote(let q) {
                throw JigdoError(.syntax, path: path, "line \(lineNumber): unterminated \(q) quote")
            } catch {
                throw JigdoError(.syntax, path: path, "line \(lineNumber): backslash at end of line")
            }
            entries.append(Entry(section: section, key: String(key), value: words.joined, line: lineNumber))
        }
        return INIFile(path: path, entries: entries)
    }
}
