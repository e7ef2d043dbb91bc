import Foundation
import TestSupport
import Testing

// The scripts in mount-helpers/, run as root against real loop devices. Every loop device and
// mount a test makes is released in a defer, also when the test fails.
@Suite(.serialized, .enabled(if: Harness.canMount, "needs root, /dev/fuse, fusermount3 and loop devices"))
struct MountHelperTests {
    let release: FixtureRelease

    init() throws {
        release = try Fixtures.release()
    }

    @Test func mountJigdofsTranslatesMountOptions() throws {
        // As mount(8) calls it for `mount -t jigdofs SOURCE DIR -o ...` or an fstab line.
        // A copy whose own file: server does not resolve, so the parts come only from scan=.
        let dir = try Harness.makeTempDir("fstab")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for f in ["release.jigdo", "release.template"] {
            try FileManager.default.copyItem(atPath: "\(release.root)/jf-sha256-gz/\(f)", toPath: "\(dir)/\(f)")
        }
        try Harness.withMount([], command: { mnt in
            [Harness.helper("mount.jigdofs"), dir + "/release.jigdo", mnt, "-o",
             "rw,noauto,nofail,_netdev,x-systemd.automount,scan=\(self.release.tree),allow_other,nosuid"]
        }) { mnt in
            let options = try String(contentsOfFile: "/proc/mounts", encoding: .utf8)
                .split(separator: "\n").first { $0.split(separator: " ").dropFirst().first.map(String.init) == mnt }
                .map(String.init) ?? ""
            #expect(options.contains("allow_other"), "\(options)")
            #expect(options.contains(" ro,") || options.contains(",ro,"), "\(options)")
            let cmp = try Harness.run(["cmp", mnt + "/release.iso", release.variant("jf-sha256-gz").iso])
            #expect(cmp.status == 0, "\(cmp.stdout)\(cmp.stderr)")
        }
    }

    /// `mount -t jigdofs` and an fstab line, through mount(8). mount(8) only looks for helpers in
    /// /sbin: the test links mount.jigdofs there for its duration unless one is installed.
    @Test func mountCommandAndFstabLine() throws {
        let installed = "/sbin/mount.jigdofs"
        var linked = false
        if !FileManager.default.fileExists(atPath: installed) {
            try FileManager.default.createSymbolicLink(atPath: installed, withDestinationPath: Harness.helper("mount.jigdofs"))
            linked = true
        }
        defer { if linked { try? FileManager.default.removeItem(atPath: installed) } }
        let source = release.variant("jf-md5-bz2").jigdo
        try Harness.withMount([], command: { mnt in
            ["mount", "-t", "jigdofs", source, mnt, "-o", "scan=\(self.release.tree),allow_other"]
        }) { mnt in
            let cmp = try Harness.run(["cmp", mnt + "/release.iso", release.variant("jf-md5-bz2").iso])
            #expect(cmp.status == 0, "\(cmp.stdout)\(cmp.stderr)")
        }
        let fstab = try Harness.makeTempDir("fstab") + "/fstab"
        defer { try? FileManager.default.removeItem(atPath: (fstab as NSString).deletingLastPathComponent) }
        try Harness.withMount([], command: { mnt in
            let line = "\(source) \(mnt) jigdofs map=Base=\(self.release.tree),noauto,nofail,_netdev 0 0\n"
            try? line.write(toFile: fstab, atomically: true, encoding: .utf8)
            return ["mount", "--fstab", fstab, mnt]
        }) { mnt in
            let cmp = try Harness.run(["cmp", mnt + "/release.iso", release.variant("jf-md5-bz2").iso])
            #expect(cmp.status == 0, "\(cmp.stdout)\(cmp.stderr)")
        }
    }

    @Test func jigdoLoopMountOnSquashfs() throws {
        let sq = try SquashfsFixture.shared.get()
        try Harness.withLoopMountSetup { state, target, env in
            try Harness.check([Harness.helper("jigdo-loop-mount"), sq.jigdo, target, "--scan", sq.tree], environment: env)
            #expect(Harness.isMounted(target))
            let privateMounts = Harness.mountPoints().filter { $0.hasPrefix(state + "/") }
            #expect(privateMounts.count == 1)
            let name = "repodata/primary.xml"
            let cmp = try Harness.run(["cmp", "\(target)/\(name)", "\(sq.tree)/\(name)"])
            #expect(cmp.status == 0, "\(cmp.stdout)\(cmp.stderr)")
            // A second one on the same target is refused, and changes nothing.
            let again = try Harness.run([Harness.helper("jigdo-loop-mount"), sq.jigdo, target], environment: env)
            #expect(again.status != 0)
            #expect(Harness.mountPoints().filter { $0.hasPrefix(state + "/") } == privateMounts)

            try Harness.check([Harness.helper("jigdo-loop-mount"), "-u", target], environment: env)
            #expect(!Harness.isMounted(target))
            #expect(Harness.mountPoints().filter { $0.hasPrefix(state + "/") }.isEmpty)
            #expect(privateMounts.allSatisfy { loopDevices(backedBy: $0).isEmpty })
            #expect((try? FileManager.default.contentsOfDirectory(atPath: state)) ?? [] == [])
        }
    }

    @Test func writeUSBRefusesWhatIsNotAWholeUnusedLargeEnoughDisk() throws {
        let dir = try Harness.makeTempDir("usb-refuse")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let writer = Harness.helper("jigdo-write-usb")
        try Harness.withMount([release.variant("jf-md5-gz").jigdo]) { mnt in
            let image = mnt + "/release.iso"
            // A regular file, left untouched.
            let regular = dir + "/not-a-device"
            try Data("keep me".utf8).write(to: URL(fileURLWithPath: regular))
            let r1 = try Harness.run([writer, "--yes", image, regular])
            #expect(r1.status == 1)
            #expect(r1.stderr.contains("not a block device"), "\(r1.stderr)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: regular)) == Data("keep me".utf8))

            // A mounted device (a loop device carrying the squashfs, mounted).
            let sq = try SquashfsFixture.shared.get()
            try withLoopDevice(sq.original) { device in
                let target = try Harness.makeTempDir("usb-mounted")
                defer { Harness.cleanUpMount(target) }
                try Harness.check(["mount", "-o", "ro", device, target])
                let r2 = try Harness.run([writer, "--yes", image, device])
                #expect(r2.status == 1)
                #expect(r2.stderr.contains("mounted"), "\(r2.stderr)")
            }

            // Too small.
            let small = dir + "/small.img"
            try Harness.check(["truncate", "-s", "16M", small])
            try withLoopDevice(small) { device in
                let r3 = try Harness.run([writer, "--yes", image, device])
                #expect(r3.status == 1)
                #expect(r3.stderr.contains("too small"), "\(r3.stderr)")
            }

            // Not confirmed: nothing written.
            let big = dir + "/big.img"
            try Harness.check(["truncate", "-s", "64M", big])
            try withLoopDevice(big) { device in
                let r4 = try Harness.run([writer, image, device], stdin: Data("no\n".utf8))
                #expect(r4.status == 1)
                #expect(r4.stderr.contains("nothing written"), "\(r4.stderr)")
            }
            let allocated = try Harness.check(["du", "-k", big]).stdout.split(separator: "\t").first.flatMap { Int($0) } ?? -1
            #expect(allocated == 0, "the sparse file got \(allocated) KiB written")
        }
    }

    @Test func writeUSBWritesAndVerifiesOnALoopDevice() throws {
        let dir = try Harness.makeTempDir("usb-write")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let stick = dir + "/stick.img"
        try Harness.check(["truncate", "-s", "48M", stick])
        try Harness.withMount([release.variant("jte-sha256-bz2").jigdo]) { mnt in
            let original = release.variant("jte-sha256-bz2").iso
            let size = (try FileManager.default.attributesOfItem(atPath: original)[.size] as? Int) ?? 0
            try withLoopDevice(stick) { device in
                let r = try Harness.run([Harness.helper("jigdo-write-usb"), "--yes", mnt + "/release.iso", device])
                #expect(r.status == 0, "\(r.stderr)")
                #expect(r.stderr.contains("verified"), "\(r.stderr)")
                let back = try Harness.run(["cmp", "-n", String(size), device, original])
                #expect(back.status == 0, "\(back.stdout)\(back.stderr)")
            }
        }
    }
}
