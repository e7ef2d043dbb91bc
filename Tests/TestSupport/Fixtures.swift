import Foundation
import JigdoFormat
import Synchronization

/// The fixture releases of `Tests/Fixtures/make-release.sh`, built with the real generators
/// (xorriso, jigdo-file, libjte) on first use, from any thread; all test targets share them.
///
/// Tests must treat every fixture file as read-only: copy what you want to change into a
/// `TemporaryDirectory`.
///
/// Built releases are kept between runs in `$JIGDOFS_TEST_FIXTURES` (default
/// `$TMPDIR/jigdofs-test-fixtures`), one directory per (files, seed, content of
/// make-release.sh): a changed script builds anew, and a release is built in a private
/// directory and renamed into place, so test processes running at the same time never see
/// half a release.
public enum Fixtures {
    /// The standard release: 300 files, about 35 MB.
    public static func release() throws -> FixtureRelease { try release(files: 300, seed: 1) }

    /// A small release (12 files, under 1 MB, templates of about 5 KB) for exhaustive tests.
    public static func smallRelease() throws -> FixtureRelease { try release(files: 12, seed: 7) }

    /// The release make-release.sh builds with `files` files from `seed` (built once per process).
    public static func release(files: Int, seed: Int) throws -> FixtureRelease {
        let key = "\(files)-\(seed)"
        let slot = built.withLock { slots in
            if let s = slots[key] { return s }
            let s = BuildSlot()
            slots[key] = s
            return s
        }
        // The slot's lock is held while building, so other threads wait for the same build.
        return try slot.result.withLock { result in
            if let result { return try result.get() }
            let r = Result { try FixtureRelease.build(files: files, seed: seed) }
            result = r
            return try r.get()
        }
    }

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

    /// Where built releases are kept between runs.
    static var cacheDirectory: String {
        if let keep = ProcessInfo.processInfo.environment["JIGDOFS_TEST_FIXTURES"], !keep.isEmpty { return keep }
        return ProcessTemp.base + "/jigdofs-test-fixtures"
    }

    private final class BuildSlot: Sendable {
        let result = Mutex<Result<FixtureRelease, any Error>?>(nil)
    }

    private static let built = Mutex<[String: BuildSlot]>([:])
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

    static func build(files: Int, seed: Int) throws -> FixtureRelease {
        let script = Fixtures.testsDirectory + "/Fixtures/make-release.sh"
        let scriptText = try String(contentsOfFile: script, encoding: .utf8)
        let cache = Fixtures.cacheDirectory
        let out = cache + "/release-\(files)-\(seed)-\(String(scriptText.hashValueStable, radix: 16))"
        if FileManager.default.fileExists(atPath: out + "/.complete") { return FixtureRelease(root: out) }
        try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
        let building = out + ".building-\(getpid())"
        removeTree(building)
        let r = try Subprocess.run("/bin/bash", [script, building, String(files), String(seed)])
        guard r.status == 0 else {
            removeTree(building)
            throw FixtureError("make-release.sh \(files) \(seed) failed (exit \(r.status)): \(r.stderr.suffix(2000))")
        }
        _ = FileManager.default.createFile(atPath: building + "/.complete", contents: nil)
        // Another process may have finished the same release first: then use that one.
        if rename(building, out) != 0 {
            let failure = errnoText(errno)
            removeTree(building)
            guard FileManager.default.fileExists(atPath: out + "/.complete") else {
                throw FixtureError("cannot move \(building) to \(out): \(failure)")
            }
        }
        return FixtureRelease(root: out)
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

    /// Copies just the .jigdo and .template into `dir` (a release without any parts: the
    /// jigdo's own `file:../tree/` server does not resolve from there).
    public func copyJigdoAndTemplate(into dir: String) throws {
        for f in [jigdo, template] {
            try FileManager.default.copyItem(atPath: f, toPath: dir + "/" + (f as NSString).lastPathComponent)
        }
    }

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

/// The per-process temp dir (fixtures of single tests, `XDG_CACHE_HOME` of child processes);
/// removed when the process exits.
public enum ProcessTemp {
    /// $TMPDIR, or /tmp.
    public static var base: String {
        ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0.dropLastSlash } ?? "/tmp"
    }

    public static let root: String = {
        var template = Array("\(base)/jigdofs-tests-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { fatalError("mkdtemp failed: \(errnoText(errno))") }
        let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // Traversable by others (mkdtemp makes 0700): mount tests read through mount points
        // in here as another user.
        chmod(path, 0o755)
        processTempPath = strdup(path)
        atexit {
            if let p = processTempPath { removeTree(String(cString: p)) }
        }
        return path
    }()

    /// A new directory `root/name-XXXXXX` (removed at exit with the rest of `root`).
    public static func directory(_ name: String) throws -> String {
        var template = Array("\(root)/\(name)-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw FixtureError("mkdtemp in \(root): \(errnoText(errno))")
        }
        return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
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

/// The checksum keys of a .jigdo's `[Parts]` lines (MD5 or SHA256, jigdo's Base64), as the
/// generator wrote them: what tests count parts against, independent of our parser.
public func jigdoPartKeys(_ jigdo: String) throws -> Set<Substring> {
    let text = try String(contentsOfFile: jigdo, encoding: .utf8)
    return Set(text.split(separator: "\n").compactMap { line -> Substring? in
        guard let eq = line.firstIndex(of: "=") else { return nil }
        let key = line[..<eq]
        return key.count == 22 || key.count == 43 ? key : nil
    })
}
