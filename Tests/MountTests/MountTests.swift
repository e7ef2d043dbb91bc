import Foundation
import Synchronization
import TestSupport
import Testing

// Needs root, /dev/fuse and fusermount3 (the CI machine has them). Serialized: each test mounts
// and reads whole images, and the machine has two cores shared with other builds.
@Suite(.serialized, .enabled(if: Harness.canMount, "needs root, /dev/fuse and fusermount3"))
struct MountTests {
    let release: FixtureRelease

    init() throws {
        release = try Fixtures.release()
    }

    /// How each variant finds its parts: the jigdo's own file: server, --scan, and --map.
    static func partOptions(_ variant: String, _ release: FixtureRelease) -> [String] {
        switch FixtureVariant.names.firstIndex(of: variant)! % 3 {
        case 0: return []
        case 1: return ["--scan", release.tree]
        default: return ["--map", "Base=\(release.tree)"]
        }
    }

    @Test(arguments: FixtureVariant.names)
    func wholeImageEqualsOriginal(variant: String) throws {
        try Harness.withMount([release.variant(variant).jigdo], options: Self.partOptions(variant, release)) { mnt in
            let names = try FileManager.default.contentsOfDirectory(atPath: mnt)
            #expect(names.sorted() == ["release.iso", "release.iso.d"])
            let file = mnt + "/release.iso"
            let attrs = try FileManager.default.attributesOfItem(atPath: file)
            let original = try FileManager.default.attributesOfItem(atPath: release.variant(variant).iso)
            #expect(attrs[.size] as? Int64 == original[.size] as? Int64)
            #expect((attrs[.posixPermissions] as? Int) == 0o444)
            #expect(attrs[.type] as? FileAttributeType == .typeRegular)
            // The template's time (README: "Stable identity").
            let templateAttrs = try FileManager.default.attributesOfItem(atPath: release.variant(variant).template)
            #expect(attrs[.modificationDate] as? Date == templateAttrs[.modificationDate] as? Date)
            let cmp = try Harness.run(["cmp", file, release.variant(variant).iso])
            #expect(cmp.status == 0, "\(cmp.stdout)\(cmp.stderr)")
        }
    }

    @Test func eightThreadsOfRandomUnalignedReads() throws {
        let original = try Data(contentsOf: URL(fileURLWithPath: release.variant("jf-sha256-bz2").iso))
        try Harness.withMount([release.variant("jf-sha256-bz2").jigdo]) { mnt in
            let path = mnt + "/release.iso"
            let mismatches = Mutex(0)
            let failures = Mutex<[String]>([])
            DispatchQueue.concurrentPerform(iterations: 8) { thread in
                var rng = SeededRandom(seed: UInt64(thread + 1) * 0x9E37_79B9)
                let fd = open(path, O_RDONLY)
                guard fd >= 0 else { failures.withLock { $0.append("open: errno \(errno)") }; return }
                defer { close(fd) }
                var buffer = [UInt8](repeating: 0, count: 300_000)
                for _ in 0..<300 {
                    let offset = Int(rng.next() % UInt64(original.count + 1000))
                    let count = Int(rng.next() % UInt64(buffer.count)) + 1
                    let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
                    guard n >= 0 else { failures.withLock { $0.append("pread \(offset)+\(count): errno \(errno)") }; continue }
                    let expectedCount = max(0, min(count, original.count - offset))
                    // bytesEqual (memcmp): an element-wise comparison is too slow in a debug build.
                    let same = n == expectedCount && (n == 0 || buffer.withUnsafeBytes { got in
                        original.withUnsafeBytes {
                            bytesEqual(UnsafeRawBufferPointer(rebasing: got[0..<n]), UnsafeRawBufferPointer(rebasing: $0[offset..<(offset + n)]))
                        }
                    })
                    if !same { mismatches.withLock { $0 += 1 } }
                }
            }
            let failed = failures.withLock { $0 }
            #expect(failed.isEmpty, "\(failed.prefix(3))")
            #expect(mismatches.withLock { $0 } == 0)
        }
    }

    @Test func xorrisoFileListEqualsOriginal() throws {
        func list(_ iso: String) throws -> [String] {
            let r = try Harness.check(["xorriso", "-indev", iso, "-find", "/"])
            return r.stdout.split(separator: "\n").map(String.init).sorted()
        }
        let expected = try list(release.variant("jte-md5-gz").iso)
        #expect(expected.count > 300)
        try Harness.withMount([release.variant("jte-md5-gz").jigdo]) { mnt in
            let got = try list(mnt + "/release.iso")
            #expect(got == expected)
        }
    }

    @Test func directorySourceWithTwoReleases() throws {
        let second = try Fixtures.release(files: 80, seed: 2)
        // Both releases' ISOs are called release.iso: make jigdos with distinct image names in
        // one directory, as a release's iso/x86_64/ folder holds them.
        let dir = try Harness.makeTempDir("two-releases")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (name, rel) in [("first", release), ("second", second)] {
            let iso = "\(dir)/\(name).iso"
            try FileManager.default.copyItem(atPath: rel.root + "/release.iso", toPath: iso)
            try JigdoFile.makeTemplate(image: iso, jigdo: "\(dir)/\(name).jigdo", template: "\(dir)/\(name).template", parts: rel.tree)
            try FileManager.default.moveItem(atPath: iso, toPath: "\(dir)/\(name).original")
        }
        try Harness.withMount([dir], options: ["--scan", release.tree, "--scan", second.tree]) { mnt in
            #expect(try FileManager.default.contentsOfDirectory(atPath: mnt).sorted() == ["first.iso", "first.iso.d", "second.iso", "second.iso.d"])
            for name in ["first", "second"] {
                let cmp = try Harness.run(["cmp", "\(mnt)/\(name).iso", "\(dir)/\(name).original"])
                #expect(cmp.status == 0, "\(name): \(cmp.stdout)\(cmp.stderr)")
            }
        }
    }

    @Test func squashfsLoopMountedFromTheMount() throws {
        let sq = try SquashfsFixture.shared.get()
        let template = try FileManager.default.attributesOfItem(atPath: sq.dir + "/fs.template")[.size] as? Int ?? 0
        #expect(template < 1_000_000, "jigdo-file matched the files inside the squashfs")
        try Harness.withMount([sq.jigdo]) { mnt in
            let image = mnt + "/fs.sqsh"
            let cmp = try Harness.run(["cmp", image, sq.original])
            #expect(cmp.status == 0, "\(cmp.stdout)\(cmp.stderr)")
            let target = try Harness.makeTempDir("loop")
            // Loop mount first out, FUSE mount second (withMount's cleanup).
            defer { Harness.cleanUpMount(target) }
            try Harness.check(["mount", "-t", "squashfs", "-o", "loop,ro", image, target])
            #expect(Harness.isMounted(target))
            let name = "Packages/pkg 0017 with space.rpm"
            let inside = try Harness.run(["cmp", "\(target)/\(name)", "\(sq.tree)/\(name)"])
            #expect(inside.status == 0, "\(inside.stdout)\(inside.stderr)")
            let all = try Harness.run(["diff", "-r", target, sq.tree])
            #expect(all.status == 0, "\(all.stdout.prefix(500))")
            try Harness.check(["umount", target])
            #expect(loopDevices(backedBy: mnt).isEmpty)
        }
    }

    /// Two .jigdo files named on the command line for one image name fail the mount with one
    /// line naming both; in a folder, the second is skipped with one line naming both, and the
    /// first is mounted.
    @Test func twoImagesWithTheSameNameIsAnErrorNamingBoth() throws {
        let dir = try Harness.makeTempDir("same-name")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["a.jigdo", "b.jigdo"] {
            try FileManager.default.copyItem(atPath: release.variant("jf-md5-gz").jigdo, toPath: "\(dir)/\(name)")
        }
        try FileManager.default.copyItem(atPath: release.root + "/jf-md5-gz/release.template", toPath: dir + "/release.template")
        try expectMountFails([dir + "/a.jigdo", dir + "/b.jigdo"], mentioning: ["a.jigdo", "b.jigdo", "release.iso"])

        let mountpoint = try Harness.makeTempDir("mnt")
        defer { Harness.cleanUpMount(mountpoint) }
        let r = try Harness.run([Harness.jigdofs, "mount", dir, mountpoint])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderrLines.count == 1 && r.stderr.contains("skipping \(dir)/b.jigdo") && r.stderr.contains("\(dir)/a.jigdo"), "\(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: mountpoint).sorted() == ["release.iso", "release.iso.d"])
    }

    @Test func writesFailWithEROFS() throws {
        try Harness.withMount([release.variant("jf-md5-gz").jigdo]) { mnt in
            expectOpenFailsWithEROFS(mnt, [("/release.iso", O_WRONLY), ("/release.iso", O_RDWR), ("/new-file", O_WRONLY | O_CREAT)])
            #expect(mkdir(mnt + "/dir", 0o755) != 0 && errno == EROFS)
            #expect(unlink(mnt + "/release.iso") != 0 && errno == EROFS)
            #expect(truncate(mnt + "/release.iso", 0) != 0 && errno == EROFS)
            var st = statvfs()
            #expect(statvfs(mnt, &st) == 0)
            #expect(st.f_flag & UInt(ST_RDONLY) != 0)
            #expect(UInt64(st.f_blocks) * UInt64(st.f_frsize) >= 35_000_000)
        }
    }

    /// A mount that fails must print one line and leave nothing mounted.
    func expectMountFails(_ sources: [String], mountpoint given: String? = nil, options: [String] = [], mentioning words: [String]) throws {
        let mountpoint = try given ?? Harness.makeTempDir("mnt")
        defer { if given == nil { Harness.cleanUpMount(mountpoint) } }
        // Mounts on this mount point only: other suites mount things of their own meanwhile.
        let before = Harness.mountPoints().filter { $0 == mountpoint }.count
        let r = try Harness.run([Harness.jigdofs, "mount"] + options + sources + [mountpoint])
        #expect(r.status != 0)
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1, "stderr: \(r.stderr)")
        for w in words { #expect(r.stderr.contains(w), "stderr lacks '\(w)': \(r.stderr)") }
        #expect(!Harness.isMounted(mountpoint) || given != nil)
        #expect(Harness.mountPoints().filter { $0 == mountpoint }.count == before)
    }

    @Test func badSourcesLeaveNothingMounted() throws {
        try expectMountFails(["/nonexistent/x.jigdo"], mentioning: ["/nonexistent/x.jigdo"])
        let emptyDir = try Harness.makeTempDir("empty")
        defer { try? FileManager.default.removeItem(atPath: emptyDir) }
        try expectMountFails([emptyDir], mentioning: [emptyDir, ".jigdo"])
        // A template cut short: its checksum no longer matches the .jigdo.
        let bad = try Harness.makeTempDir("bad-template")
        defer { try? FileManager.default.removeItem(atPath: bad) }
        try FileManager.default.copyItem(atPath: release.variant("jf-md5-gz").jigdo, toPath: bad + "/release.jigdo")
        let template = try Data(contentsOf: URL(fileURLWithPath: release.root + "/jf-md5-gz/release.template"))
        try template.prefix(template.count / 2).write(to: URL(fileURLWithPath: bad + "/release.template"))
        try expectMountFails([bad + "/release.jigdo"], mentioning: ["release.template"])
        // No template at all.
        try FileManager.default.removeItem(atPath: bad + "/release.template")
        try expectMountFails([bad + "/release.jigdo"], mentioning: ["template"])
        // Not a jigdo.
        try expectMountFails([release.variant("jf-md5-gz").iso], mentioning: ["release.iso"])
        // Mount point missing.
        try expectMountFails([release.variant("jf-md5-gz").jigdo], mountpoint: "/nonexistent-mountpoint", mentioning: ["/nonexistent-mountpoint"])
        // A bad FUSE option.
        try expectMountFails([release.variant("jf-md5-gz").jigdo], options: ["-o", "no_such_option"], mentioning: ["no_such_option"])
    }

    @Test func busyMountpointIsRefused() throws {
        try Harness.withMount([release.variant("jf-md5-gz").jigdo]) { mnt in
            let before = Harness.mountPoints().filter { $0 == mnt }.count
            try expectMountFails([release.variant("jf-md5-bz2").jigdo], mountpoint: mnt, mentioning: [mnt, "busy"])
            #expect(Harness.mountPoints().filter { $0 == mnt }.count == before)
        }
    }

    @Test(arguments: ["TERM", "INT", "fusermount3"])
    func signalsAndFusermountUnmountCleanly(how: String) throws {
        try Harness.withMount([release.variant("jf-md5-gz").jigdo]) { mnt in
            let daemons = Harness.pids(withArgument: mnt)
            #expect(daemons.count == 1)
            guard let pid = daemons.first else { return }
            if how == "fusermount3" {
                try Harness.check(["fusermount3", "-u", mnt])
            } else {
                kill(pid, how == "TERM" ? SIGTERM : SIGINT)
            }
            try Harness.waitUntil("daemon \(pid) exits") { kill(pid, 0) != 0 || Harness.isZombie(pid) }
            #expect(!Harness.isMounted(mnt))
        }
    }

    @Test func missingPartsGiveEIOAndTheDaemonStaysUp() throws {
        let dir = try Harness.makeTempDir("no-parts")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try release.variant("jf-md5-gz").copyJigdoAndTemplate(into: dir)
        let log = dir + "/daemon.log"
        try Harness.withMount([dir + "/release.jigdo"], options: ["--log-file", log]) { mnt in
            let cmp = try Harness.run(["cmp", mnt + "/release.iso", release.variant("jf-md5-gz").iso])
            #expect(cmp.status == 2)
            #expect(cmp.stderr.contains("Input/output error"), "\(cmp.stderr)")
            // The first 32 KiB (ISO system area) come from the template and still read fine.
            let head = try Harness.run(["head", "-c", "32768", mnt + "/release.iso"])
            let original = try Data(contentsOf: URL(fileURLWithPath: release.variant("jf-md5-gz").iso))
            #expect(head.stdoutData == original.prefix(32768))
            #expect(Harness.isMounted(mnt))
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            #expect(text.contains("release.iso: read of"), "log: \(text)")
            #expect(text.contains("has no local copy"), "log: \(text)")
        }
    }
}
