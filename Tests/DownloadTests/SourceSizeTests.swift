import Foundation
import TestSupport
import Testing

// Issue 21 asks that no file of the download layer grows past 500 lines: a file that does
// has taken on a second job and should be split. This keeps that from coming back unnoticed.

@Suite struct SourceSizeTests {
    @Test func noDownloadsFileIsOver500Lines() throws {
        let dir = Fixtures.packageRoot + "/Sources/PartSources/Downloads"
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".swift") }
        #expect(names.count > 10, "the download layer's files were not found under \(dir)")
        for name in names.sorted() {
            let text = try String(contentsOfFile: dir + "/" + name, encoding: .utf8)
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).count - (text.hasSuffix("\n") ? 1 : 0)
            #expect(lines <= 500, "\(name) has \(lines) lines")
        }
    }
}
