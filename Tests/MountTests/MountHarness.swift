import Foundation
import Testing

// Everything the mount tests share: the fixture releases (made by the real generators through
// Tests/Fixtures/make-release.sh), running commands, and THE one way to mount: `withMount`,
// which always unmounts (go-fuse's newTestCase + t.Cleanup pattern).

/// Output of a finished command.
struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
    var stdoutData: Data
}

enum Harness {
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The `jigdofs` binary built next to the test bundle (swift build / swift test build it).
    static let jigdofs: String = {
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        // The test runner sits inside `jigdofsPackageTests.xctest` on Linux (a file) or deeper.
        while dir.path != "/" {
            let candidate = dir.appendingPathComponent("jigdofs").path
            if FileManager.default.isExecutableFile(atPath: candidate), !candidate.hasSuffix(".xctest") { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return packageRoot.appendingPathComponent(".build/debug/jigdofs").path
    }()

    /// Mounting (FUSE and loop) needs root, the FUSE device and fusermount3.
    static let canMount: Bool = getuid() == 0 && access("/dev/fuse", R_OK | W_OK) == 0
        && FileManager.default.isExecutableFile(atPath: "/usr/bin/fusermount3")

    static let mountHelpers = packageRoot.appendingPathComponent("mount-helpers").path
    static func helper(_ name: String) -> String { mountHelpers + "/" + name }
    /// The helper scripts find the jigdofs under test through $JIGDOFS.
    static var helperEnvironment: [String: String] { ["JIGDOFS": jigdofs] }

    /// Runs a program (PATH lookup through /usr/bin/env) and waits for it.
    @discardableResult
    static func run(_ args: [String], environment: [String: String]? = nil, stdin: Data? = nil) throws -> CommandResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        if let environment {
            p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        // Output goes to files: no pipe can fill up, and a daemon that keeps a copy of the
        // descriptors open cannot make us wait for end-of-file.
        let outPath = NSTemporaryDirectory() + "jigdofs-out-\(UUID().uuidString)"
        let errPath = outPath + ".err"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        defer {
            try? FileManager.default.removeItem(atPath: outPath)
            try? FileManager.default.removeItem(atPath: errPath)
        }
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        p.standardOutput = out
        p.standardError = err
        let input = Pipe()
        p.standardInput = stdin == nil ? FileHandle.nullDevice : input
        try p.run()
        try? out.close()
        try? err.close()
        if let stdin {
            input.fileHandleForWriting.write(stdin)
            try? input.fileHandleForWriting.close()
        }
        p.waitUntilExit()
        let outData = FileManager.default.contents(atPath: outPath) ?? Data()
        let errData = FileManager.default.contents(atPath: errPath) ?? Data()
        return CommandResult(
            status: p.terminationStatus,
            stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self),
            stdoutData: outData)
    }

    /// Runs and requires exit status 0.
    @discardableResult
    static func check(_ args: [String], environment: [String: String]? = nil) throws -> CommandResult {
        let r = try run(args, environment: environment)
        guard r.status == 0 else {
            throw HarnessError("\(args.joined(separator: " ")) failed (\(r.status)): \(r.stderr)")
        }
        return r
    }

    static func makeTempDir(_ name: String) throws -> String {
        let path = NSTemporaryDirectory() + "jigdofs-\(name)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Mount points from /proc/mounts (octal escapes decoded).
    static func mountPoints() -> [String] {
        guard let text = try? String(contentsOfFile: "/proc/mounts", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            return f.count > 1 ? decodeOctal(String(f[1])) : nil
        }
    }

    static func isMounted(_ path: String) -> Bool {
        mountPoints().contains(path)
    }

    static func decodeOctal(_ s: String) -> String {
        var out = ""
        var i = s.startIndex
        while i < s.endIndex {
            if s[i] == "\\", let end = s.index(i, offsetBy: 4, limitedBy: s.endIndex),
               let v = UInt8(s[s.index(after: i)..<end], radix: 8) {
                out.append(Character(Unicode.Scalar(v)))
                i = end
            } else {
                out.append(s[i])
                i = s.index(after: i)
            }
        }
        return out
    }

    /// Mounts `sources` with `jigdofs mount` on a fresh temp directory, runs `body` with the mount
    /// point, and always unmounts and removes the directory, whatever `body` does.
    /// `command` builds another mount command line for the mount point (e.g. mount.jigdofs).
    static func withMount<T>(_ sources: [String], options: [String] = [], command: ((String) -> [String])? = nil,
                             _ body: (String) throws -> T) throws -> T {
        let mountpoint = try makeTempDir("mnt")
        defer { cleanUpMount(mountpoint) }
        let r = try run(command?(mountpoint) ?? [jigdofs, "mount"] + options + sources + [mountpoint], environment: helperEnvironment)
        guard r.status == 0 else {
            throw HarnessError("jigdofs mount \(sources) failed (\(r.status)): \(r.stderr)")
        }
        guard isMounted(mountpoint) else {
            throw HarnessError("jigdofs mount returned 0 but \(mountpoint) is not in /proc/mounts")
        }
        return try body(mountpoint)
    }

    /// Unmounts (FUSE: fusermount3 -u; anything else: umount), lazily if busy, then removes the dir.
    static func cleanUpMount(_ mountpoint: String) {
        var rounds = 0
        while isMounted(mountpoint), rounds < 3 {
            _ = try? run(["fusermount3", "-u", "-q", mountpoint])
            if isMounted(mountpoint) { _ = try? run(["umount", mountpoint]) }
            if isMounted(mountpoint) { _ = try? run(["umount", "-l", mountpoint]) }
            rounds += 1
        }
        try? FileManager.default.removeItem(atPath: mountpoint)
    }

    /// Process ids whose command line contains `text` (to find a mount's daemon).
    static func pids(withArgument text: String) -> [Int32] {
        let me = getpid()
        return ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { entry in
            guard let pid = Int32(entry), pid != me,
                  let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return nil }
            let args = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            return args.contains(text) ? pid : nil
        }
    }

    /// Waits (bounded; failing, not timing) until `condition` holds.
    static func waitUntil(_ what: String, seconds: Double = 30, _ condition: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while !condition() {
            if Date() > deadline { throw HarnessError("gave up waiting: \(what)") }
            usleep(20_000)
        }
    }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// The fixture releases, built once per test process with the real generators into a cache
/// directory that is reused while make-release.sh is unchanged.
struct Fixtures: Sendable {
    /// The six variants make-release.sh writes (directory name -> the ISO it reproduces).
    static let variants = ["jf-md5-gz", "jf-md5-bz2", "jf-sha256-gz", "jf-sha256-bz2", "jte-md5-gz", "jte-sha256-bz2"]

    let root: String
    var tree: String { root + "/tree" }
    func jigdo(_ variant: String) -> String { "\(root)/\(variant)/release.jigdo" }
    /// libjte writes its own ISO next to its jigdo; jigdo-file's reproduce release.iso.
    func originalISO(_ variant: String) -> String {
        variant.hasPrefix("jte-") ? "\(root)/\(variant)/release.iso" : "\(root)/release.iso"
    }

    static let seed1 = Result { try Fixtures.make(files: 300, seed: 1) }
    static let seed2 = Result { try Fixtures.make(files: 80, seed: 2) }

    static func make(files: Int, seed: Int) throws -> Fixtures {
        let script = Harness.packageRoot.appendingPathComponent("Tests/Fixtures/make-release.sh").path
        let scriptText = try String(contentsOfFile: script, encoding: .utf8)
        let root = NSTemporaryDirectory() + "jigdofs-mounttests-fixtures/release-\(files)-\(seed)"
        let stamp = root + "/.made-by"
        if (try? String(contentsOfFile: stamp, encoding: .utf8)) == scriptText {
            return Fixtures(root: root)
        }
        try? FileManager.default.removeItem(atPath: root)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try Harness.check(["bash", script, root, String(files), String(seed)])
        try scriptText.write(toFile: stamp, atomically: true, encoding: .utf8)
        return Fixtures(root: root)
    }
}

/// A squashfs image of the seed-1 tree, distributed through jigdo: uncompressed and without
/// fragments, so every file is stored verbatim and jigdo-file matches it as a part.
struct SquashfsFixture: Sendable {
    let dir: String
    let tree: String
    var jigdo: String { dir + "/fs.jigdo" }
    var original: String { dir + "/fs.sqsh.original" }

    static let shared = Result { try SquashfsFixture.make() }

    static func make() throws -> SquashfsFixture {
        let release = try Fixtures.seed1.get()
        let dir = release.root + "-squashfs"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let image = dir + "/fs.sqsh"
        try Harness.check(["mksquashfs", release.tree, image, "-noI", "-noD", "-noF", "-noX",
                           "-no-fragments", "-no-xattrs", "-quiet", "-no-progress"])
        try Harness.check(["jigdo-file", "make-template", "-r", "quiet", "--force", "-i", image,
                           "-j", dir + "/fs.jigdo", "-t", dir + "/fs.template",
                           "--label", "T=\(release.tree)", "--uri", "T=file:\(release.tree)/", release.tree + "//"])
        try FileManager.default.moveItem(atPath: image, toPath: dir + "/fs.sqsh.original")
        return SquashfsFixture(dir: dir, tree: release.tree)
    }
}

/// Loop devices whose backing file is under `prefix` (from `losetup -a`).
func loopDevices(backedBy prefix: String) -> [String] {
    guard let r = try? Harness.run(["losetup", "-a"]) else { return [] }
    return r.stdout.split(separator: "\n").compactMap { line in
        guard line.contains("(\(prefix)") else { return nil }
        return line.split(separator: ":").first.map(String.init)
    }
}

/// Runs `body` with a loop device over `file` (`losetup -f --show`), always detached afterwards.
func withLoopDevice<T>(_ file: String, _ body: (String) throws -> T) throws -> T {
    let device = try Harness.check(["losetup", "-f", "--show", file]).stdout
        .trimmingCharacters(in: .whitespacesAndNewlines)
    defer { _ = try? Harness.run(["losetup", "-d", device]) }
    return try body(device)
}
