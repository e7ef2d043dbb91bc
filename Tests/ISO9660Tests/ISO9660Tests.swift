import Foundation
import ImageAssembly
import ISO9660
import JigdoFormat
import PartSources
import Synchronization
import TestSupport
import Testing

private func fixture(_ r: Result<String, any Error>) throws -> String { try r.get() }

private func diff(_ ours: [String: LsdlEntry], _ theirs: [String: LsdlEntry]) -> [String] {
    var out: [String] = []
    for path in Set(ours.keys).union(theirs.keys).sorted() where ours[path] != theirs[path] {
        out.append("\(path): ours \(ours[path].map(\.description) ?? "missing"), xorriso \(theirs[path].map(\.description) ?? "missing")")
    }
    return out
}

@Suite struct ListingAgreesWithXorriso {
    @Test(arguments: ["rr.iso", "reloc.iso", "geni.iso", "bsd.iso"])
    func rockRidgeTree(iso: String) throws {
        let path = try fixture(rockRidgeFixture) + "/" + iso
        let volume = try ISO9660Volume.open(ImageFile(path: path), name: iso)
        #expect(volume.scheme == .rockRidge)
        let ours = try ourListing(volume)
        let theirs = try xorrisoListing(path)
        #expect(theirs.count > 20)
        #expect(diff(ours, theirs) == [])
    }

    @Test func plainReleaseISO() throws {
        let release = try fixture(releaseFixture)
        let volume = try ISO9660Volume.open(ImageFile(path: release + "/release.iso"), name: "release.iso")
        let theirs = try xorrisoListing(release + "/release.iso")
        #expect(theirs.count > 40)
        #expect(diff(try ourListing(volume), theirs) == [])
    }

    /// Listing through the .jigdo with no parts at all: every directory lies in the template.
    @Test(arguments: ["jf-md5-gz", "jf-md5-bz2", "jf-sha256-gz", "jf-sha256-bz2", "jte-md5-gz", "jte-sha256-bz2"])
    func jigdoVariantNeedsNoParts(variant: String) throws {
        let release = try fixture(releaseFixture)
        let image = try JigdoImage.open(jigdoPath: "\(release)/\(variant)/release.jigdo")
        let counting = CountingParts(NoParts())
        let reader = ImageReader(template: TemplateDataReader(file: image.templateFile, info: image.template), parts: counting)
        let volume = try ISO9660Volume.open(reader, name: variant)
        let original = variant.hasPrefix("jte") ? "\(release)/\(variant)/release.iso" : "\(release)/release.iso"
        #expect(diff(try ourListing(volume), try xorrisoListing(original)) == [])
        #expect(counting.partsRead.isEmpty)
    }

    /// Directory sizes are the exact extent lengths isoinfo reports.
    @Test func directorySizesMatchIsoinfo() throws {
        let release = try fixture(releaseFixture)
        let volume = try ISO9660Volume.open(ImageFile(path: release + "/release.iso"), name: "release.iso")
        let out = try Subprocess.shell("isoinfo -R -l -i \(shellQuote(release + "/release.iso"))")
        var checked = 0
        var current = ""
        for line in out.split(separator: "\n") {
            if line.hasPrefix("Directory listing of ") {
                current = String(line.dropFirst("Directory listing of ".count))
                continue
            }
            guard line.hasPrefix("d") else { continue }
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 4, let size = Int64(fields[4]), let bracket = line.range(of: "]  ") else { continue }
            let name = String(line[bracket.upperBound...]).trimmingCharacters(in: .whitespaces)
            guard name != ".", name != ".." else { continue }
            let entry = try volume.lookup(current + name)
            #expect(entry.size == size, "\(current + name)")
            checked += 1
        }
        #expect(checked >= 3)
    }
}

@Suite struct ReadingFiles {
    /// Every file read through each jigdo variant equals the source, and reads exactly the
    /// parts that its extents cover.
    @Test(arguments: ["jf-md5-gz", "jf-sha256-bz2", "jte-md5-gz", "jte-sha256-bz2"])
    func catThroughJigdo(variant: String) throws {
        let release = try fixture(releaseFixture)
        var counting: CountingParts!
        let (reader, _) = try openJigdo(variant, release: release) { local in
            counting = CountingParts(local)
            return counting
        }
        let volume = try ISO9660Volume.open(reader, name: variant)
        var files = 0
        var withParts = 0
        try ISOListing.walk(volume, from: volume.root, path: "/") { dir, _, children in
            for c in children where c.type == .regular {
                let isoPath = (dir == "/" ? "" : dir) + "/" + c.name
                counting.reads.withLock { $0 = [:] }
                let got = try volume.contents(of: c)
                #expect(got == (try readBytes(release + "/tree" + isoPath)), "\(isoPath)")
                var expected = Set<Int>()
                for e in volume.imageRanges(of: c) { expected.formUnion(reader.info.partsCovering(offset: e.offset, count: e.length)) }
                #expect(counting.partsRead == expected, "\(isoPath)")
                files += 1
                if !expected.isEmpty { withParts += 1 }
            }
        }
        #expect(files > 40)
        #expect(withParts > 20)
    }

    /// Many threads listing and reading through one volume with a tiny directory cache (every
    /// listing re-reads its extent) all get the right bytes.
    @Test func concurrentReadsWithASmallCache() throws {
        let release = try fixture(releaseFixture)
        let (reader, _) = try openJigdo("jf-sha256-gz", release: release)
        let volume = try ISO9660Volume.open(reader, name: "jf-sha256-gz", cacheBudget: 4096)
        var paths: [String] = []
        try ISOListing.walk(volume, from: volume.root, path: "/") { dir, _, children in
            for c in children where c.type == .regular { paths.append((dir == "/" ? "" : dir) + "/" + c.name) }
        }
        let failures = Mutex<[String]>([])
        let all = paths
        DispatchQueue.concurrentPerform(iterations: all.count * 3) { i in
            let p = all[i % all.count]
            do {
                let got = try volume.contents(of: volume.lookup(p))
                if got != (try readBytes(release + "/tree" + p)) { failures.withLock { $0.append(p) } }
            } catch {
                failures.withLock { $0.append("\(p): \(error)") }
            }
        }
        #expect(paths.count > 40)
        #expect(failures.withLock { $0 } == [])
    }

    @Test func rockRidgeFilesAndLinks() throws {
        let dir = try fixture(rockRidgeFixture)
        let volume = try ISO9660Volume.open(ImageFile(path: dir + "/rr.iso"), name: "rr.iso")
        #expect(try volume.contents(of: volume.lookup("/random.bin")) == (try readBytes(dir + "/src/random.bin")))
        let long = "n" + String(repeating: "n", count: 199) + ".txt"
        #expect(try volume.contents(of: volume.lookup(long)) == Array("long name\n".utf8))
        #expect(try volume.contents(of: volume.lookup("/ünïcödé-名前.txt")) == Array("été\n".utf8))
        #expect(try volume.lookup("empty").size == 0)
        #expect(try volume.contents(of: volume.lookup("empty")) == [])
        // Symlinks inside the image, relative, with . and .. in the target.
        #expect(try volume.lookup("target-rel").type == .symlink)
        #expect(try volume.lookup("target-rel", followSymlinks: true).type == .directory)
        #expect(try volume.contents(of: volume.lookup("dotty/e/f/g/h/i/j/k/l/m/deep.txt")) == Array("deep\n".utf8))
        #expect(try volume.lookup("/a/b/../b/./c/d").name == "d")
        #expect(try volume.lookup("long-link").symlinkTarget?.utf8.count == 519)
        #expect(try volume.lookup("abs-link").symlinkTarget == "/etc/passwd")
        #expect(try volume.lookup("hardlink").links == 2)
        #expect(ISOListing.modeString(try volume.lookup("suid")) == "-rwsr-xr-x")
        #expect(ISOListing.modeString(try volume.lookup("sticky")) == "drwxrwxrwt")
        #expect(try volume.lookup("fifo").type == .fifo)
        // Rock Ridge TF times are the source files' mtimes (to the second).
        for name in ["random.bin", "mode600", "sticky", "a/b/c"] {
            let attrs = try FileManager.default.attributesOfItem(atPath: dir + "/src/" + name)
            let mtime = Int64((attrs[.modificationDate] as! Date).timeIntervalSince1970.rounded(.down))
            #expect(try volume.lookup(name).mtime == mtime, "\(name)")
        }
        // Errors carry a kind a FUSE bridge can turn into errno.
        #expect(throws: ISO9660Error.self) { try volume.lookup("loop1", followSymlinks: true) }
        do { _ = try volume.lookup("loop1/x") } catch let e as ISO9660Error { #expect(e.kind == .symlinkLoop) }
        do { _ = try volume.lookup("/nope/x") } catch let e as ISO9660Error { #expect(e.kind == .notFound) }
        do { _ = try volume.lookup("/mode600/x") } catch let e as ISO9660Error { #expect(e.kind == .notADirectory) }
        do { _ = try volume.list(volume.lookup("mode600")) } catch let e as ISO9660Error { #expect(e.kind == .notADirectory) }
        // Ids are unique (inode numbers for the browse view).
        var ids = Set<Int64>([volume.root.id])
        var count = 1
        try ISOListing.walk(volume, from: volume.root, path: "/") { _, _, children in
            for c in children { ids.insert(c.id); count += 1 }
        }
        #expect(ids.count == count)
    }

    /// Device nodes (needs root for mknod; skipped otherwise): xorriso and genisoimage encode
    /// PN differently, both read as the source's major/minor.
    @Test(.enabled(if: getuid() == 0)) func deviceNodes() throws {
        let dir = fixtureRoot + "/devices"
        try Subprocess.shell("""
            mkdir -p \(shellQuote(dir))/src && cd \(shellQuote(dir))
            mknod src/null c 1 3 && mknod src/loop b 7 200 && mknod src/big c 300 70000
            xorriso -as mkisofs -quiet -R -o x.iso src 2>/dev/null
            genisoimage -quiet -R -o g.iso src 2>/dev/null
            """)
        for iso in ["x.iso", "g.iso"] {
            let v = try ISO9660Volume.open(ImageFile(path: dir + "/" + iso), name: iso)
            let null = try v.lookup("null")
            #expect(null.type == .characterDevice)
            #expect(null.device == ISODevice(major: 1, minor: 3), "\(iso)")
            let loop = try v.lookup("loop")
            #expect(loop.type == .blockDevice)
            #expect(loop.device == ISODevice(major: 7, minor: 200), "\(iso)")
            #expect(ISOListing.lines([loop], long: true)[0].hasPrefix("brw-r--r-- 1 0 0 7, 200 "))
            if iso == "g.iso" { #expect(try v.lookup("big").device == ISODevice(major: 300, minor: 70000)) }
        }
    }

    /// zisofs-compressed files read as the originals, at any offset; an unknown compression is
    /// listed but refuses reads.
    @Test func zisofsFiles() throws {
        let dir = try fixture(rockRidgeFixture)
        let bytes = try readBytes(dir + "/zisofs.iso")
        let volume = try ISO9660Volume.open(MemoryImage(bytes), name: "zisofs.iso")
        var compressed = 0
        for name in ["text.txt", "zeros-inside.bin", "random.bin"] {
            let entry = try volume.lookup(name)
            let original = try readBytes(dir + "/zsrc/" + name)
            #expect(entry.size == Int64(original.count))
            if case .zisofs = entry.storage { compressed += 1 }
            #expect(try volume.contents(of: entry) == original, "\(name)")
            var rng = SeededRandom(seed: 7)
            for _ in 0..<20 {
                let off = Int.random(in: 0..<original.count, using: &rng)
                let n = Int.random(in: 1...100_000, using: &rng)
                var got = [UInt8](repeating: 0, count: n)
                let k = try got.withUnsafeMutableBytes { try volume.read(entry, at: Int64(off), into: $0) }
                #expect(Array(got[0..<k]) == Array(original[off..<min(original.count, off + n)]), "\(name) at \(off)")
            }
        }
        #expect(compressed >= 2)
        // The same image with the ZF algorithm renamed: listed, reads refused.
        var renamed = bytes
        var patched = 0
        var i = 0
        while i + 8 < renamed.count {
            if renamed[i] == 0x5A, renamed[i + 1] == 0x46, renamed[i + 2] == 16, renamed[i + 3] == 1, renamed[i + 4] == 0x70, renamed[i + 5] == 0x7A {
                renamed[i + 4] = 0x78 // "xz"
                patched += 1
            }
            i += 1
        }
        #expect(patched >= 2)
        let odd = try ISO9660Volume.open(MemoryImage(renamed), name: "odd.iso")
        let text = try odd.lookup("text.txt")
        #expect(text.size == Int64(try readBytes(dir + "/zsrc/text.txt").count))
        do {
            _ = try odd.contents(of: text)
            Issue.record("read an unknown compression")
        } catch let e as ISO9660Error {
            #expect(e.kind == .unsupported)
        }
    }

    @Test func jolietAndPlainNames() throws {
        let dir = try fixture(rockRidgeFixture)
        // xorriso writes Rock Ridge even without -R; read the Joliet tree instead of it.
        let joliet = try ISO9660Volume.open(ImageFile(path: dir + "/joliet.iso"), name: "joliet.iso", useRockRidge: false)
        #expect(joliet.scheme == .joliet)
        #expect(try joliet.contents(of: joliet.lookup("/Sub Dir/deeper/Mixed.Case.txt")) == Array("one\n".utf8))
        #expect(try joliet.lookup("readme").size == 4)
        let noRR = try ISO9660Volume.open(ImageFile(path: dir + "/rr.iso"), name: "rr.iso", useRockRidge: false)
        #expect(noRR.scheme == .joliet)
        #expect(try noRR.lookup("mode600").mode == 0o100444)
        #expect(try noRR.lookup("a").links == 1) // "unknown" for find(1), never a wrong 2
        let plain = try ISO9660Volume.open(ImageFile(path: dir + "/rr.iso"), name: "rr.iso", useRockRidge: false, useJoliet: false)
        #expect(plain.scheme == .iso9660)
        #expect(try plain.contents(of: plain.lookup("MODE600")) == Array("secret\n".utf8))
    }

    /// A file over 4 GiB is stored by xorriso as two extents; reads across the seam are right.
    @Test func multiExtentFileOver4GiB() throws {
        let dir = try fixture(multiExtentFixture)
        let volume = try ISO9660Volume.open(ImageFile(path: dir + "/big.iso"), name: "big.iso")
        let huge = try volume.lookup("huge.bin")
        #expect(huge.size == 4097 * 1048576)
        #expect(huge.extents.count == 2)
        let source = try ReadOnlyFile(path: dir + "/src/huge.bin")
        for (offset, count) in [(Int64(0), 4096), (4294965248 - 4096, 8192), (4294965248 - 4, 8), (huge.size - 4, 4), (huge.size - 100_000, 100_000)] {
            var got = [UInt8](repeating: 0xAA, count: count)
            let n = try got.withUnsafeMutableBytes { try volume.read(huge, at: offset, into: $0) }
            #expect(n == count)
            #expect(got == (try source.read(at: offset, count: count)), "offset \(offset)")
        }
        // Past the end: short reads, then nothing.
        var tail = [UInt8](repeating: 0, count: 10)
        #expect(try tail.withUnsafeMutableBytes { try volume.read(huge, at: huge.size - 4, into: $0) } == 4)
        #expect(try tail.withUnsafeMutableBytes { try volume.read(huge, at: huge.size, into: $0) } == 0)
        #expect(try volume.contents(of: volume.lookup("small.txt")) == Array("small\n".utf8))
    }
}
