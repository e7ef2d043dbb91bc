import Foundation
import ImageAssembly
import JigdoFormat
import PartSources
import TestSupport

/// An image opened the way the CLI opens it: template verified, local parts from the jigdo's
/// own locations, `--map` (label -> dir, tried first) and `--scan` dirs.
struct OpenedImage {
    let image: JigdoImage
    let parts: LocalParts
    let reader: ImageReader
    let resolver: LocationResolver
}

/// `streamedWindow`: decompress every template chunk as a stream in windows of this size
/// (normally only chunks over 4 MiB are).
func openImage(jigdo: String, template: String? = nil, map: [String: String] = [:], scan: [String] = [],
               cacheBudget: Int = 32 << 20, streamedWindow: Int? = nil,
               scanProgress: LocalParts.ScanProgress? = nil) throws -> OpenedImage {
    let image = try JigdoImage.open(jigdoPath: jigdo, templatePath: template)
    var resolver = LocationResolver(descriptor: image.descriptor)
    for (label, dir) in map {
        let d = dir.hasSuffix("/") ? dir : dir + "/"
        resolver.prepend[label, default: []].append(JigdoLocation(value: "file:" + d, base: d))
    }
    let parts = try LocalParts(template: image.template, resolver: resolver, scanDirectories: scan, progress: scanProgress)
    let templateReader = streamedWindow.map {
        TemplateDataReader(file: image.templateFile, info: image.template, cacheBudget: cacheBudget, largeChunkThreshold: 0, windowSize: $0)
    } ?? TemplateDataReader(file: image.templateFile, info: image.template, cacheBudget: cacheBudget)
    let reader = ImageReader(template: templateReader, parts: parts)
    return OpenedImage(image: image, parts: parts, reader: reader, resolver: resolver)
}

func openImage(_ v: FixtureVariant, cacheBudget: Int = 32 << 20, streamedWindow: Int? = nil) throws -> OpenedImage {
    try openImage(jigdo: v.jigdo, cacheBudget: cacheBudget, streamedWindow: streamedWindow)
}

/// Streams the whole image and compares it, buffer by buffer, with `iso`.
/// Returns (checksum matched the template's, bytes equal to the ISO).
func streamAndCompare(_ reader: ImageReader, with iso: String) throws -> (matches: Bool, equal: Bool) {
    let original = try ReadOnlyFile(path: iso)
    var offset: Int64 = 0
    var equal = original.size == reader.size
    let result = try ImageStreamer(reader: reader).stream(sink: { data in
        guard equal else { return }
        let n = data.count
        if offset + Int64(n) > original.size { equal = false; return }
        let want = try original.read(at: offset, count: n)
        if !want.withUnsafeBytes({ bytesEqual($0, data) }) { equal = false }
        offset += Int64(n)
    })
    return (result.matches, equal && offset == original.size)
}

/// The local path (from the jigdo's own `file:` server) of part `index`.
func treePath(ofPart index: Int, in opened: OpenedImage) -> String? {
    let sum = opened.image.template.parts[index].checksum
    for loc in opened.resolver.locations(forPart: sum) {
        if case .local(let p) = loc { return p }
    }
    return nil
}

func quote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

/// A copy of the variant's .jigdo in `tmp/away/j/`, where its `file:../tree/` server resolves
/// to a directory that does not exist: parts then come only from --scan / --map.
func movedJigdo(_ v: FixtureVariant, into tmp: TemporaryDirectory) throws -> String {
    let dir = tmp.file("away/j")
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try copyTree(v.jigdo, to: dir + "/moved.jigdo")
    return dir + "/moved.jigdo"
}
