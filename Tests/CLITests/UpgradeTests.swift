import Foundation
import Testing
import TestSupport

/// `--scan-jigdo OLD.jigdo`: release N+1 made from release N's parts where the two share them.
@Suite("upgrade from an older release's .jigdo")
struct UpgradeTests {
    @Test("parts N and N+1 share come from N's own locations; only the changed ones are missing")
    func scanJigdo() throws {
        let release = try Fixtures.release()
        let old = release.variant("jf-md5-gz")       // its file:../tree/ server has every part of N
        let tmp = try TemporaryDirectory()
        defer { tmp.remove() }
        let new = try UpgradeRelease.make(from: release.root, in: tmp.file("n1"), keepTree: false)
        // What N+1 has that N does not, by the generators' own [Parts] keys (both MD5).
        let changed = try jigdoPartKeys(new.jigdo).subtracting(try jigdoPartKeys(old.jigdo)).count
        #expect(changed >= 3)

        // N's parts alone: exactly the changed and added files are missing, nothing is written.
        let out = tmp.file("n1.iso")
        let partial = try CLI.run(["make-image", new.jigdo, "--scan-jigdo", old.jigdo, "--offline", "-o", out])
        #expect(partial.status == 2, "\(partial)")
        #expect(missingCount(partial) == changed, "\(partial.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out))

        // With the changed files too, the image is N+1's, bit for bit.
        let made = try CLI.run(["make-image", new.jigdo, "--scan-jigdo", old.jigdo, "--scan", new.changed, "--offline", "-o", out])
        #expect(made.status == 0, "\(made)")
        #expect(try filesEqual(out, new.iso))

        // Without N's .jigdo, the changed files alone are far from enough.
        let without = try CLI.run(["make-image", new.jigdo, "--scan", new.changed, "--offline", "-o", out + ".2"])
        #expect(without.status == 2)
        #expect(missingCount(without) > changed * 5)
    }
}

/// Parts a missing-part report lists: its part lines, plus N of a last "and N more" line.
func missingCount(_ r: ProcessResult) -> Int {
    let lines = r.stderrLines.filter { $0.hasPrefix("  ") }
    if let last = lines.last, last.hasPrefix("  and "), let n = Int(last.split(separator: " ")[1]) {
        return lines.count - 1 + n
    }
    return lines.count
}

@Suite("make-image after a killed run")
struct KilledRunTests {
    /// A pid no process has now (bounded search in /proc).
    func deadPid() throws -> Int32 {
        var pid: Int32 = 4_000_000
        while FileManager.default.fileExists(atPath: "/proc/\(pid)") { pid -= 1 }
        return pid
    }

    @Test("the temp file of a SIGKILLed make-image is removed by the next run; a live run's is kept")
    func staleTempFileIsRemoved() throws {
        let v = try Fixtures.smallRelease().variant("jf-md5-gz")
        let tmp = try TemporaryDirectory()
        defer { tmp.remove() }
        let dead = tmp.file(".out.iso.jigdofs-partial-\(try deadPid())")
        let live = tmp.file(".out.iso.jigdofs-partial-1")      // pid 1 is always alive
        try writeBytes([1, 2, 3], to: dead)
        try writeBytes([4, 5, 6], to: live)
        let r = try CLI.run(["make-image", v.jigdo, "-o", tmp.file("out.iso")])
        #expect(r.status == 0, "\(r)")
        #expect(try filesEqual(tmp.file("out.iso"), v.iso))
        #expect(!FileManager.default.fileExists(atPath: dead))
        #expect(FileManager.default.fileExists(atPath: live))
    }
}
