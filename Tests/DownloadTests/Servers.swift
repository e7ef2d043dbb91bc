import Foundation
import JigdoFormat
import TestSupport

// Test helpers of the download tests: their fixture release and temp dirs. The servers (nginx,
// the fault-injecting server) are TestSupport's, shared with the mount tests.

struct DownloadTestError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// A fresh temp directory, removed when released.
final class TempDir: @unchecked Sendable {
    let path: String
    init() throws {
        var template = Array("/tmp/jigdofs-dl-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw DownloadTestError("mkdtemp: \(errnoText(errno))")
        }
        path = String(cString: template)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

enum DownloadFixture {
    /// `Tests/` of the package.
    static let testsDirectory: String = {
        var url = URL(fileURLWithPath: #filePath)
        url.deleteLastPathComponent()
        url.deleteLastPathComponent()
        return url.path
    }()

    /// The jigdofs binary next to the test bundle.
    static var binary: String {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
        for candidate in [dir + "/jigdofs", testsDirectory + "/../.build/debug/jigdofs"] where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        return dir + "/jigdofs"
    }

    private static let built = Result { () throws -> String in
        let dir = NSTemporaryDirectory() + "jigdofs-dl-fixture-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        let r = try runProcess("/bin/bash", [testsDirectory + "/Fixtures/make-release.sh", dir, "120", "3"])
        guard r.status == 0 else { throw DownloadTestError("make-release.sh failed: \(r.stderr)") }
        atexit { try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + "jigdofs-dl-fixture-\(getpid())") }
        return dir
    }

    /// The OUT directory of make-release.sh (a release of 120 files), built once per process.
    static func release() throws -> String { try built.get() }
}

/// Runs a program to completion and collects its output (TestSupport's `Subprocess.run`).
func runProcess(_ path: String, _ args: [String]) throws -> ProcessResult {
    try Subprocess.run(path, args)
}

/// Regular files anywhere under `dir`.
func regularFilesCount(_ dir: String) -> Int {
    guard let e = FileManager.default.enumerator(atPath: dir) else { return 0 }
    var n = 0
    while let rel = e.nextObject() as? String {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: dir + "/" + rel, isDirectory: &isDir), !isDir.boolValue { n += 1 }
    }
    return n
}
