import Foundation
import ImageAssembly
import JigdoFormat
import PartSources
import Testing
import TestSupport

/// Issue 2, "Sizes and speed": a real generator's template for an image over 4 GiB.
///
/// The image is a sparse file with four random part files written below, across and above the
/// 4 GiB mark; `jigdo-file make-template` (which has to read all of it) describes it. Slow (the
/// generator takes about a minute), but it runs in every test run.
@Suite("Images over 4 GiB")
struct LargeImageTests {
    static let imageSize: Int64 = 4_400_000_000
    static let fourGiB: Int64 = 1 << 32

    @Test("jigdo-file template of a 4.4 GB image: bytes around and above 4 GiB, whole-image checksum")
    func imageOver4GiB() throws {
        let tmp = try TemporaryDirectory(prefix: "jigdofs-big")
        defer { tmp.remove() }
        let image = tmp.file("big.img")
        let partsDir = tmp.file("parts")
        try FileManager.default.createDirectory(atPath: partsDir, withIntermediateDirectories: true)
        try Subprocess.shell("truncate -s \(Self.imageSize) big.img", cwd: tmp.path)

        // (offset in the image, size): below 2 GiB, just below 4 GiB, across 4 GiB, near the end.
        let placements: [(Int64, Int)] = [
            (2_048_000, 150_001),
            (Self.fourGiB - 300_000, 200_003),
            (Self.fourGiB - 70_001, 180_000),
            (Self.imageSize - 250_000, 240_007),
        ]
        var rng = SeededRandom(seed: 4_294_967_296)
        for (i, (offset, size)) in placements.enumerated() {
            let bytes = (0..<size).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let path = "\(partsDir)/part\(i).bin"
            try writeBytes(bytes, to: path)
            try Subprocess.shell("dd if=parts/part\(i).bin of=big.img bs=64K seek=\(offset) oflag=seek_bytes conv=notrunc status=none", cwd: tmp.path)
        }

        let gen = try Subprocess.run("jigdo-file", [
            "make-template", "-r", "quiet", "--force", "-i", image, "-j", tmp.file("big.jigdo"), "-t", tmp.file("big.template"),
            "--label", "Parts=\(partsDir)", "--uri", "Parts=file:parts/", partsDir + "//",
        ])
        try #require(gen.status == 0, "jigdo-file make-template failed: \(gen)")

        let opened = try openImage(jigdo: tmp.file("big.jigdo"))
        let info = opened.image.template
        #expect(info.imageLength == Self.imageSize)
        #expect(info.parts.count == placements.count, "jigdo-file should match all four part files")
        let partOffsets = info.layout.compactMap { e -> Int64? in
            if case .part = e.source { return e.imageOffset }
            return nil
        }
        #expect(partOffsets == placements.map(\.0))
        #expect(opened.parts.missingParts().isEmpty)
        let above = try #require(info.layoutIndex(containing: Self.fourGiB))
        #expect(info.layout[above].imageOffset <= Self.fourGiB && Self.fourGiB < info.layout[above].imageOffset + info.layout[above].length)

        // Ranges around and above 4 GiB, compared with the image itself.
        let original = try ReadOnlyFile(path: image)
        func check(_ offset: Int64, _ count: Int) throws {
            let got = try opened.reader.read(at: offset, count: count)
            let n = Int(max(0, min(Int64(count), Self.imageSize - offset)))
            var want: [UInt8] = []
            if n > 0 { want = try original.read(at: offset, count: n) }
            #expect(bytesEqual(got, want[...]), "read(at: \(offset), count: \(count)) differs from the image")
        }
        for (offset, size) in placements {
            try check(offset - 5, size + 10)   // a whole part with a little template data each side
            try check(offset + Int64(size) - 1, 2)
        }
        try check(Self.fourGiB - 1, 2)
        try check(Self.fourGiB - 4096, 8192)
        try check(Self.fourGiB + 12_345, 100_000)
        try check(Self.imageSize - 1, 1)
        try check(Self.imageSize - 100, 1000)
        var r = SeededRandom(seed: 42)
        for _ in 0..<40 {
            try check(Int64.random(in: (Self.fourGiB - 1_000_000)..<Self.imageSize, using: &r), Int.random(in: 1...300_000, using: &r))
        }
        #expect(try opened.reader.read(at: Self.imageSize, count: 10).isEmpty)

        // The CLI reports the 64-bit size (compact JSON: stdout is not a terminal).
        let info64 = try CLI.run(["info", "--json", tmp.file("big.jigdo")])
        #expect(info64.status == 0 && info64.stdout.contains("\"size\":\(Self.imageSize)"), "\(info64)")

        // One full pass: the whole-image checksum jigdo-file computed must match.
        let result = try ImageStreamer(reader: opened.reader).stream(sink: { _ in })
        #expect(result.matches, "whole-image \(info.checksumKind.rawValue) \(result.checksum.hex) should be \(info.imageChecksum.hex)")
    }
}
