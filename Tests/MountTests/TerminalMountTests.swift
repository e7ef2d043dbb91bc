import Foundation
import TestSupport
import Testing

/// The words a user meets around mounts (a dead mount, a nested mount, `jigdofs umount`) and the
/// helpers' command lines (options anywhere, --help, root, sizes, progress).
@Suite(.serialized, .enabled(if: Harness.canMount, "needs root, /dev/fuse, fusermount3 and loop devices"))
struct TerminalMountTests {
    let release: FixtureRelease

    init() throws {
        release = try Fixtures.release()
    }

    @Test func deadMountIsNamedWithHowToClearIt() throws {
        let jigdo = release.variant("jf-md5-gz").jigdo
        let mnt = try Harness.makeTempDir("mnt")
        defer { Harness.cleanUpMount(mnt) }
        try Harness.check([Harness.jigdofs, "mount", jigdo, mnt])
        let daemons = Harness.pids(withArgument: mnt)
        try #require(daemons.count == 1)
        kill(daemons[0], SIGKILL)
        try Harness.waitUntil("the daemon is gone") { kill(daemons[0], 0) != 0 || Harness.isZombie(daemons[0]) }
        let expected = "jigdofs: \(mnt): a dead jigdofs mount (its daemon is gone: Transport endpoint is not connected); `fusermount3 -u \(mnt)` clears it"
        for args in [["status", mnt], ["prefetch", mnt], ["mount", jigdo, mnt]] {
            let r = try Harness.run([Harness.jigdofs] + args)
            #expect(r.status == 1, "\(args): \(r)")
            #expect(r.stderr == expected + "\n", "\(args): \(r)")
        }
        let cleared = try Harness.run([Harness.jigdofs, "umount", mnt])
        #expect(cleared.status == 0, "\(cleared)")
        #expect(!Harness.isMounted(mnt))
    }

    @Test func prefetchOfAMountShowsPartsFromItsStatus() throws {
        let v = release.variant("jf-md5-gz")
        try Harness.withMount([v.jigdo]) { mnt in
            let parts = try StatusReport.of(mnt).images[0].parts.partsTotal
            let r = try Harness.run([Harness.jigdofs, "prefetch", mnt, "--progress=plain"])
            #expect(r.status == 0, "\(r)")
            let last = r.stderr.split(separator: "\n").last.map(String.init) ?? ""
            #expect(last.hasPrefix("Reading the mount: 100.0%, ") && last.hasSuffix(", \(parts)/\(parts) parts"), "\(r.stderr)")
            #expect(r.stdout == "release.iso: \(parts) of \(parts) parts available, 0 B downloaded by the mount\n", "\(r.stdout)")
        }
    }

    @Test func umountAndNestedMount() throws {
        let jigdo = release.variant("jf-md5-gz").jigdo
        let mnt = try Harness.makeTempDir("mnt")
        defer { Harness.cleanUpMount(mnt) }
        try Harness.check([Harness.jigdofs, "mount", jigdo, mnt])
        // A mount point inside the browse view of this mount is refused.
        let inner = mnt + "/release.iso.d/repodata"
        let nested = try Harness.run([Harness.jigdofs, "mount", jigdo, inner])
        #expect(nested.status == 1, "\(nested)")
        #expect(nested.stderr == "jigdofs: \(inner): is inside the jigdofs mount at \(mnt); mount somewhere else\n", "\(nested)")
        #expect(Harness.mountPoints().filter { $0.hasPrefix(mnt) } == [mnt])
        // A mount that is not jigdofs is not ours to unmount.
        let other = try Harness.run([Harness.jigdofs, "umount", "/proc"])
        #expect(other.status == 1 && other.stderr == "jigdofs: /proc: not a jigdofs mount (it is proc); use umount(8)\n", "\(other)")
        let r = try Harness.run([Harness.jigdofs, "unmount", mnt])
        #expect(r.status == 0, "\(r)")
        #expect(!Harness.isMounted(mnt))
    }

    @Test func helpersTakeOptionsAnywhereAndHelpGoesToStdout() throws {
        for helper in ["jigdo-write-usb", "jigdo-loop-mount"] {
            let r = try Harness.run([Harness.helper(helper), "--help"])
            #expect(r.status == 0, "\(helper): \(r.stderr)")
            #expect(r.stdout.hasPrefix("usage: \(helper) ") && r.stderr.isEmpty, "\(helper): \(r.stdout)")
            let bad = try Harness.run([Harness.helper(helper), "--no-such-option-or-too-few"])
            #expect(bad.status == 2, "\(helper): \(bad)")
        }
        // Not root: said so, before any raw blockdev/mkdir error.
        let nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        let w = try Harness.run(nobody + ["/bin/sh", Harness.helper("jigdo-write-usb"), "/nonexistent.iso", "/dev/null", "--yes"])
        #expect(w.status == 1 && w.stderr == "jigdo-write-usb: must be run as root (it writes to a block device)\n", "\(w)")
        let l = try Harness.run(nobody + ["/bin/sh", Harness.helper("jigdo-loop-mount"), "--scan", "/tmp", "a.jigdo", "/mnt"])
        #expect(l.status == 1 && l.stderr == "jigdo-loop-mount: must be run as root (loop devices)\n", "\(l)")

        // jigdo-loop-mount with the jigdofs options before the positionals.
        let sq = try SquashfsFixture.shared.get()
        try Harness.withLoopMountSetup { state, target, env in
            try Harness.check([Harness.helper("jigdo-loop-mount"), "--scan", sq.tree, sq.jigdo, target], environment: env)
            #expect(Harness.isMounted(target))
            let cmp = try Harness.run(["cmp", "\(target)/repodata/primary.xml", "\(sq.tree)/repodata/primary.xml"])
            #expect(cmp.status == 0, "\(cmp.stdout)\(cmp.stderr)")
            try Harness.check([Harness.helper("jigdo-loop-mount"), target, "-u"], environment: env)
            #expect(!Harness.isMounted(target))
        }
    }

    @Test func writeUSBOptionsAfterPositionalsSizesAndProgress() throws {
        let dir = try Harness.makeTempDir("usb-opts")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let writer = Harness.helper("jigdo-write-usb")
        let v = release.variant("jf-sha256-gz")
        try Harness.withMount([v.jigdo]) { mnt in
            let image = mnt + "/release.iso"
            let small = dir + "/small.img"
            try Harness.check(["truncate", "-s", "16M", small])
            try withLoopDevice(small) { device in
                let r = try Harness.run([writer, image, device, "--yes"], environment: Harness.helperEnvironment)
                #expect(r.status == 1)
                #expect(r.stderr.range(of: #"too small \(16\.0 MiB\) for .* \(\d+\.\d MiB\)"#, options: .regularExpression) != nil, "\(r.stderr)")
            }
            let stick = dir + "/stick.img"
            try Harness.check(["truncate", "-s", "48M", stick])
            try withLoopDevice(stick) { device in
                let r = try Harness.run([writer, image, device, "--yes", "--progress=plain"], environment: Harness.helperEnvironment)
                #expect(r.status == 0, "\(r.stderr)")
                let lines = r.stderr.split(separator: "\n").map(String.init)
                #expect(lines.contains { $0.hasPrefix("Writing: 100.0%, ") }, "\(r.stderr)")
                #expect(lines.contains { $0.hasPrefix("Reading back: 100.0%, ") }, "\(r.stderr)")
                #expect(lines.last?.range(of: #"^jigdo-write-usb: .*: written and verified \(\d+\.\d MiB, sha256 [0-9a-f]{64}\)$"#, options: .regularExpression) != nil, "\(r.stderr)")
                let size = (try FileManager.default.attributesOfItem(atPath: v.iso)[.size] as? Int) ?? 0
                let back = try Harness.run(["cmp", "-n", String(size), device, v.iso])
                #expect(back.status == 0, "\(back.stdout)\(back.stderr)")
            }
        }
    }
}
