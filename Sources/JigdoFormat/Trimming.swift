extension StringProtocol {
    /// Without the leading characters for which `leading` holds and the trailing ones for which
    /// `trailing` holds. The one trimming helper (.jigdo lines, ISO 9660 volume names, libfuse's
    /// log lines); Foundation's `trimmingCharacters(in:)` is not used so the format layers need
    /// no Foundation.
    @inlinable
    public func trimming(leading: (Character) -> Bool = { _ in false }, trailing: (Character) -> Bool) -> SubSequence {
        var s = self[...]
        while let f = s.first, leading(f) { s = s.dropFirst() }
        while let l = s.last, trailing(l) { s = s.dropLast() }
        return s
    }

    /// Without leading and trailing blanks (spaces and tabs, as jigdo-file(1) allows around
    /// labels, values and section names).
    @inlinable
    public func trimmingBlanks() -> SubSequence {
        let blank = { (c: Character) in c == " " || c == "\t" }
        return trimming(leading: blank, trailing: blank)
    }
}
