import Foundation
import ImageAssembly
import JigdoFormat
import PartSources
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A cache disk that fills up (or turns read-only) in the middle of downloads, injected through
/// `Syscalls` on this test's cache directory only: every write of a partial file fails, the
/// parts are fetched into memory instead, and the image is still exact.
@Suite("A full cache disk during downloads", .serialized)
struct DiskFullTests {
    @Test(arguments: [ENOSPC, EROFS])
    func writesFailingInTheCacheCostOnlyCaching(code: Int32) throws {
        let release = try DownloadFixture.release()
        let nginx = try Nginx(root: release)
        defer { nginx.stop() }
        let tmp = try TempDir()
        let cacheDir = tmp.path + "/cache"
        let capture = LogCapture()
        let o = try Opened(servers: [nginx.url + "tree/"], cacheDir: cacheDir, logger: capture.logger)
        defer { o.downloader.shutdown() }

        let failure = Syscalls.injectFailure([.write], under: cacheDir, errno: code)
        defer { failure.remove() }
        #expect(try readAllAndCompare(o.reader, iso: o.iso))

        // Every part came through memory: none reached the cache, and the user was told once.
        let parts = FileManager.default.enumerator(atPath: cacheDir + "/parts")?.allObjects.compactMap { $0 as? String }
            .filter { !isDirectory(cacheDir + "/parts/" + $0) } ?? []
        #expect(parts.isEmpty, "\(parts.count) parts were written to a full cache")
        let warnings = capture.messages.filter { $0.contains("kept in memory instead") }
        #expect(warnings.count == 1, "\(capture.messages)")
        #expect(warnings.first?.contains(errnoText(code)) == true, "\(warnings)")
    }
}
