import Foundation
import ImageAssembly
import JigdoFormat
import Synchronization
import Testing
import TestSupport

/// Part bytes by checksum (MD5 and SHA256 of every file of a release tree): a part source for
/// any template of that release, also a corrupted one.
final class TreeParts: PartSource {
    let files: [Checksum: [UInt8]]

    init(tree: String) throws {
        var files: [Checksum: [UInt8]] = [:]
        for path in regularFiles(under: tree) {
            let bytes = try readBytes(path)
            for kind in ChecksumKind.allCases {
                var h = ChecksumHasher(kind)
                h.update(bytes)
                files[h.finalize()] = bytes
            }
        }
        self.files = files
    }

    func readPart(_ index: Int, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        throw JigdoError(.partUnavailable, "TreeParts needs the template: use reader(for:)")
    }

    func isLocallyAvailable(_ index: Int) -> Bool { false }

    /// A part source bound to one (possibly corrupt) template's part list.
    struct Bound: PartSource {
        let files: [Checksum: [UInt8]]
        let parts: [TemplatePart]
        func readPart(_ index: Int, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
            guard let bytes = files[parts[index].checksum] else {
                throw JigdoError(.partUnavailable, "part \(parts[index].checksum) is not in the tree")
            }
            guard bytes.count == parts[index].length, offset + Int64(buffer.count) <= Int64(bytes.count) else {
                throw JigdoError(.partUnavailable, "part \(parts[index].checksum): length differs")
            }
            bytes.withUnsafeBytes { src in
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[Int(offset)..<Int(offset) + buffer.count]))
            }
        }
        func isLocallyAvailable(_ index: Int) -> Bool { files[parts[index].checksum] != nil }
    }

    /// `streamed`: decompress every chunk as a stream in small windows.
    func reader(for info: TemplateInfo, file: ReadOnlyFile, streamed: Bool = false) -> ImageReader {
        let template = streamed
            ? TemplateDataReader(file: file, info: info, largeChunkThreshold: 0, windowSize: 5000)
            : TemplateDataReader(file: file, info: info)
        return ImageReader(template: template, parts: Bound(files: files, parts: Array(info.parts)))
    }
}

/// What reading a (possibly corrupt) template gave.
enum Outcome: Equatable {
    /// A JigdoError from parsing or reading.
    case error
    /// The whole image was read and its checksum did not match the template's (detected).
    case mismatch
    /// The image checksum matched the template's and the bytes equal the ISO.
    case correct
    /// A bug: a non-JigdoError error, or checksum-matching bytes that differ from the ISO.
    case bug(String)
}

/// Parses `path` and reads the whole image it describes.
func readWholeImage(templatePath path: String, parts: TreeParts, iso: [UInt8], streamed: Bool = false) -> Outcome {
    do {
        let file = try ReadOnlyFile(path: path)
        let info = try TemplateInfo.read(file)
        // One corrupt byte cannot change both the image length and the areas that must add up to it.
        guard info.imageLength <= Int64(iso.count) * 2 else { return .bug("image length \(info.imageLength) accepted") }
        let bytes = try parts.reader(for: info, file: file, streamed: streamed).read(at: 0, count: Int(info.imageLength))
        guard Int64(bytes.count) == info.imageLength else { return .bug("short read \(bytes.count) of \(info.imageLength)") }
        var h = ChecksumHasher(info.checksumKind)
        h.update(bytes)
        guard h.finalize() == info.imageChecksum else { return .mismatch }
        return bytesEqual(bytes, iso[...]) ? .correct : .bug("checksum matched but the bytes differ from the ISO")
    } catch let e as JigdoError {
        if e.description.contains("\n") { return .bug("multi-line error: \(e)") }
        return .error
    } catch {
        return .bug("not a JigdoError: \(error)")
    }
}

/// Where the structure of a template lies: header, chunk heads, DESC.
func structuralOffsets(_ info: TemplateInfo, size: Int) throws -> Set<Int> {
    var s = Set<Int>()
    let firstChunk = Int(info.chunks.first?.fileOffset ?? 16) - 16
    s.formUnion(0..<firstChunk + 16)
    for c in info.chunks {
        let head = Int(c.fileOffset) - 16
        s.formUnion(head..<head + 24)            // part header + start of the compressed stream
        let end = Int(c.fileOffset) + c.compressedLength
        s.formUnion(max(head, end - 8)..<end)    // end of the stream (zlib adler32 / bzip2 CRC)
    }
    let tail = try ReadOnlyFile(path: info.path).read(at: Int64(size - 6), count: 6)
    let descLength = tail.enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
    s.formUnion(size - descLength..<size)
    return s
}

@Suite("Templates from the real generators: truncated and corrupted")
struct TemplateCorruptionTests {
    @Test("truncated at every offset: always a JigdoError, and the .jigdo's checksum rejects it",
          arguments: FixtureVariant.names)
    func truncatedEverywhere(_ name: String) throws {
        let release = try Fixtures.smallRelease()
        let v = release.variant(name)
        let template = try readBytes(v.template)
        let iso = try readBytes(v.iso)
        let parts = try TreeParts(tree: release.tree)
        let tmp = try TemporaryDirectory()
        let jigdo = tmp.file("release.jigdo")
        let path = tmp.file("release.template")
        try copyTree(v.jigdo, to: jigdo)
        let expected = try #require(try JigdoDescriptor.load(path: jigdo).image.templateChecksums[v.checksumKind])

        var bugs: [String] = []
        var notRejected: [Int] = []
        for length in 0..<template.count {
            try writeBytes(Array(template[..<length]), to: path)
            let outcome = readWholeImage(templatePath: path, parts: parts, iso: iso, streamed: length % 2 == 1)
            if case .bug(let why) = outcome { bugs.append("truncated to \(length): \(why)") }
            if outcome == .correct { bugs.append("truncated to \(length): accepted as correct") }
            if !rejectedByJigdoChecksum(jigdo: jigdo, template: path, expected: expected) { notRejected.append(length) }
        }
        #expect(bugs.isEmpty, "\(bugs.prefix(10))")
        #expect(notRejected.isEmpty, "JigdoImage.open accepted truncations \(notRejected.prefix(10))")
        // The intact template is still fine.
        try writeBytes(template, to: path)
        #expect(readWholeImage(templatePath: path, parts: parts, iso: iso) == .correct)
        #expect(readWholeImage(templatePath: path, parts: parts, iso: iso, streamed: true) == .correct)
        #expect(try JigdoImage.open(jigdoPath: jigdo).templateCheck == .matched(v.checksumKind))
    }

    @Test("a byte changed at every structural offset and densely elsewhere: never a crash or wrong bytes",
          arguments: FixtureVariant.names)
    func flippedBytes(_ name: String) throws {
        let release = try Fixtures.smallRelease()
        let v = release.variant(name)
        let template = try readBytes(v.template)
        let iso = try readBytes(v.iso)
        let parts = try TreeParts(tree: release.tree)
        let info = try TemplateInfo.read(path: v.template)
        #expect(info.chunks.allSatisfy { $0.compression == (v.usesBzip2 ? .bzip2 : .zlib) })
        let tmp = try TemporaryDirectory()
        let jigdo = tmp.file("release.jigdo")
        let path = tmp.file("release.template")
        try copyTree(v.jigdo, to: jigdo)
        let expected = try #require(try JigdoDescriptor.load(path: jigdo).image.templateChecksums[v.checksumKind])

        let structural = try structuralOffsets(info, size: template.count)
        let offsets = (0..<template.count).filter { structural.contains($0) || $0 % 5 == 0 }
        var counts: [String: Int] = [:]
        var bugs: [String] = []
        var notRejected: [Int] = []
        for offset in offsets {
            var bytes = template
            // Vary the change: single low and high bits, and all bits.
            bytes[offset] ^= [0x01, 0x80, 0xff, 0x10][offset % 4]
            try writeBytes(bytes, to: path)
            // Half of the cases through streamed decompression.
            let outcome = readWholeImage(templatePath: path, parts: parts, iso: iso, streamed: offset % 2 == 1)
            switch outcome {
            case .bug(let why): bugs.append("byte \(offset): \(why)")
            case .error: counts["error", default: 0] += 1
            case .mismatch: counts["mismatch", default: 0] += 1
            case .correct: counts["correct", default: 0] += 1
            }
            if !rejectedByJigdoChecksum(jigdo: jigdo, template: path, expected: expected) { notRejected.append(offset) }
        }
        #expect(bugs.isEmpty, "\(bugs.prefix(10))")
        #expect(notRejected.isEmpty, "JigdoImage.open accepted changed bytes at \(notRejected.prefix(10))")
        // Most changes must be caught by the structure or by zlib/bzip2's own checks.
        #expect((counts["error"] ?? 0) > offsets.count / 2, "\(counts)")
    }

    @Test("crafted DESC: lengths that overflow, unknown entries, no image entry, doubled image entry")
    func craftedDescriptions() throws {
        let tmp = try TemporaryDirectory()
        let header = Array("JigsawDownload template 1.1 jigdo-file/0.8.0\r\nComment\r\n\r\n".utf8)
        func le(_ v: UInt64, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
        func template(_ entries: [UInt8], data: [UInt8] = []) -> [UInt8] {
            let descLength = UInt64(entries.count + 16)
            return header + data + Array("DESC".utf8) + le(descLength, 6) + entries + le(descLength, 6)
        }
        let md5 = [UInt8](repeating: 7, count: 16)
        let imageEntry: (UInt64) -> [UInt8] = { [5] + le($0, 6) + md5 + le(1024, 4) }
        let maxLength: UInt64 = (1 << 48) - 1
        let hugePart: [UInt8] = [6] + le(maxLength, 6) + le(0, 8) + md5
        let cases: [(String, [UInt8], String)] = [
            ("40000 parts of 2^48 bytes (Int64 overflow)", template(Array((0..<40000).map { _ in hugePart }.joined()) + imageEntry(maxLength)), "add up"),
            ("unmatched data of 2^48 bytes, no data part", template([2] + le(maxLength, 6) + imageEntry(maxLength)), "data"),
            ("unknown entry type", template([4] + le(0, 6) + imageEntry(0)), "type 4"),
            ("no image entry", template([2] + le(0, 6)), "image"),
            ("two image entries", template(imageEntry(0) + imageEntry(0)), "more than one"),
            ("entry cut off", template(imageEntry(0) + [6, 1, 2]), "past the end"),
            ("areas do not add up", template(hugePart + imageEntry(5)), "add up"),
            ("SHA256 part in an MD5 image", template([9] + le(10, 6) + le(0, 8) + [UInt8](repeating: 1, count: 32) + imageEntry(10)), "kind"),
            ("DESC length pointing before the file", header + Array("DESC".utf8) + le(1 << 40, 6) + imageEntry(0) + le(1 << 40, 6), "DESC"),
            ("data part longer than the file", template([2] + le(10, 6) + imageEntry(10), data: Array("DATA".utf8) + le(1 << 30, 6) + le(10, 6)), "DATA"),
            ("unknown data part", template([2] + le(10, 6) + imageEntry(10), data: Array("XXXX".utf8) + le(26, 6) + le(10, 6) + [UInt8](repeating: 0, count: 10)), "XXXX"),
            ("zlib data that is not zlib", template([2] + le(10, 6) + imageEntry(10), data: Array("DATA".utf8) + le(26, 6) + le(10, 6) + [UInt8](repeating: 0x55, count: 10)), "zlib"),
            ("bzip2 data that is not bzip2", template([2] + le(10, 6) + imageEntry(10), data: Array("BZIP".utf8) + le(26, 6) + le(10, 6) + Array("BZh9".utf8) + [UInt8](repeating: 0x55, count: 6)), "bzip2"),
            ("version 3", Array("JigsawDownload template 3.0 x\r\nComment\r\n\r\n".utf8) + Array(template(imageEntry(0)).dropFirst(header.count)), "3.0"),
            ("not a template", Array("hello world, this is text and not a template at all".utf8), "JigsawDownload"),
            ("empty file", [], "JigsawDownload"),
        ]
        for (what, bytes, mention) in cases {
            let path = tmp.file("crafted.template")
            try writeBytes(bytes, to: path)
            do {
                let file = try ReadOnlyFile(path: path)
                let info = try TemplateInfo.read(file)
                _ = try ImageReader(template: TemplateDataReader(file: file, info: info), parts: NoParts())
                    .read(at: 0, count: Int(min(info.imageLength, 1 << 20)))
                Issue.record("\(what): accepted")
            } catch let e as JigdoError {
                #expect(e.description.contains(path), "\(what): names the file: \(e)")
                #expect(e.description.contains(mention), "\(what): should mention '\(mention)': \(e)")
            } catch {
                Issue.record("\(what): not a JigdoError: \(error)")
            }
        }
    }
}

/// Whether `JigdoImage.open` refuses `template` for the .jigdo with an error naming both sums.
func rejectedByJigdoChecksum(jigdo: String, template: String, expected: Checksum) -> Bool {
    do {
        _ = try JigdoImage.open(jigdoPath: jigdo)
        return false
    } catch let e as JigdoError {
        guard e.kind == .checksumMismatch, let kind = expected.kind,
              let actual = try? ReadOnlyFile(path: template).checksum(kind) else { return false }
        // The message names the expected sum, never the local file's own.
        return e.description.contains(expected.base64) && !e.description.contains(actual.base64)
    } catch {
        return false
    }
}

@Suite("Finding and checking the template")
struct TemplateLocationTests {
    @Test("next to the .jigdo by base name (libjte writes a placeholder URL)")
    func besideJigdo() throws {
        let v = try Fixtures.release().variant("jte-md5-gz")
        #expect(try JigdoDescriptor.load(path: v.jigdo).image.template.value.hasPrefix("http://"))
        let tmp = try TemporaryDirectory()
        try copyTree(v.jigdo, to: tmp.file("a.jigdo"))
        try copyTree(v.template, to: tmp.file("release.template"))
        let image = try JigdoImage.open(jigdoPath: tmp.file("a.jigdo"))
        #expect(image.templatePath == tmp.file("release.template"))
        #expect(image.templateCheck == .matched(.md5))
        #expect(image.imageName == "release.iso", "libjte's stdio: prefix is dropped")
    }

    @Test("the Template value relative to the .jigdo, when the base name is not beside it")
    func relativeTemplateValue() throws {
        let v = try Fixtures.release().variant("jf-sha256-bz2")
        let tmp = try TemporaryDirectory()
        try FileManager.default.createDirectory(atPath: tmp.file("j/templates"), withIntermediateDirectories: true)
        let text = try String(contentsOfFile: v.jigdo, encoding: .utf8)
            .replacingOccurrences(of: "Template=release.template", with: "Template=templates/r.template")
        try text.write(toFile: tmp.file("j/r.jigdo"), atomically: true, encoding: .utf8)
        let e = try #require(throws: JigdoError.self) { try JigdoImage.open(jigdoPath: tmp.file("j/r.jigdo")) }
        #expect(e.description.contains("template not found") && e.description.contains(tmp.file("j/templates/r.template")), "\(e)")
        try copyTree(v.template, to: tmp.file("j/templates/r.template"))
        let image = try JigdoImage.open(jigdoPath: tmp.file("j/r.jigdo"))
        #expect(image.templatePath == tmp.file("j/templates/r.template"))
        #expect(image.templateCheck == .matched(.sha256))
    }

    @Test("--template overrides the one beside the .jigdo; a mismatch names the expected sum, not the file's own")
    func overrideAndMismatch() throws {
        let release = try Fixtures.release()
        let v = release.variant("jf-md5-gz")
        let other = release.variant("jf-md5-bz2")
        let image = try JigdoImage.open(jigdoPath: v.jigdo, templatePath: v.template)
        #expect(image.templatePath == v.template)
        let expected = try #require(image.descriptor.image.templateChecksums[.md5])
        let actual = try ReadOnlyFile(path: other.template).checksum(.md5)
        let e = try #require(throws: JigdoError.self) { try JigdoImage.open(jigdoPath: v.jigdo, templatePath: other.template) }
        #expect(e.kind == .checksumMismatch)
        #expect(e.description.contains(expected.base64) && !e.description.contains(actual.base64) && e.description.contains(other.template), "\(e)")
        // Without the check the other (valid) template opens.
        #expect(try JigdoImage.open(jigdoPath: v.jigdo, templatePath: other.template, verifyTemplateChecksum: false).templateCheck == .notGiven)
        // A libjte SHA256 .jigdo gives Template-SHA256Sum.
        let jte = try JigdoImage.open(jigdoPath: release.variant("jte-sha256-bz2").jigdo)
        #expect(jte.templateCheck == .matched(.sha256))
    }

    @Test("the fixture templates parse as their generator made them", arguments: FixtureVariant.names)
    func templateFacts(_ name: String) throws {
        let v = try Fixtures.release().variant(name)
        let info = try TemplateInfo.read(path: v.template)
        let iso = try ReadOnlyFile(path: v.iso)
        #expect(info.imageLength == iso.size)
        #expect(info.checksumKind == v.checksumKind)
        #expect(info.imageChecksum == (try iso.checksum(v.checksumKind)))
        #expect(!info.chunks.isEmpty && info.chunks.allSatisfy { $0.compression == (v.usesBzip2 ? .bzip2 : .zlib) })
        // The layout covers the image without gaps and is searchable.
        var offset: Int64 = 0
        for (i, e) in info.layout.enumerated() {
            #expect(e.imageOffset == offset && e.length > 0)
            #expect(info.layoutIndex(containing: e.imageOffset) == i)
            #expect(info.layoutIndex(containing: e.imageOffset + e.length - 1) == i)
            offset += e.length
        }
        #expect(offset == info.imageLength)
        #expect(info.layoutIndex(containing: -1) == nil && info.layoutIndex(containing: info.imageLength) == nil)
        #expect(info.parts.count > 100)
        #expect(info.parts.allSatisfy { $0.length >= 1024 }, "jigdo's minimum part size")
    }
}
