import Foundation
import JigdoFormat

/// A fresh directory under $TMPDIR (default /tmp), removed by `remove()` or when the value is
/// released.
public final class TemporaryDirectory: @unchecked Sendable {
    public let path: String

    public init(prefix: String = "jigdofs-test") throws {
        let base = ProcessTemp.base
        var template = Array("\(base)/\(prefix)-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw FixtureError("mkdtemp in \(base): \(errnoText(errno))")
        }
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `path/name`
    public func file(_ name: String) -> String { path + "/" + name }

    public func remove() { removeTree(path) }

    deinit { removeTree(path) }
}

/// Removes a file or directory tree; missing paths are fine.
public func removeTree(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

/// Copies a file or directory tree (fails if `to` exists).
public func copyTree(_ from: String, to: String) throws {
    try FileManager.default.copyItem(atPath: from, toPath: to)
}

/// The whole content of a file.
public func readBytes(_ path: String) throws -> [UInt8] {
    try ReadOnlyFile(path: path).readAll()
}

public func writeBytes(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// Whether two files have the same content (compared in 1 MiB blocks).
public func filesEqual(_ a: String, _ b: String) throws -> Bool {
    let fa = try ReadOnlyFile(path: a), fb = try ReadOnlyFile(path: b)
    guard fa.size == fb.size else { return false }
    var offset: Int64 = 0
    while offset < fa.size {
        let n = Int(min(1 << 20, fa.size - offset))
        if try fa.read(at: offset, count: n) != fb.read(at: offset, count: n) { return false }
        offset += Int64(n)
    }
    return true
}

/// The paths of all regular files under `dir`, sorted.
public func regularFiles(under dir: String) -> [String] {
    guard let e = FileManager.default.enumerator(atPath: dir) else { return [] }
    var out: [String] = []
    while let rel = e.nextObject() as? String {
        var isDir: ObjCBool = false
        let p = dir + "/" + rel
        if FileManager.default.fileExists(atPath: p, isDirectory: &isDir), !isDir.boolValue { out.append(p) }
    }
    return out.sorted()
}

/// A small deterministic random generator (SplitMix64), so failures are reproducible.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9e3779b97f4a7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58476d1ce4e5b9
        z = (z ^ (z >> 27)) &* 0x94d049bb133111eb
        return z ^ (z >> 31)
    }
}

/// Fast byte comparison (memcmp); `==` on byte arrays is slow in debug builds.
public func bytesEqual(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
    a.count == b.count && (a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
}

/// Fast byte comparison of an array with (a slice of) another.
public func bytesEqual(_ a: [UInt8], _ b: ArraySlice<UInt8>) -> Bool {
    a.withUnsafeBytes { ra in b.withUnsafeBytes { rb in bytesEqual(ra, rb) } }
}
