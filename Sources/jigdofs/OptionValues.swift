import ArgumentParser

// Every number and size the command line takes (and `mount -o key=value`, which becomes the
// option `--key value`) is parsed here, exactly, without floating point: a value that is not
// a plain number with an optional unit, or that is out of range, is an `OptionValueError`,
// which the CLI prints as one line and exits 64 (EX_USAGE). Nothing here can trap: `inf`,
// `nan`, `1e30`, `0x10`, `-5`, `9223372036854775807T` and empty strings are all refused.
//
// Use them as ArgumentParser transforms:
//   @Option(name: .long, transform: OptionValues.size("--cache-size")) var cacheSize: Int64?
//   @Option(name: .long, transform: OptionValues.integer("--jobs", in: 1...256)) var jobs = 8
//   @Option(name: .long, transform: OptionValues.seconds("--timeout", in: 0...86_400)) var timeout: Double?

/// A bad option value; `description` is the whole (one-line) message. Its own type, not a
/// `JigdoError`: ArgumentParser's transforms report it as a validation error (exit 64).
struct OptionValueError: Error, CustomStringConvertible {
    let option: String
    let value: String
    /// What is wrong, e.g. "out of range (0 to 1E)".
    let why: String
    init(_ option: String, _ value: String, _ why: String) {
        self.option = option
        self.value = value
        self.why = why
    }
    var description: String { "\(option): '\(value)' is \(why)" }
}

enum OptionValues {
    /// The largest size accepted: 1 EiB (any cache, disk or file is far smaller; the limit
    /// keeps every product with a unit factor inside Int64).
    static let maxSize: Int64 = 1 << 60

    /// "123", "500K", "1.5G", "20GiB", "20gb", "2t" -> bytes (units are powers of 1024;
    /// a fraction is rounded down to a whole byte).
    static func parseSize(_ text: String, option: String, range: ClosedRange<Int64> = 0...maxSize) throws(OptionValueError) -> Int64 {
        let example = "not a size like 500M or 20G"
        var t = Substring(text.uppercased())
        if t.hasSuffix("B") { t = t.dropLast() }
        if t.hasSuffix("I") { t = t.dropLast() }
        var factor: Int64 = 1
        let units: [Character: Int64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50, "E": 1 << 60]
        if let last = t.last, let f = units[last] {
            factor = f
            t = t.dropLast()
        }
        guard let number = DecimalText(t) else { throw OptionValueError(option, text, example) }
        guard let bytes = number.times(factor), range.contains(bytes) else {
            throw OptionValueError(option, text, "out of range (\(sizeRangeText(range)))")
        }
        return bytes
    }

    /// A whole number in `range` ("8", "+8"; no sign, fraction or exponent otherwise).
    static func parseInteger(_ text: String, option: String, range: ClosedRange<Int>) throws(OptionValueError) -> Int {
        let t = text.hasPrefix("+") ? Substring(text.dropFirst()) : Substring(text)
        guard let number = DecimalText(t), number.fractionDigits.isEmpty else {
            throw OptionValueError(option, text, "not a whole number")
        }
        guard let n = number.times(1), n >= Int64(range.lowerBound), n <= Int64(range.upperBound) else {
            throw OptionValueError(option, text, "out of range (\(range.lowerBound) to \(range.upperBound))")
        }
        return Int(n)
    }

    /// A duration: "30", "1.5", "30s", "500ms", "2m", "1h" -> seconds, in `range`.
    static func parseSeconds(_ text: String, option: String, range: ClosedRange<Double>) throws(OptionValueError) -> Double {
        let lower = text.lowercased()
        var t = Substring(lower)
        // Milliseconds, exactly: 1.5s is 1500 ms.
        var millisPerUnit: Int64 = 1000
        for (suffix, millis) in [("ms", Int64(1)), ("s", 1000), ("m", 60_000), ("h", 3_600_000)] where t.hasSuffix(suffix) {
            t = t.dropLast(suffix.count)
            millisPerUnit = millis
            break
        }
        guard let number = DecimalText(t) else { throw OptionValueError(option, text, "not a duration like 30s, 500ms or 2m") }
        let limitMillis = Int64(min(range.upperBound, 1e15) * 1000)
        guard let millis = number.times(millisPerUnit), millis <= limitMillis,
              Double(millis) / 1000 >= range.lowerBound else {
            throw OptionValueError(option, text, "out of range (\(secondsText(range.lowerBound)) to \(secondsText(range.upperBound)))")
        }
        return Double(millis) / 1000
    }

    // ArgumentParser transforms. ArgumentParser names the option and the value itself
    // ("The value 'inf' is invalid for '--cache-size <SIZE>': not a size like 500M or 20G"),
    // so they throw only the reason; main prints it as one line and exits 64.

    static func size(_ option: String, in range: ClosedRange<Int64> = 0...maxSize) -> @Sendable (String) throws -> Int64 {
        { text in try reason { () throws(OptionValueError) in try parseSize(text, option: option, range: range) } }
    }

    static func integer(_ option: String, in range: ClosedRange<Int>) -> @Sendable (String) throws -> Int {
        { text in try reason { () throws(OptionValueError) in try parseInteger(text, option: option, range: range) } }
    }

    static func seconds(_ option: String, in range: ClosedRange<Double>) -> @Sendable (String) throws -> Double {
        { text in try reason { () throws(OptionValueError) in try parseSeconds(text, option: option, range: range) } }
    }

    private static func reason<T>(_ parse: () throws(OptionValueError) -> T) throws -> T {
        do { return try parse() } catch { throw ValidationError(error.why) }
    }

    private static func sizeRangeText(_ range: ClosedRange<Int64>) -> String {
        func text(_ n: Int64) -> String {
            for (unit, shift) in [("E", 60), ("P", 50), ("T", 40), ("G", 30), ("M", 20), ("K", 10)] where n != 0 && n % (1 << shift) == 0 {
                return "\(n >> shift)\(unit)"
            }
            return "\(n)"
        }
        return "\(text(range.lowerBound)) to \(text(range.upperBound))"
    }

    private static func secondsText(_ s: Double) -> String {
        s == s.rounded() && s < 1e15 ? "\(Int64(s))s" : "\(s)s"
    }
}

/// A non-negative decimal number as written ("12", "1.5", ".5", "3."), digits only: the form
/// every numeric option value takes before its unit.
private struct DecimalText {
    var integerDigits: Substring
    var fractionDigits: Substring

    init?(_ text: Substring) {
        let parts = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        integerDigits = parts[0]
        fractionDigits = parts.count > 1 ? parts[1] : ""
        let isDigit: (Character) -> Bool = { $0.asciiValue.map { $0 >= 48 && $0 <= 57 } ?? false }
        guard !(integerDigits.isEmpty && fractionDigits.isEmpty),
              integerDigits.allSatisfy(isDigit), fractionDigits.allSatisfy(isDigit) else { return nil }
    }

    /// The value times `factor`, rounded down; nil when it does not fit in Int64.
    func times(_ factor: Int64) -> Int64? {
        var whole: Int64 = 0
        for c in integerDigits.drop(while: { $0 == "0" }) {
            let (m, o1) = whole.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(Int64(c.asciiValue! - 48))
            if o1 || o2 { return nil }
            whole = s
        }
        let (scaled, overflow) = whole.multipliedReportingOverflow(by: factor)
        if overflow { return nil }
        // factor * 0.d1d2...dk, rounded down: (factor * digits) / 10^k in 128-bit arithmetic
        // (18 digits are more than any factor here can tell apart).
        var digits: UInt64 = 0
        var denominator: UInt64 = 1
        for c in fractionDigits.prefix(18) {
            digits = digits * 10 + UInt64(c.asciiValue! - 48)
            denominator *= 10
        }
        let product = UInt64(factor).multipliedFullWidth(by: digits)
        let fraction = Int64(denominator.dividingFullWidth(product).quotient)
        let (total, o3) = scaled.addingReportingOverflow(fraction)
        return o3 ? nil : total
    }
}
