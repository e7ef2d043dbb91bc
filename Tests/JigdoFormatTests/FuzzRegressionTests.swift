import Foundation
import JigdoFormat
import Testing
import TestSupport

/// Inputs the fuzz targets (Fuzz/) found, fed through the same calls; the files are in
/// Tests/Fixtures/fuzz/.
@Suite("Fuzz findings stay fixed")
struct FuzzRegressionTests {
    @Test("a % that starts no escape (Pa%kages) is a name: checked once, not decoded again and again")
    func percentThatDecodesToItself() {
        #expect(staysInsideDirectory("Pa%kages/pkg.rpm"))
        #expect(staysInsideDirectory("100%/x"))
        // Decoded once, as local lookups do: %2e%2e is "..", %252e%252e a name.
        #expect(!staysInsideDirectory("%2e%2e/secret"))
        #expect(staysInsideDirectory("%252e%252e/x"))
        #expect(!staysInsideDirectory("a/%2E%2E/%2e%2e/x"))
    }

    @Test("FuzzLocations' stack overflow: a [Parts] location with Pa%kages, expanded with a --map'd label")
    func fuzzLocationsPercentRecursion() throws {
        let path = Fixtures.testsDirectory + "/Fixtures/fuzz/FuzzLocations-percent-recursion.jigdo"
        let text = String(decoding: try ReadOnlyFile(path: path).readAll(), as: UTF8.self)
        let d = try JigdoDescriptor.parse(text: text, path: "/nonexistent-fuzz/x.jigdo", base: "/nonexistent-fuzz/")
        var resolver = LocationResolver(descriptor: d)
        for label in d.servers.keys.sorted().prefix(4) {
            resolver.prepend[label] = [JigdoLocation(value: "file:/nonexistent-fuzz/map/", base: "/nonexistent-fuzz/map/")]
        }
        var expanded = 0
        for key in d.parts.keys.sorted() {
            guard let sum = JigdoBase64.decodeChecksum(key) else { continue }
            for location in resolver.locations(forPart: sum) {
                expanded += 1
                if case .local(let p) = location, p.hasPrefix("/nonexistent-fuzz/map") {
                    #expect(p.hasPrefix("/nonexistent-fuzz/map/"), "\(p) left the mapped directory")
                }
            }
        }
        #expect(expanded > 0)
    }
}
