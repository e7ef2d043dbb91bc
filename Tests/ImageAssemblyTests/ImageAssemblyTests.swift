import Dispatch
import Foundation
import ImageAssembly
import JigdoFormat
import PartSources
import Synchronization
import Testing
import TestSupport

@Suite("Image assembly against the real generators' output")
struct ImageAssemblyTests {
    @Test("ImageStreamer output equals the original ISO", arguments: FixtureVariant.names)
    func streamEqualsISO(_ name: String) throws {
        let v = try Fixtures.release().variant(name)
        let opened = try openImage(v)
        #expect(opened.image.templateCheck == .matched(v.checksumKind))
        #expect(opened.image.template.checksumKind == v.checksumKind)
        #expect(opened.parts.missingParts().isEmpty)
        let r = try streamAndCompare(opened.reader, with: v.iso)
        #expect(r.matches, "image checksum must match the template's")
        #expect(r.equal, "streamed image must equal \(v.iso) byte for byte")
    }

    @Test("chunks decompressed as streams in small windows give the same image", arguments: FixtureVariant.names)
    func streamedChunks(_ name: String) throws {
        let v = try Fixtures.release().variant(name)
        // Odd window size, tiny cache: windows are evicted, streams restarted on backward reads.
        let opened = try openImage(v, cacheBudget: 64 << 10, streamedWindow: 3001)
        let r = try streamAndCompare(opened.reader, with: v.iso)
        #expect(r.matches && r.equal)
        let iso = try readBytes(v.iso)
        var rng = SeededRandom(seed: 77)
        for _ in 0..<300 {
            let offset = Int64.random(in: 0..<Int64(iso.count), using: &rng)
            let count = Int.random(in: 1...200_000, using: &rng)
            let got = try opened.reader.read(at: offset, count: count)
            #expect(bytesEqual(got, iso[Int(offset)..<min(Int(offset) + count, iso.count)]), "read(at: \(offset), count: \(count))")
        }
    }

    @Test("random, unaligned and boundary ranges equal the ISO", arguments: FixtureVariant.names)
    func randomRanges(_ name: String) throws {
        let v = try Fixtures.release().variant(name)
        // A small template cache so chunks are evicted and decompressed again.
        let opened = try openImage(v, cacheBudget: 1 << 20)
        let reader = opened.reader
        let iso = try readBytes(v.iso)
        let size = Int64(iso.count)
        #expect(reader.size == size)
        var rng = SeededRandom(seed: 0x5eed ^ UInt64(name.utf8.count))

        func check(_ offset: Int64, _ count: Int, _ why: String) throws {
            let got = try reader.read(at: offset, count: count)
            let lo = Int(min(max(offset, 0), size)), hi = Int(min(offset + Int64(count), size))
            #expect(bytesEqual(got, iso[lo..<max(lo, hi)]), "\(why): read(at: \(offset), count: \(count)) differs (\(got.count) bytes)")
        }

        // Random ranges of mixed sizes.
        for i in 0..<1500 {
            let count: Int
            switch i % 4 {
            case 0: count = Int.random(in: 1...16, using: &rng)
            case 1: count = Int.random(in: 1...5000, using: &rng)
            case 2: count = Int.random(in: 1...300_000, using: &rng)
            default: count = Int.random(in: 1...1_000_000, using: &rng)
            }
            try check(Int64.random(in: 0..<size, using: &rng), count, "random")
        }
        // Around layout boundaries (template area <-> part, part <-> part), sampled.
        let layout = opened.image.template.layout
        #expect(layout.count > 10)
        for (i, e) in layout.enumerated() where i % 3 == 0 || i < 20 || i > layout.count - 20 {
            let b = e.imageOffset
            try check(max(b - 1, 0), 2, "1 byte each side of a boundary")
            try check(b, 1, "first byte of an area")
            try check(max(b - 7, 0), 13, "short range across a boundary")
            // From inside one area across the next ones.
            let spanEnd = min(i + 3, layout.count - 1)
            let end = layout[spanEnd].imageOffset + layout[spanEnd].length
            try check(max(b - 100, 0), Int(end - max(b - 100, 0)) + 50, "across several areas")
        }
        // The ends.
        try check(0, 1, "first byte")
        try check(size - 1, 1, "last byte")
        try check(size - 4096, 4096, "last block")
        try check(size - 10, 100, "across the end")
        #expect(try reader.read(at: size, count: 10).isEmpty, "read at the end gives no bytes")
        #expect(try reader.read(at: size + 12345, count: 10).isEmpty, "read past the end gives no bytes")
        #expect(try reader.read(at: 5, count: 0).isEmpty)
        #expect(throws: JigdoError.self) { try reader.read(at: -1, count: 10) }
        try check(0, Int(size), "whole image in one read")
    }

    @Test("ImageStreamer: a failing part source or sink ends the stream with its error; odd buffer sizes")
    func streamerErrors() throws {
        let v = try Fixtures.release().variant("jf-md5-gz")
        let image = try JigdoImage.open(jigdoPath: v.jigdo)
        let noParts = ImageReader(template: TemplateDataReader(file: image.templateFile, info: image.template), parts: NoParts())
        let e = try #require(throws: JigdoError.self) { try ImageStreamer(reader: noParts).stream(sink: { _ in }) }
        #expect(e.kind == .partUnavailable)

        let opened = try openImage(v)
        struct DiskFull: Error {}
        var calls = 0
        #expect(throws: DiskFull.self) {
            try ImageStreamer(reader: opened.reader).stream(sink: { _ in
                calls += 1
                if calls == 3 { throw DiskFull() }
            })
        }
        #expect(calls == 3, "no buffer is handed to the sink after it failed")

        var small = ImageStreamer(reader: opened.reader)
        small.bufferSize = 4097
        small.bufferCount = 2
        var last: Int64 = 0
        var monotonic = true
        let r = try small.stream(sink: { _ in }, progress: { done in
            if done <= last { monotonic = false }
            last = done
        })
        #expect(r.matches && monotonic && last == opened.reader.size)
    }

    /// `TemplateInfo.partsCovering` is TestSupport's (ISO9660Tests relies on it): checked here.
    @Test("partsCovering lists the parts a range touches, in image order")
    func partsCovering() throws {
        let v = try Fixtures.release().variant("jte-md5-gz")
        let opened = try openImage(v)
        let info = opened.image.template
        var rng = SeededRandom(seed: 5)
        for _ in 0..<500 {
            let offset = Int64.random(in: 0..<info.imageLength, using: &rng)
            let count = Int64.random(in: 1...2_000_000, using: &rng)
            let want = info.layout.compactMap { e -> Int? in
                guard case .part(let p) = e.source, e.imageOffset < offset + count, e.imageOffset + e.length > offset else { return nil }
                return p
            }
            #expect(info.partsCovering(offset: offset, count: count) == want)
        }
        #expect(info.partsCovering(offset: info.imageLength, count: 10).isEmpty)
        #expect(info.partsCovering(offset: 0, count: 0).isEmpty)
    }

    @Test("8 threads reading random ranges concurrently all get the right bytes")
    func concurrentReads() throws {
        for (name, window) in [("jf-md5-gz", nil), ("jte-sha256-bz2", nil), ("jf-sha256-gz", 8192)] {
            let v = try Fixtures.release().variant(name)
            let opened = try openImage(v, cacheBudget: 2 << 20, streamedWindow: window)
            let iso = try readBytes(v.iso)
            let reader = opened.reader
            let failures = Mutex<[String]>([])
            DispatchQueue.concurrentPerform(iterations: 8) { thread in
                var rng = SeededRandom(seed: UInt64(thread) &* 7919)
                for _ in 0..<250 {
                    let offset = Int64.random(in: 0..<Int64(iso.count), using: &rng)
                    let count = Int.random(in: 1...(Bool.random(using: &rng) ? 4096 : 600_000), using: &rng)
                    do {
                        let got = try reader.read(at: offset, count: count)
                        let end = min(Int(offset) + count, iso.count)
                        if !bytesEqual(got, iso[Int(offset)..<end]) {
                            failures.withLock { $0.append("\(name) thread \(thread): wrong bytes at \(offset)+\(count)") }
                        }
                    } catch {
                        failures.withLock { $0.append("\(name) thread \(thread): \(error)") }
                    }
                }
            }
            let f = failures.withLock { $0 }
            #expect(f.isEmpty, "\(f.prefix(5))")
        }
    }

    @Test("a gzip-compressed .jigdo, and plain text + gzip concatenated, read like the plain one",
          arguments: ["jf-sha256-gz", "jte-md5-gz"])
    func compressedJigdo(_ name: String) throws {
        let release = try Fixtures.release()
        let v = release.variant(name)
        let tmp = try TemporaryDirectory()
        let plain = try JigdoDescriptor.load(path: v.jigdo)
        let text = try readBytes(v.jigdo)
        // Split at a line boundary in the middle of the file.
        let lines = text.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        let cut = lines.prefix(lines.count / 2).reduce(0) { $0 + $1.count + 1 }
        try writeBytes(Array(text[..<cut]), to: tmp.file("head"))
        try writeBytes(Array(text[cut...]), to: tmp.file("tail"))
        try Subprocess.shell("""
            gzip -9 -n -c \(quote(v.jigdo)) > gz.jigdo
            { cat head; gzip -n -c tail; } > plain-then-gz.jigdo
            { gzip -n -c head; cat tail; } > gz-then-plain.jigdo
            { gzip -n -c head; gzip -n -c tail; } > gz-gz.jigdo
            """, cwd: tmp.path)
        #expect(try readBytes(tmp.file("gz.jigdo")).starts(with: [0x1f, 0x8b]))
        for file in ["gz.jigdo", "plain-then-gz.jigdo", "gz-then-plain.jigdo", "gz-gz.jigdo"] {
            let d = try JigdoDescriptor.load(path: tmp.file(file))
            #expect(d.parts.mapValues { $0.map(\.value) } == plain.parts.mapValues { $0.map(\.value) }, "\(file)")
            #expect(d.servers.mapValues { $0.map(\.value) } == plain.servers.mapValues { $0.map(\.value) }, "\(file)")
            #expect(d.image.templateChecksums == plain.image.templateChecksums, "\(file)")
            #expect(d.version == plain.version)
        }
        // A gzip bomb (300 MB of zeros in some 300 KB) is refused, not inflated into memory.
        try Subprocess.shell("head -c 300000000 /dev/zero | gzip -1 > bomb.jigdo", cwd: tmp.path)
        let bomb = try #require(throws: JigdoError.self) { try JigdoDescriptor.load(path: tmp.file("bomb.jigdo")) }
        #expect(bomb.description.contains("bomb.jigdo") && bomb.description.contains("MiB"), "\(bomb)")

        // A whole verified image through the gzip .jigdo (its file: server does not resolve
        // from the temp dir, so the parts come from --map).
        let opened = try openImage(jigdo: tmp.file("gz.jigdo"), template: v.template, map: ["Base": release.tree])
        let r = try streamAndCompare(opened.reader, with: v.iso)
        #expect(r.matches && r.equal)
    }

    @Test("--scan finds parts by size then checksum: duplicates, decoys, tiny and empty files",
          arguments: ["jf-md5-bz2", "jte-sha256-bz2"])
    func scanGivesVerifiedImage(_ name: String) throws {
        let release = try Fixtures.release()
        let v = release.variant(name)
        let tmp = try TemporaryDirectory()
        // The .jigdo away from the release, so its own file:../tree/ server resolves to nothing.
        let jigdo = try movedJigdo(v, into: tmp)
        let noParts = try openImage(jigdo: jigdo, template: v.template)
        #expect(noParts.parts.missingParts().count == noParts.image.template.parts.count, "nothing is found without --scan")

        // A second scan dir with traps: an empty file, a tiny file, a same-size decoy of a part
        // with other content, and a duplicate of a part.
        let extra = tmp.file("extra")
        try FileManager.default.createDirectory(atPath: extra + "/sub", withIntermediateDirectories: true)
        try writeBytes([], to: extra + "/empty")
        try writeBytes([1, 2, 3], to: extra + "/tiny")
        let ref = try openImage(v)
        let part0 = try #require(treePath(ofPart: 0, in: ref))
        var decoy = try readBytes(part0)
        decoy[decoy.count / 2] ^= 0xff
        try writeBytes(decoy, to: extra + "/sub/decoy.rpm")
        try copyTree(part0, to: extra + "/sub/duplicate.rpm")

        let totals = Mutex<(hashed: Int64, total: Int64)>((0, 0))
        let opened = try openImage(jigdo: jigdo, template: v.template, scan: [extra, release.tree, release.tree + "/"],
                                   scanProgress: { hashed, total in totals.withLock { $0 = (max($0.hashed, hashed), total) } })
        #expect(opened.parts.missingParts().isEmpty)
        // Only files whose size is some part's size are hashed, each path once.
        let partSizes = Set(opened.image.template.parts.map(\.length))
        let candidates = (regularFiles(under: extra) + regularFiles(under: release.tree))
            .map { (try? ReadOnlyFile(path: $0).size) ?? -1 }.filter { partSizes.contains($0) }
        let t = totals.withLock { $0 }
        #expect(t.total == candidates.reduce(0, +) && t.hashed == t.total, "\(t)")
        let r = try streamAndCompare(opened.reader, with: v.iso)
        #expect(r.matches && r.equal)
    }

    @Test("--map Base=DIR gives a verified image", arguments: ["jf-sha256-gz", "jte-md5-gz"])
    func mapGivesVerifiedImage(_ name: String) throws {
        let release = try Fixtures.release()
        let v = release.variant(name)
        let tmp = try TemporaryDirectory()
        let jigdo = try movedJigdo(v, into: tmp)
        let opened = try openImage(jigdo: jigdo, template: v.template, map: ["Base": release.tree])
        #expect(opened.parts.missingParts().isEmpty)
        let r = try streamAndCompare(opened.reader, with: v.iso)
        #expect(r.matches && r.equal)
    }

    @Test("a --map dir with a corrupted copy of a part: detected by checksum, never served",
          arguments: ["jf-md5-gz", "jte-sha256-bz2"])
    func corruptedMappedPart(_ name: String) throws {
        let release = try Fixtures.release()
        let v = release.variant(name)
        let tmp = try TemporaryDirectory()
        let mirror = tmp.file("mirror")
        try copyTree(release.tree, to: mirror)
        let ref = try openImage(v)
        let parts = ref.image.template.parts
        let index = parts.indices.max { parts[$0].length < parts[$1].length }!
        let original = try #require(treePath(ofPart: index, in: ref))
        #expect(original.hasPrefix(release.tree + "/"))
        let copy = mirror + original.dropFirst(release.tree.count)
        var bytes = try readBytes(copy)
        bytes[bytes.count / 3] ^= 0x01
        try writeBytes(bytes, to: copy)

        // Only the mirror: the corrupted part is refused, with an error naming it.
        let jigdo = try movedJigdo(v, into: tmp)
        let opened = try openImage(jigdo: jigdo, template: v.template, map: ["Base": mirror])
        let entry = try #require(opened.image.template.layout.first { $0.source == .part(index) })
        var buffer = [UInt8](repeating: 0, count: 100)
        let error = try #require(throws: JigdoError.self) {
            try buffer.withUnsafeMutableBytes { try opened.parts.readPart(index, at: 0, into: $0) }
        }
        #expect(error.kind == .partUnavailable)
        #expect(error.description.contains(parts[index].checksum.base64), "\(error)")
        #expect(error.description.contains(copy), "the error should name the rejected file: \(error)")
        #expect(throws: JigdoError.self) { try opened.reader.read(at: entry.imageOffset, count: 10) }
        #expect(throws: JigdoError.self) { _ = try streamAndCompare(opened.reader, with: v.iso) }
        #expect(opened.parts.missingParts().contains(index), "after the failed check the part counts as missing")
        // Other parts are still served.
        let iso = try readBytes(v.iso)
        let other = try #require(opened.image.template.layout.first {
            if case .part(let p) = $0.source { return parts[p].checksum != parts[index].checksum }
            return false
        })
        let o = Int(other.imageOffset)
        #expect(bytesEqual(try opened.reader.read(at: other.imageOffset, count: 64), iso[o..<o + 64]))

        // Mirror first, the jigdo's own location second: the bad copy is skipped, the image is right.
        let fallback = try openImage(jigdo: v.jigdo, map: ["Base": mirror])
        let r = try streamAndCompare(fallback.reader, with: v.iso)
        #expect(r.matches && r.equal)
    }
}
