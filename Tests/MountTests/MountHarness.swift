import Foundation
import TestSupport
import Testing

// The mount harness: THE one way to mount, `withMount`, which always unmounts (go-fuse's
// newTestCase + t.Cleanup pattern), and what it needs (/proc/mounts, the mount helpers).
// Running commands, the jigdofs binary and the fixture releases come from TestSupport.

enum Harness {
    /// The `jigdofs` binary under test.
    static var jigdofs: String { CLI.binary }

    /// Mounting (FUSE and loop) needs root, the FUSE device and fusermount3.
    static let canMount: Bool = getuid() == 0 && access("/dev/fuse", R_OK | W_OK) == 0
        && FileManager.default.isExecutableFile(atPath: "/usr/bin/fusermount3")

    static let mountHelpers = Fixtures.packageRoot + "/mount-helpers"
    static func helper(_ name: String) -> String { mountHelpers + "/" + name }
    /// The helper scripts find the jigdofs under test through $JIGDOFS.
    static var helperEnvironment: [String: String] { ["JIGDOFS": jigdofs] }

    /// Runs a program (a path, or a name looked up in PATH) and waits for it.
    @discardableResult
    static func run(_ args: [String], cwd: String? = nil, environment: [String: String] = [:], stdin: Data? = nil) throws -> ProcessResult {
        try Subprocess.run(args, cwd: cwd, environment: environment, stdin: stdin)
    }

    /// Runs and requires exit status 0.
    @discardableResult
    static func check(_ args: [String], environment: [String: String] = [:]) throws -> ProcessResult {
        try Subprocess.check(args, environment: environment)
    }

    /// A new directory (mode 0755: tests go through mount points as another user) in the
    /// per-process temp dir (removed at exit).
    static func makeTempDir(_ name: String) throws -> String {
        let dir = try ProcessTemp.directory("jigdofs-" + name)
        chmod(dir, 0o755)
        return dir
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
    /// `cwd` and `environment` are the mount command's. `at`: this existing directory instead
    /// (a remount at the same place; it is unmounted but kept).
    static func withMount<T>(_ sources: [String], options: [String] = [], command: ((String) -> [String])? = nil,
                             cwd: String? = nil, environment: [String: String] = [:], at given: String? = nil,
                             _ body: (String) throws -> T) throws -> T {
        let mountpoint = try given ?? makeTempDir("mnt")
        defer { cleanUpMount(mountpoint, keep: given != nil) }
        let r = try run(command?(mountpoint) ?? [jigdofs, "mount"] + options + sources + [mountpoint], cwd: cwd,
                        environment: helperEnvironment.merging(environment) { $1 })
        guard r.status == 0 else {
            throw HarnessError("jigdofs mount \(sources) failed (\(r.status)): \(r.stderr)")
        }
        guard isMounted(mountpoint) else {
            throw HarnessError("jigdofs mount returned 0 but \(mountpoint) is not in /proc/mounts")
        }
        return try body(mountpoint)
    }

    /// Unmounts (FUSE: fusermount3 -u; anything else: umount), lazily if busy, then removes the dir.
    static func cleanUpMount(_ mountpoint: String, keep: Bool = false) {
        var rounds = 0
        while isMounted(mountpoint), rounds < 3 {
            _ = try? run(["fusermount3", "-u", "-q", mountpoint])
            if isMounted(mountpoint) { _ = try? run(["umount", mountpoint]) }
            if isMounted(mountpoint) { _ = try? run(["umount", "-l", mountpoint]) }
            rounds += 1
        }
        if !keep { try? FileManager.default.removeItem(atPath: mountpoint) }
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

    /// Runs `body` with what a jigdo-loop-mount test needs: a fresh JIGDO_LOOP_STATE_DIR, a
    /// target directory, and the environment naming both the state dir and the jigdofs under
    /// test. Afterwards, whatever `body` did, it unmounts (the helper's -u, then the target and
    /// any private mount left under the state dir) and removes the state dir.
    static func withLoopMountSetup<T>(_ body: (_ state: String, _ target: String, _ env: [String: String]) throws -> T) throws -> T {
        let state = try makeTempDir("loop-state")
        let target = try makeTempDir("loop-target")
        let env = helperEnvironment.merging(["JIGDO_LOOP_STATE_DIR": state]) { $1 }
        defer {
            _ = try? run([helper("jigdo-loop-mount"), "-u", target], environment: env)
            cleanUpMount(target)
            for m in mountPoints() where m.hasPrefix(state + "/") { cleanUpMount(m) }
            try? FileManager.default.removeItem(atPath: state)
        }
        return try body(state, target, env)
    }

    /// Whether `pid` is a zombie (exited, not yet reaped).
    static func isZombie(_ pid: Int32) -> Bool {
        guard let s = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = s.lastIndex(of: ")") else { return false }
        return s[s.index(close, offsetBy: 2)] == "Z"
    }

    /// Waits (bounded; failing, not timing) until `condition` holds.
    static func waitUntil(_ what: String, seconds: Double = 30, _ condition: () -> Bool) throws {
        try TestSupport.waitUntil(what, seconds: seconds, condition)
    }
}

typealias HarnessError = FixtureError

/// Opening `dir + path` with each set of flags fails with EROFS (writes into a read-only mount).
func expectOpenFailsWithEROFS(_ dir: String, _ cases: [(path: String, flags: Int32)],
                              sourceLocation: SourceLocation = #_sourceLocation) {
    for (path, flags) in cases {
        let fd = open(dir + path, flags, 0o644)
        let e = errno
        if fd >= 0 { close(fd) }
        #expect(fd < 0 && e == EROFS, "open \(path) flags \(flags): fd \(fd) errno \(e)", sourceLocation: sourceLocation)
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
        let release = try Fixtures.release()
        let dir = try ProcessTemp.directory("squashfs")
        let image = dir + "/fs.sqsh"
        try Harness.check(["mksquashfs", release.tree, image, "-noI", "-noD", "-noF", "-noX",
                           "-no-fragments", "-no-xattrs", "-quiet", "-no-progress"])
        try JigdoFile.makeTemplate(image: image, jigdo: dir + "/fs.jigdo", template: dir + "/fs.template", parts: release.tree,
                                   options: ["--label", "T=\(release.tree)", "--uri", "T=file:\(release.tree)/"])
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
