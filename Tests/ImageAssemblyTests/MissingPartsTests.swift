import ImageAssembly
import JigdoFormat
import Testing

/// `PartSource.missingParts(of:)`, the one rule of every source's `missingParts()`.
@Suite struct MissingPartsTests {
    private static func part(_ length: Int64, _ n: UInt8) -> TemplatePart {
        TemplatePart(length: length, checksum: Checksum([UInt8](repeating: n, count: 16)), rsyncSum: nil)
    }

    /// Has only the parts whose index is in `have`.
    private struct Some: PartSource {
        var have: Set<Int>
        func readPart(_ index: Int, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {}
        func isLocallyAvailable(_ index: Int) -> Bool { have.contains(index) }
    }

    @Test func zeroLengthPartsAreNeverMissing() {
        let parts = [Self.part(0, 1), Self.part(5, 2), Self.part(0, 3), Self.part(7, 4), Self.part(9, 5)]
        #expect(NoParts().missingParts(of: parts) == [1, 3, 4])
        #expect(Some(have: [3]).missingParts(of: parts) == [1, 4])
        #expect(Some(have: [1, 3, 4]).missingParts(of: parts).isEmpty)
    }
}
