import Foundation
import Synchronization
import TestSupport
import Testing

// The browse view: next to each ISO 9660 image X.iso, a read-only directory X.iso.d with the
// files inside it. Checked against xorriso's own reading of the original ISO and against the
// source tree the ISO was made from.
@Suite(.serialized, .enabled(if: Harness.canMount, "needs root, /dev/fuse and fusermount3"))
struct BrowseTests {
    let release: FixtureRelease

    init() throws {
        release = try Fixtures.release()
    }

    /// Some files of the tree worth reading: one with spaces, an empty one, the largest, one
    /// under 1 KiB (in the template), the copy under a second path.
    func interestingFiles() throws -> [String] {
        let fm = FileManager.default
        var sized: [(String, Int64)] = []
        for dir in ["Packages", "repodata", "extra dir"] {
            for name in try fm.contentsOfDirectory(atPath: release.tree + "/" + dir) {
                let size = try fm.attributesOfItem(atPath: "\(release.tree)/\(dir)/\(name)")[.size] as? Int64 ?? -1
                sized.append(("\(dir)/\(name)", size))
            }
        }
        sized.sort { $0.0 < $1.0 }
        let empty = try #require(sized.first { $0.1 == 0 }).0
        let largest = try #require(sized.max { $0.1 < $1.1 }).0
        let small = try #require(sized.first { $0.1 > 0 && $0.1 < 1024 }).0
        let copy = try #require(sized.first { $0.0.hasPrefix("extra dir/") }).0
        return ["Packages/pkg 0017 with space.rpm", empty, largest, small, copy, "README.txt", "repodata/primary.xml"]
    }

    @Test(arguments: FixtureVariant.names)
    func treeAgreesWithXorrisoAndFilesWithTheSource(variant: String) throws {
        let expected = try xorrisoTree(release.variant(variant).iso)
        #expect(expected.count > 300)
        try Harness.withMount([release.variant(variant).jigdo], options: MountTests.partOptions(variant, release)) { mnt in
            #expect(try FileManager.default.contentsOfDirectory(atPath: mnt).sorted() == ["release.iso", "release.iso.d"])
            let view = mnt + "/release.iso.d"
            let got = try mountTree(view)
            #expect(treeDifferences(got, expected) == [])
            // Read-only for everyone: directories 0555, files 0444 (the tree has no executables).
            let modes = Set(got.values.map { "\($0.type) \($0.mode)" })
            #expect(modes == ["d 555", "f 444"], "\(modes)")
            for file in try interestingFiles() {
                let cmp = try Harness.run(["cmp", "\(view)/\(file)", "\(release.tree)/\(file)"])
                #expect(cmp.status == 0, "\(file): \(cmp.stdout)\(cmp.stderr)")
            }
            // Every file's content and every name, against the tree the ISO was made from.
            let diff = try Harness.run(["diff", "-r", view, release.tree])
            #expect(diff.status == 0, "\(diff.stdout.prefix(500))\(diff.stderr.prefix(500))")
            // Rock Ridge times: the source file's mtime, in seconds.
            let ours = try FileManager.default.attributesOfItem(atPath: view + "/README.txt")[.modificationDate] as? Date
            let source = try FileManager.default.attributesOfItem(atPath: release.tree + "/README.txt")[.modificationDate] as? Date
            #expect(ours != nil && source != nil && ours!.timeIntervalSince1970 == source!.timeIntervalSince1970.rounded(.down))
        }
    }

    /// Eight threads read every file of a fresh mount at once (the first ones race to open the
    /// volume), in unaligned pieces; each piece equals the source file's bytes.
    @Test func eightThreadsReadTheTreeAtOnce() throws {
        let fm = FileManager.default
        let files = try ["Packages", "repodata", "extra dir"].flatMap { dir in
            try fm.contentsOfDirectory(atPath: release.tree + "/" + dir).map { "\(dir)/\($0)" }
        }.sorted()
        try Harness.withMount([release.variant("jte-sha256-bz2").jigdo]) { mnt in
            let failures = Mutex<[String]>([])
            DispatchQueue.concurrentPerform(iterations: 8) { thread in
                var rng = SeededRandom(seed: UInt64(thread + 11))
                for (i, file) in files.enumerated() where i % 8 == thread || i % 5 == thread {
                    guard let source = fm.contents(atPath: "\(release.tree)/\(file)") else {
                        failures.withLock { $0.append("\(file): source unreadable") }; continue
                    }
                    let fd = open("\(mnt)/release.iso.d/\(file)", O_RDONLY)
                    guard fd >= 0 else { failures.withLock { $0.append("\(file): open errno \(errno)") }; continue }
                    defer { close(fd) }
                    var got = Data()
                    var buffer = [UInt8](repeating: 0, count: 200_000)
                    while true {
                        let want = Int(rng.next() % UInt64(buffer.count)) + 1
                        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(got.count)) }
                        if n < 0 { failures.withLock { $0.append("\(file): pread errno \(errno)") }; break }
                        if n == 0 { break }
                        got.append(contentsOf: buffer[0..<n])
                    }
                    if got != source { failures.withLock { $0.append("\(file): \(got.count) bytes differ from \(source.count)") } }
                }
            }
            let failed = failures.withLock { $0 }
            #expect(failed.isEmpty, "\(failed.prefix(5))")
        }
    }

    @Test func anUnprivilegedUserReadsFilesWithAllowOther() throws {
        let file = "Packages/pkg 0017 with space.rpm"
        let original = try Data(contentsOf: URL(fileURLWithPath: "\(release.tree)/\(file)"))
        let asNobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        try Harness.withMount([release.variant("jf-md5-gz").jigdo], options: ["-o", "allow_other"]) { mnt in
            let cat = try Harness.run(asNobody + ["cat", "\(mnt)/release.iso.d/\(file)"])
            #expect(cat.status == 0, "\(cat.stderr)")
            #expect(cat.stdoutData == original)
            let ls = try Harness.run(asNobody + ["ls", "\(mnt)/release.iso.d/extra dir"])
            #expect(ls.status == 0 && ls.stdout.contains("copy of "), "\(ls.stdout)\(ls.stderr)")
        }
        // Without allow_other the kernel keeps other users out entirely: the option is what
        // makes the difference above.
        try Harness.withMount([release.variant("jf-md5-gz").jigdo]) { mnt in
            let cat = try Harness.run(asNobody + ["cat", "\(mnt)/release.iso.d/\(file)"])
            #expect(cat.status != 0)
            #expect(cat.stderr.contains("Permission denied"), "\(cat.stderr)")
        }
    }

    /// Directory records lie in the template: with no part to be had, the whole tree lists,
    /// files in the template read, and a package read fails with EIO and a log line.
    @Test func browsingNeedsNoParts() throws {
        let dir = try Harness.makeTempDir("browse-no-parts")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try release.variant("jf-md5-gz").copyJigdoAndTemplate(into: dir)
        let log = dir + "/daemon.log"
        let expected = try xorrisoTree(release.variant("jf-md5-gz").iso)
        try Harness.withMount([dir + "/release.jigdo"], options: ["--log-file", log]) { mnt in
            let view = mnt + "/release.iso.d"
            #expect(treeDifferences(try mountTree(view), expected) == [])
            let ls = try Harness.run(["ls", "-lR", view])
            #expect(ls.status == 0, "\(ls.stderr)")
            let readme = try Harness.run(["cat", view + "/README.txt"])
            #expect(readme.status == 0)
            #expect(readme.stdoutData == (try Data(contentsOf: URL(fileURLWithPath: release.tree + "/README.txt"))))
            let package = "Packages/pkg 0017 with space.rpm"
            let cat = try Harness.run(["cat", "\(view)/\(package)"])
            #expect(cat.status != 0)
            #expect(cat.stderr.contains("Input/output error"), "\(cat.stderr)")
            #expect(Harness.isMounted(mnt))
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            #expect(text.contains("release.iso.d/\(package): read of"), "log: \(text)")
            #expect(text.contains("has no local copy"), "log: \(text)")
        }
    }

    /// With exactly one package available, that package reads through the view (its read
    /// needs no other part) and another package does not.
    @Test func readingAFileNeedsOnlyItsOwnPart() throws {
        let dir = try Harness.makeTempDir("browse-one-part")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for f in ["release.jigdo", "release.template"] {
            try FileManager.default.copyItem(atPath: "\(release.root)/jf-sha256-bz2/\(f)", toPath: "\(dir)/\(f)")
        }
        let package = "Packages/pkg 0034 with space.rpm" // 2.7 MB: many kernel reads
        let other = "Packages/pkg 0017 with space.rpm"
        try FileManager.default.createDirectory(atPath: dir + "/only", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "\(release.tree)/\(package)", toPath: dir + "/only/the-one.rpm")
        try Harness.withMount([dir + "/release.jigdo"], options: ["--scan", dir + "/only", "--log-file", dir + "/log"]) { mnt in
            let cmp = try Harness.run(["cmp", "\(mnt)/release.iso.d/\(package)", "\(release.tree)/\(package)"])
            #expect(cmp.status == 0, "\(cmp.stdout)\(cmp.stderr)")
            let cat = try Harness.run(["cat", "\(mnt)/release.iso.d/\(other)"])
            #expect(cat.status != 0 && cat.stderr.contains("Input/output error"), "\(cat.stderr)")
        }
    }

    @Test func writesInsideTheViewFailWithEROFS() throws {
        try Harness.withMount([release.variant("jf-md5-gz").jigdo]) { mnt in
            let view = mnt + "/release.iso.d"
            expectOpenFailsWithEROFS(view, [("/README.txt", O_WRONLY), ("/README.txt", O_RDWR), ("/README.txt", O_WRONLY | O_TRUNC),
                                            ("/new-file", O_WRONLY | O_CREAT), ("/Packages/new-file", O_WRONLY | O_CREAT)])
            #expect(mkdir(view + "/Packages/dir", 0o755) != 0 && errno == EROFS)
            #expect(unlink(view + "/README.txt") != 0 && errno == EROFS)
            #expect(rmdir(view + "/extra dir") != 0 && errno == EROFS)
            #expect(rename(view + "/README.txt", view + "/R") != 0 && errno == EROFS)
            #expect(chmod(view + "/README.txt", 0o644) != 0 && errno == EROFS)
            #expect(symlink("x", view + "/link") != 0 && errno == EROFS)
            // Directories cannot be opened as files, and files are not directories.
            let dirFD = open(view + "/Packages", O_RDONLY)
            #expect(dirFD >= 0)
            if dirFD >= 0 { close(dirFD) }
            var st = stat()
            #expect(stat(view + "/README.txt/x", &st) != 0 && errno == ENOTDIR)
            #expect(stat(view + "/no-such-file", &st) != 0 && errno == ENOENT)
        }
    }

    @Test func aSquashfsImageHasNoBrowseView() throws {
        let sq = try SquashfsFixture.shared.get()
        try Harness.withMount([sq.jigdo]) { mnt in
            let names = try FileManager.default.contentsOfDirectory(atPath: mnt)
            #expect(names == ["fs.sqsh"])
            var st = stat()
            #expect(lstat(mnt + "/fs.sqsh.d", &st) != 0 && errno == ENOENT)
        }
    }

    /// jigdo-loop-mount counts the images in its private mount: X.iso.d is not one. (This
    /// kernel has no iso9660 driver, so the loop mount itself may fail; it must not fail for
    /// "2 images".)
    @Test func jigdoLoopMountCountsOnlyImages() throws {
        try Harness.withLoopMountSetup { state, target, env in
            let r = try Harness.run([Harness.helper("jigdo-loop-mount"), release.variant("jf-md5-gz").jigdo, target, "--scan", release.tree], environment: env)
            #expect(!r.stderr.contains("images"), "\(r.stderr)")
            if r.status == 0 {
                let cmp = try Harness.run(["cmp", target + "/README.txt", release.tree + "/README.txt"])
                #expect(cmp.status == 0)
                try Harness.check([Harness.helper("jigdo-loop-mount"), "-u", target], environment: env)
            } else {
                #expect(r.stderr.contains("cannot loop-mount"), "\(r.stderr)")
            }
            #expect(!Harness.isMounted(target))
            #expect(Harness.mountPoints().filter { $0.hasPrefix(state + "/") }.isEmpty)
        }
    }

    /// Symlinks, execute bits and nested directories from Rock Ridge; names from Joliet when an
    /// ISO has no Rock Ridge (genisoimage -J, which leaves symlinks out).
    @Test func symlinksModesAndJolietNames() throws {
        let dir = try Harness.makeTempDir("browse-rr")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let src = dir + "/src"
        let script = """
            set -e
            mkdir -p src/bin "src/Sub Dir/deeper" release
            printf '#!/bin/sh\\necho hi\\n' > src/bin/run.sh
            chmod 755 src/bin/run.sh
            head -c 70000 /dev/urandom > "src/Sub Dir/deeper/MixedCase-Long File Name.data"
            ln -s bin/run.sh src/link
            ln -s /etc/hostname src/abs
            ln -s nowhere src/dangling
            : > src/empty
            xorriso -as mkisofs -quiet -R -J -o rr.iso src 2>/dev/null
            genisoimage -quiet -J -o joliet.iso src 2>/dev/null
            for n in rr joliet; do
              jigdo-file make-template -r quiet --force -i $n.iso -j release/$n.jigdo -t release/$n.template src//
            done
            """
        try Subprocess.shell(script, cwd: dir)
        try Harness.withMount([dir + "/release"], options: ["--scan", src]) { mnt in
            #expect(try FileManager.default.contentsOfDirectory(atPath: mnt).sorted() == ["joliet.iso", "joliet.iso.d", "rr.iso", "rr.iso.d"])
            for name in ["rr", "joliet"] {
                let got = try mountTree("\(mnt)/\(name).iso.d")
                #expect(treeDifferences(got, try xorrisoTree("\(dir)/\(name).iso")) == [], "\(name)")
                let data = "Sub Dir/deeper/MixedCase-Long File Name.data"
                let cmp = try Harness.run(["cmp", "\(mnt)/\(name).iso.d/\(data)", "\(src)/\(data)"])
                #expect(cmp.status == 0, "\(name): \(cmp.stdout)\(cmp.stderr)")
            }
            let rr = mnt + "/rr.iso.d"
            let tree = try mountTree(rr)
            #expect(tree["/link"]?.type == "l" && tree["/link"]?.target == "bin/run.sh")
            #expect(tree["/abs"]?.target == "/etc/hostname")
            #expect(tree["/dangling"]?.target == "nowhere")
            #expect(tree["/bin/run.sh"]?.mode == "555", "execute bits kept, write bits dropped")
            #expect(tree["/empty"]?.mode == "444" && tree["/empty"]?.size == 0)
            // Through the symlink, resolved by the kernel inside the view.
            let viaLink = try Harness.run(["cat", rr + "/link"])
            #expect(viaLink.stdout == "#!/bin/sh\necho hi\n")
            #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: rr + "/abs")) == "/etc/hostname")
            #expect(try mountTree(mnt + "/joliet.iso.d")["/link"] == nil)
        }
    }

    /// A damaged directory gives EIO and a log line naming it; the rest of the view and the
    /// daemon stay up. A directory that lists its own parent (a loop) makes the root unreadable.
    @Test func damagedDirectoriesGiveEIO() throws {
        let dir = try Harness.makeTempDir("browse-damaged")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let original = try Data(contentsOf: URL(fileURLWithPath: release.root + "/release.iso"))
        // repodata's directory record claims a 2 GiB extent.
        var badLength = original
        try patchRootRecord(&badLength, named: "REPODATA") { iso, rec in
            putBothEndian32(&iso, at: rec + 10, 0x7FFF_F800)
        }
        // Packages' directory record points at the root directory.
        var loop = original
        let rootBlock = readLE32(loop, at: 32768 + 156 + 2)
        try patchRootRecord(&loop, named: "PACKAGES") { iso, rec in
            putBothEndian32(&iso, at: rec + 2, rootBlock)
        }
        try FileManager.default.createDirectory(atPath: dir + "/release", withIntermediateDirectories: true)
        for (name, data) in [("badlength", badLength), ("loop", loop)] {
            try data.write(to: URL(fileURLWithPath: "\(dir)/\(name).iso"))
            try JigdoFile.makeTemplate(image: "\(dir)/\(name).iso", jigdo: "\(dir)/release/\(name).jigdo",
                                       template: "\(dir)/release/\(name).template", parts: release.tree)
        }
        let log = dir + "/daemon.log"
        try Harness.withMount([dir + "/release"], options: ["--scan", release.tree, "--log-file", log]) { mnt in
            let bad = mnt + "/badlength.iso.d"
            let ls = try Harness.run(["ls", bad])
            #expect(ls.status == 0 && ls.stdout.contains("repodata"), "\(ls.stdout)\(ls.stderr)")
            let lsRepodata = try Harness.run(["ls", bad + "/repodata"])
            #expect(lsRepodata.status != 0)
            #expect(lsRepodata.stderr.contains("Input/output error"), "\(lsRepodata.stderr)")
            let find = try Harness.run(["find", bad])
            #expect(find.status != 0 && find.stdout.contains("Packages/pkg 0017 with space.rpm"))
            let cmp = try Harness.run(["cmp", bad + "/README.txt", release.tree + "/README.txt"])
            #expect(cmp.status == 0)
            let lsLoop = try Harness.run(["ls", mnt + "/loop.iso.d"])
            #expect(lsLoop.status != 0)
            #expect(lsLoop.stderr.contains("Input/output error"), "\(lsLoop.stderr)")
            // The images themselves are unaffected.
            let whole = try Harness.run(["cmp", mnt + "/loop.iso", dir + "/loop.iso"])
            #expect(whole.status == 0, "\(whole.stdout)\(whole.stderr)")
            #expect(Harness.isMounted(mnt))
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            #expect(text.contains("badlength.iso.d/repodata: readdir failed (EIO)"), "log: \(text)")
            #expect(text.contains("loop.iso.d: readdir failed (EIO)") && text.contains("form a loop"), "log: \(text)")
        }
    }
}

// MARK: Listings in one comparable form

/// One entry of a tree: find's %y type letter (f, d, l, ...), size, permission bits (octal,
/// from find; empty from xorriso) and symlink target.
struct TreeEntry: Equatable, CustomStringConvertible {
    var type: Character
    var size: Int64
    var mode: String
    var target: String?
    var description: String { "\(type) \(size) \(mode)\(target.map { " -> \($0)" } ?? "")" }
}

/// Path ("/" for the top, "/a/b" below) -> entry, from `find DIR -printf` through the mount.
func mountTree(_ dir: String) throws -> [String: TreeEntry] {
    let r = try Harness.check(["find", dir, "-printf", "%P\\t%y\\t%s\\t%m\\t%l\\n"])
    var out: [String: TreeEntry] = [:]
    for line in r.stdout.split(separator: "\n", omittingEmptySubsequences: true) {
        let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        guard f.count == 5, let type = f[1].first, let size = Int64(f[2]) else { continue }
        out["/" + f[0]] = TreeEntry(type: type, size: size, mode: f[3], target: type == "l" ? f[4] : nil)
    }
    return out
}

/// Path -> entry from `xorriso -indev ISO -find / -exec lsdl` (xorriso's own reading).
func xorrisoTree(_ iso: String) throws -> [String: TreeEntry] {
    var out: [String: TreeEntry] = [:]
    for e in try Xorriso.lsdl(iso) {
        guard let modeChar = e.mode.first else { continue }
        let type: Character = modeChar == "-" ? "f" : modeChar
        out[e.path] = TreeEntry(type: type, size: e.size, mode: "", target: e.target)
    }
    return out
}

/// Differences on names, types, regular file sizes and symlink targets (one line each).
func treeDifferences(_ ours: [String: TreeEntry], _ theirs: [String: TreeEntry]) -> [String] {
    var out: [String] = []
    for path in Set(ours.keys).union(theirs.keys).sorted() {
        guard let a = ours[path], let b = theirs[path] else {
            out.append("\(path): mount \(ours[path]?.description ?? "missing"), xorriso \(theirs[path]?.description ?? "missing")")
            continue
        }
        if a.type != b.type || (a.type == "f" && a.size != b.size) || a.target != b.target {
            out.append("\(path): mount \(a), xorriso \(b)")
        }
    }
    return out
}

// MARK: Damaging an ISO's root directory

func readLE32(_ d: Data, at i: Int) -> UInt32 {
    (0..<4).reduce(UInt32(0)) { v, k in v | UInt32(d[d.startIndex + i + k]) << (8 * k) }
}

/// ISO 9660 both-endian 32-bit field: little-endian, then big-endian.
func putBothEndian32(_ d: inout Data, at i: Int, _ v: UInt32) {
    for k in 0..<4 {
        d[i + k] = UInt8(truncatingIfNeeded: v >> (8 * k))
        d[i + 7 - k] = UInt8(truncatingIfNeeded: v >> (8 * k))
    }
}

/// Finds the record called `name` (ISO 9660 name, upper case) in the primary root directory
/// and lets `patch` change it (given the record's offset in the image).
func patchRootRecord(_ iso: inout Data, named name: String, _ patch: (inout Data, Int) -> Void) throws {
    let pvd = 16 * 2048
    let rootBlock = Int(readLE32(iso, at: pvd + 156 + 2))
    let rootLength = Int(readLE32(iso, at: pvd + 156 + 10))
    var pos = rootBlock * 2048
    let end = pos + rootLength
    while pos < end {
        let len = Int(iso[pos])
        if len == 0 { pos = (pos / 2048 + 1) * 2048; continue }
        let idLength = Int(iso[pos + 32])
        let id = String(decoding: iso[(pos + 33)..<(pos + 33 + idLength)], as: UTF8.self)
        if id == name || id.hasPrefix(name + ";") {
            patch(&iso, pos)
            return
        }
        pos += len
    }
    throw HarnessError("no record \(name) in the root directory")
}
