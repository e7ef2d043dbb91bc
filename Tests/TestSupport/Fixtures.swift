import Foundation
import JigdoFormat

/// The fixture releases of `Tests/Fixtures/make-release.sh`, built with the real generators
/// (xorriso, jigdo-file, libjte) once per test process, on first use, from any thread.
///
/// Tests must treat every fixture file as read-only: copy what you want to change into a
/// `TemporaryDirectory`.
///
/// Set `JIGDOFS_TEST_FIXTURES=DIR` to keep the built releases in DIR between runs (they are
/// rebuilt when make-release.sh changes); by default they live in a temp dir removed at exit.
public enum Fixtures {
    /// The standard release: 300 files, about 35 MB.
    public static func release() throws -> FixtureRelease { try standard.get() }

    /// A small release (12 files, under 1 MB, templates of about 5 KB) for exhaustive tests.
    public static func smallRelease() throws -> FixtureRelease { try small.get() }

    /// `Tests/` of the package (found from this source file, so tests do not depend on the
    /// working directory).
    public static let testsDirectory: String = {
        var url = URL(fileURLWithPath: #filePath)
        url.deleteLastPathComponent() // TestSupport
        url.deleteLastPathComponent() // Tests
        return url.path
    }()

    /// The package root.
    public static var packageRoot: String { directoryOf(testsDirectory).dropLastSlash }

    private static let standard = Result { try FixtureRelease.build(name: "release", files: 300, seed: 1) }
    private static let small = Result { try FixtureRelease.build(name: "small", files: 12, seed: 7) }
}

/// One built release: the tree, the original ISO and the six generator variants.
public struct FixtureRelease: Sendable {
    /// The OUT directory of make-release.sh.
    public let root: String
    /// The release tree (the parts live here).
    public var tree: String { root + "/tree" }
    /// The ISO xorriso made from the tree (the one the jigdo-file variants describe).
    public var iso: String { root + "/release.iso" }
    /// All six variants, in `FixtureVariant.names` order.
    public let variants: [FixtureVariant]

    /// The variant with this name (one of `FixtureVariant.names`).
    public func variant(_ name: String) -> FixtureVariant {
        guard let v = variants.first(where: { $0.name == name }) else {
            fatalError("no fixture variant '\(name)'; known: \(FixtureVariant.names)")
        }
        return v
    }

    static func build(name: String, files: Int, seed: Int) throws -> FixtureRelease {
        let script = Fixtures.testsDirectory + "/Fixtures/make-release.sh"
        let out: String
        if let keep = ProcessInfo.processInfo.environment["JIGDOFS_TEST_FIXTURES"], !keep.isEmpty {
            out = keep + "/" + name
            let stamp = out + "/.stamp"
            let scriptText = (try? String(contentsOfFile: script, encoding: .utf8)) ?? ""
            let want = "\(files) \(seed) \(scriptText.hashValueStable)"
            if (try? String(contentsOfFile: stamp, encoding: .utf8)) == want {
                return FixtureRelease(root: out)
            }
            try? FileManager.default.removeItem(atPath: stamp)
            try run(script, out, files, seed)
            try want.write(toFile: stamp, atomically: true, encoding: .utf8)
        } else {
            out = ProcessTemp.root + "/" + name
            try run(script, out, files, seed)
        }
        return FixtureRelease(root: out)
    }

    private static func run(_ script: String, _ out: String, _ files: Int, _ seed: Int) throws {
        let r = try Subprocess.run("/bin/bash", [script, out, String(files), String(seed)])
        guard r.status == 0 else {
            throw FixtureError("make-release.sh failed (exit \(r.status)): \(r.stderr.suffix(2000))")
        }
    }

    init(root: String) {
        self.root = root
        variants = FixtureVariant.names.map { FixtureVariant(name: $0, releaseRoot: root) }
    }
}

/// One generator output: a .jigdo, its .template, and the ISO it describes.
public struct FixtureVariant: Sendable, CustomStringConvertible {
    /// Every variant make-release.sh builds: jigdo-file (`jf-`) and libjte (`jte-`) outputs.
    public static let names = ["jf-md5-gz", "jf-md5-bz2", "jf-sha256-gz", "jf-sha256-bz2", "jte-md5-gz", "jte-sha256-bz2"]

    public let name: String
    /// OUT/<name>
    public let directory: String
    /// OUT/<name>/release.jigdo
    public var jigdo: String { directory + "/release.jigdo" }
    /// OUT/<name>/release.template
    public var template: String { directory + "/release.template" }
    /// The ISO to compare with: OUT/release.iso for jigdo-file, OUT/<name>/release.iso for libjte.
    public let iso: String
    /// True for the libjte (xorriso) variants.
    public var isLibjte: Bool { name.hasPrefix("jte-") }
    public var checksumKind: ChecksumKind { name.contains("sha256") ? .sha256 : .md5 }
    /// bzip2 (`BZIP`) or zlib (`DATA`) template chunks.
    public var usesBzip2: Bool { name.hasSuffix("bz2") }
    public var description: String { name }

    init(name: String, releaseRoot: String) {
        self.name = name
        directory = releaseRoot + "/" + name
        iso = name.hasPrefix("jte-") ? directory + "/release.iso" : releaseRoot + "/release.iso"
    }
}

public struct FixtureError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The per-process temp dir that holds default fixtures; removed when the process exits.
enum ProcessTemp {
    static let root: String = {
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(base)/jigdofs-tests-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { fatalError("mkdtemp failed: \(errnoText(errno))") }
        let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        processTempPath = strdup(path)
        atexit {
            if let p = processTempPath { removeTree(String(cString: p)) }
        }
        return path
    }()
}

nonisolated(unsafe) private var processTempPath: UnsafeMutablePointer<CChar>?

extension String {
    /// A hash that is the same in every process (Swift's `hashValue` is seeded per process).
    var hashValueStable: UInt64 {
        var h: UInt64 = 0xcbf29ce484222325
        for b in utf8 { h = (h ^ UInt64(b)) &* 0x100000001b3 }
        return h
    }

    var dropLastSlash: String { hasSuffix("/") && count > 1 ? String(dropLast()) : self }
}
