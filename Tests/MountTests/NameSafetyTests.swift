import Foundation
import TestSupport
import Testing

/// Names a mount cannot be fooled by: a name from an image is escaped in the log (no forged
/// line), a .jigdo cannot take the status file's name or another image's, and a line repeated
/// in the log is written once with a count at the unmount.
@Suite(.serialized, .enabled(if: Harness.canMount, "needs root, /dev/fuse and fusermount3"))
struct NameSafetyTests {
    /// Mounts `sources` with a log file, runs `body`, unmounts, and returns the whole log once
    /// the daemon has exited (the repeat counts are written after the unmount).
    func withLoggedMount(_ sources: [String], options: [String], log: String, _ body: (String) throws -> Void) throws -> String {
        try Harness.withMount(sources, options: options + ["--log-file", log], body)
        // The daemon's pid, from its first line ("... jigdofs[PID] notice: ...: mounted ...").
        let text = try String(contentsOfFile: log, encoding: .utf8)
        let pid = try #require(text.split(separator: "\n").first.flatMap { line in
            line.range(of: " jigdofs[").flatMap { start in Int32(line[start.upperBound...].prefix { $0.isNumber }) }
        })
        try Harness.waitUntil("the daemon to exit") { kill(pid, 0) != 0 || Harness.isZombie(pid) }
        return try String(contentsOfFile: log, encoding: .utf8)
    }

    /// A Rock Ridge name holding a newline, a whole log line and ESC: read through the mount
    /// (its part is missing, so the read fails and is logged), it appears escaped on one line.
    @Test func logLinesCannotBeForgedByNames() throws {
        let dir = try Harness.makeTempDir("names-log")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let release = try ControlNameRelease.make(in: dir)
        let log = dir + "/daemon.log"
        let text = try withLoggedMount([release.jigdo], options: ["--offline"], log: log) { mnt in
            let cat = try Harness.run(["cat", mnt + "/rr.iso.d/" + ControlNameRelease.name])
            #expect(cat.status != 0 && cat.stderr.contains("Input/output error"), "\(cat.stderr)")
        }
        let lines = text.split(separator: "\n")
        #expect(!lines.contains { $0.hasPrefix(ControlNameRelease.forgedLine) }, "forged line in the log: \(text)")
        #expect(!text.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" }, "control character in the log: \(text)")
        #expect(lines.contains { $0.contains("rr.iso.d/" + ControlNameRelease.shown + ": read of") }, "\(text)")
        // Every line is one of ours: a timestamp and the daemon's pid.
        #expect(lines.allSatisfy { $0.contains(" jigdofs[") && $0.first?.isNumber == true }, "\(text)")
    }

    /// The same failing read, four times: its log line is written once, and "3 more times" at
    /// the unmount.
    @Test func repeatedErrorLinesAreWrittenOnceWithACount() throws {
        let dir = try Harness.makeTempDir("names-repeat")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let release = try ControlNameRelease.make(in: dir)
        let log = dir + "/daemon.log"
        let text = try withLoggedMount([release.jigdo], options: ["--offline"], log: log) { mnt in
            // A failed read is not cached: each cat sends the kernel's same reads again.
            for _ in 0..<4 {
                let cat = try Harness.run(["cat", mnt + "/rr.iso.d/" + ControlNameRelease.name])
                #expect(cat.status != 0 && cat.stderr.contains("Input/output error"), "\(cat.stderr)")
            }
        }
        // Lines without their timestamp and pid.
        let messages = text.split(separator: "\n").map { line -> Substring in
            line.range(of: "]: ").map { line[$0.upperBound...] } ?? line[...]
        }
        let reads = messages.filter { $0.contains(": read of") && !$0.contains("more time") }
        #expect(!reads.isEmpty, "\(text)")
        #expect(Set(reads).count == reads.count, "a read error written twice: \(text)")
        #expect(messages.contains { $0.contains("3 more times: ") && $0.contains(": read of ") }, "\(text)")
    }

    /// A .jigdo cannot name its image `.jigdofs-status`: alone, the mount fails with one line;
    /// in a folder, that image is skipped and the rest is mounted with a working status.
    @Test func theStatusFileNameIsRefused() throws {
        let release = try Fixtures.smallRelease()
        let dir = try Harness.makeTempDir("names-status")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let folder = dir + "/folder"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try release.variant("jf-md5-gz").copyJigdoAndTemplate(into: folder)
        let text = try String(contentsOfFile: folder + "/release.jigdo", encoding: .utf8)
        try text.replacingOccurrences(of: "Filename=release.iso", with: "Filename=.jigdofs-status")
            .write(toFile: folder + "/spoof.jigdo", atomically: true, encoding: .utf8)

        let mountpoint = try Harness.makeTempDir("mnt-status")
        defer { Harness.cleanUpMount(mountpoint) }
        let alone = try Harness.run([Harness.jigdofs, "mount", "--scan", release.tree, folder + "/spoof.jigdo", mountpoint])
        #expect(alone.status != 0)
        #expect(!Harness.isMounted(mountpoint))
        #expect(alone.stderrLines.count == 1 && alone.stderr.contains(".jigdofs-status is the name of the mount's status file"), "\(alone.stderr)")

        try Harness.withMount([folder], options: ["--scan", release.tree]) { mnt in
            #expect(try FileManager.default.contentsOfDirectory(atPath: mnt).sorted() == ["release.iso", "release.iso.d"])
            let status = try Harness.run([Harness.jigdofs, "status", "--json", mnt])
            #expect(status.status == 0, "\(status.stderr)")
            let report = try JSONDecoder().decode(StatusReport.self, from: status.stdoutData)
            #expect(report.images.map(\.name) == ["release.iso"])
            let statusText = try Harness.run([Harness.jigdofs, "status", mnt])
            #expect(statusText.status == 0 && statusText.stdout.hasPrefix("release.iso ("), "\(statusText.stdout)\(statusText.stderr)")
            let cmp = try Harness.run(["cmp", mnt + "/release.iso", release.iso])
            #expect(cmp.status == 0, "\(cmp.stdout)\(cmp.stderr)")
        }
    }

    /// In a folder, an image whose name another image already has, and one named like another
    /// image's browse view (`X.iso.d`), are each skipped; the others are mounted.
    @Test func aNameCollisionSkipsOnlyThatImage() throws {
        let release = try Fixtures.smallRelease()
        let dir = try Harness.makeTempDir("names-collide")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try release.variant("jf-md5-gz").copyJigdoAndTemplate(into: dir)
        let text = try String(contentsOfFile: dir + "/release.jigdo", encoding: .utf8)
        for (file, name) in [("b-same", "release.iso"), ("c-other", "other.iso"), ("d-view", "other.iso.d")] {
            try text.replacingOccurrences(of: "Filename=release.iso", with: "Filename=\(name)")
                .write(toFile: "\(dir)/\(file).jigdo", atomically: true, encoding: .utf8)
        }
        try Harness.withMount([dir], options: ["--scan", release.tree]) { mnt in
            #expect(try FileManager.default.contentsOfDirectory(atPath: mnt).sorted() == ["other.iso", "other.iso.d", "release.iso", "release.iso.d"])
            var st = stat()
            #expect(stat(mnt + "/other.iso.d/README.txt", &st) == 0, "other.iso.d is other.iso's browse view")
            for name in ["release.iso", "other.iso"] {
                let cmp = try Harness.run(["cmp", "\(mnt)/\(name)", release.iso])
                #expect(cmp.status == 0, "\(name): \(cmp.stdout)\(cmp.stderr)")
            }
        }
    }
}
