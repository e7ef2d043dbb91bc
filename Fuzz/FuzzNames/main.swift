import Glibc
import ISO9660
import JigdoFormat
// libFuzzer target: names from untrusted input as they are shown. The first input byte picks
// what the rest is: even, a .jigdo (Filename=, Template=, labels, part paths, warnings, the
// parser's errors); odd, an ISO 9660 image (Rock Ridge, Joliet and plain names, symlink
// targets, `jigdofs ls` lines, the reader's errors). Every such text, made printable the way
// the log writer and the CLI do (`RawNames.printable`, `printableName`), must hold no control
// character and no raw byte; `printable` must leave its own output unchanged; and a name shown
// by `printableName` must decode back to exactly the name's bytes. Any failure traps.
// Built only by scripts/fuzz.sh (JIGDOFS_FUZZ=1, -sanitize=fuzzer).

/// The input as an image.
final class MemoryImage: ImageByteSource, @unchecked Sendable {
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    var size: Int64 { Int64(bytes.count) }
    func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard offset >= 0, offset < size else { return 0 }
        let n = min(buffer.count, bytes.count - Int(offset))
        bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + Int(offset), byteCount: n) }
        return n
    }
}

/// Whether `text` may reach a terminal or a log line: no C0, DEL or C1 control character and
/// no raw-byte scalar (U+10FE80...U+10FEFF).
func isPrintable(_ text: String) -> Bool {
    !text.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || (0x10FE80...0x10FEFF).contains($0.value) }
}

/// The bytes a `printableName` text stands for: `\\` a backslash, `\xHH` the byte HH, anything
/// else its UTF-8.
func unescapeName(_ shown: String) -> [UInt8]? {
    var out: [UInt8] = []
    var s = Array(shown.unicodeScalars)[...]
    while let c = s.popFirst() {
        guard c == "\\" else {
            out += Array(String(c).utf8)
            continue
        }
        guard let next = s.popFirst() else { return nil }
        if next == "\\" { out.append(0x5C); continue }
        guard next == "x", s.count >= 2, let b = UInt8(String(String.UnicodeScalarView(s.prefix(2))), radix: 16) else { return nil }
        s = s.dropFirst(2)
        out.append(b)
    }
    return out
}

func check(text: String) {
    let shown = RawNames.printable(text)
    if !isPrintable(shown) { fatalError("printable left a control character: \(Array(shown.utf8))") }
    if RawNames.printable(shown) != shown { fatalError("printable is not idempotent: \(Array(shown.utf8))") }
}

func check(name: String) {
    check(text: name)
    let shown = RawNames.printableName(name)
    if !isPrintable(shown) { fatalError("printableName left a control character: \(Array(shown.utf8))") }
    if unescapeName(shown) != RawNames.fileSystemBytes(name) {
        fatalError("printableName does not stand for its name: \(Array(name.utf8)) shown as \(Array(shown.utf8))")
    }
}

func fuzzJigdo(_ bytes: ArraySlice<UInt8>) {
    let text = RawNames.decode(Array(bytes)).text
    let d: JigdoDescriptor
    do {
        d = try JigdoDescriptor.parse(text: text, path: "/nonexistent-fuzz/x.jigdo", base: "/nonexistent-fuzz/")
    } catch {
        check(text: "\(error)")
        return
    }
    for image in d.images {
        check(name: image.name)
        check(name: image.filename)
        check(name: image.template.value)
        image.shortInfo.map { check(text: $0) }
        image.info.map { check(text: $0) }
    }
    for (label, values) in d.servers.prefix(200) {
        check(name: label)
        for v in values.prefix(20) { check(name: v.value) }
    }
    for (_, values) in d.parts.prefix(200) {
        for v in values.prefix(20) { check(name: v.value) }
    }
    for w in d.warnings.prefix(100) { check(text: w) }
    var resolver = LocationResolver(descriptor: d)
    resolver.allowLocalFromJigdo = false
    for (_, values) in d.parts.prefix(50) {
        for v in values.prefix(4) {
            for r in resolver.resolve(v).prefix(8) { check(text: r.description) }
        }
    }
    if let problem = resolver.labelProblem { check(text: problem) }
}

func fuzzISO9660(_ bytes: ArraySlice<UInt8>) {
    let image = MemoryImage(Array(bytes))
    for (rr, joliet) in [(true, true), (false, true), (false, false)] {
        let volume: ISO9660Volume
        do {
            volume = try ISO9660Volume.open(image, name: "fuzz.iso", cacheBudget: 1 << 20, useRockRidge: rr, useJoliet: joliet)
        } catch {
            check(text: "\(error)")
            continue
        }
        var entries = 0
        do {
            try ISOListing.walk(volume, from: volume.root, path: "/") { path, _, children in
                let some = Array(children.prefix(500))
                for c in some {
                    entries += 1
                    if entries > 3000 { return }
                    check(name: c.name)
                    c.symlinkTarget.map { check(name: $0) }
                }
                check(name: path)
                for line in ISOListing.lines(some, long: true) + ISOListing.lines(some, long: false) {
                    if !isPrintable(line) { fatalError("ls line with a control character: \(Array(line.utf8))") }
                }
                if let c = some.first {
                    do { _ = try volume.lookup(path + "/" + c.name + "/x", followSymlinks: true) } catch { check(text: "\(error)") }
                }
            }
        } catch {
            check(text: "\(error)")
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNames(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    guard let mode = bytes.first else { return 0 }
    if mode & 1 == 0 { fuzzJigdo(bytes.dropFirst()) } else { fuzzISO9660(bytes.dropFirst()) }
    return 0
}

// SwiftPM gives every executable a main of its own; it hands over to libFuzzer's driver (linked
// in by -sanitize=fuzzer), which takes libFuzzer's usual options and corpus directories.
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                     _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(runFuzzerDriver(&argc, &argv, fuzzNames))
