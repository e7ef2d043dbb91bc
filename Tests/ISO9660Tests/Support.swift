import Foundation
import ImageAssembly
import ISO9660
import JigdoFormat
import PartSources
import Synchronization
import TestSupport
import Testing

// The fixture release comes from TestSupport (shared with the other targets); the ISO-only
// fixtures below are built once per test run with the real writers into the per-process temp
// dir, removed at exit.

let fixtureRoot: String = try! ProcessTemp.directory("iso9660")

/// Runs `script` (bash, strict) in a new directory `dir`; the result is `dir`.
func scriptFixture(_ dir: String, _ script: String) -> Result<String, any Error> {
    Result {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Subprocess.shell(script, cwd: dir)
        return dir
    }
}

/// The release built by Tests/Fixtures/make-release.sh (ISO + jigdo-file and libjte variants):
/// its OUT directory.
let releaseFixture: Result<String, any Error> = Result { try Fixtures.release(files: 40, seed: 7).root }

/// A small tree with what Rock Ridge can express: symlinks (short, absolute, over 255 bytes so
/// SL continues), deep directories, modes incl. setuid/sticky, a fifo, a hard link, a name of
/// 204 bytes (NM in a continuation area), quotes, UTF-8. Built as rr.iso (-R -J), reloc.iso
/// (deep directories relocated: CL/RE/PL), joliet.iso (-J only, a tree without symlinks), and
/// by two other writers: geni.iso (genisoimage: RRIP 1.09, its own rr_moved relocation, and an
/// overlong SL entry it gets wrong) and bsd.iso (libarchive's bsdtar); zisofs.iso holds
/// zisofs-compressed files (xorriso -zisofs).
let rockRidgeFixture: Result<String, any Error> = {
    let dir = fixtureRoot + "/rr"
    let script = #"""
    mkdir -p src && cd src
    mkdir -p a/b/c/d/e/f/g/h/i/j/k/l/m
    echo deep > a/b/c/d/e/f/g/h/i/j/k/l/m/deep.txt
    ln -s a/b/c target-rel
    ln -s /etc/passwd abs-link
    ln -s "$(python3 -c 'print("/".join(["component%03d" % i for i in range(40)]))')" long-link
    python3 -c 'open("n" * 200 + ".txt", "w").write("long name\n")'
    echo secret > mode600 && chmod 600 mode600
    echo s > suid && chmod 4755 suid
    mkdir sticky && chmod 1777 sticky
    mkfifo fifo
    echo x > "weird 'quote\" name"
    echo été > "ünïcödé-名前.txt"
    ln mode600 hardlink
    ln -s a/b/../b/c/./d dotty
    ln -s loop1 loop2 && ln -s loop2 loop1
    head -c 300000 /dev/urandom > random.bin
    touch empty
    cd ..
    xorriso -as mkisofs -quiet -R -J -o rr.iso src 2>/dev/null
    xorriso -as mkisofs -quiet -R -J -rr_reloc_dir RR_MOVED -o reloc.iso src 2>/dev/null
    genisoimage -quiet -R -J -joliet-long -o geni.iso src 2>/dev/null
    bsdtar -c --format iso9660 -f bsd.iso -C src .
    mkdir -p zsrc
    python3 -c 'open("zsrc/text.txt", "w").write("".join("line %d of a compressible text\\n" % i for i in range(40000)))'
    python3 -c 'open("zsrc/zeros-inside.bin", "wb").write(b"start" + bytes(300000) + b"end")'
    head -c 70000 /dev/urandom > zsrc/random.bin
    xorriso -outdev zisofs.iso -map zsrc / -zisofs level=6 -set_filter_r --zisofs / -- 2>/dev/null
    mkdir -p jsrc/Sub\ Dir/deeper && echo one > jsrc/Sub\ Dir/deeper/Mixed.Case.txt && echo two > jsrc/readme
    xorriso -as mkisofs -quiet -J -o joliet.iso jsrc 2>/dev/null
    """#
    return scriptFixture(dir, script)
}()

/// An ISO (iso-level 3) holding a sparse file just over 4 GiB, so xorriso writes it as two
/// extents. Written sparse (dd conv=sparse), so it takes little disk.
let multiExtentFixture: Result<String, any Error> = {
    let dir = fixtureRoot + "/big"
    let script = """
    mkdir -p src
    truncate -s 4097M src/huge.bin
    printf 'HEAD' | dd of=src/huge.bin conv=notrunc status=none
    printf 'EDGE1234' | dd of=src/huge.bin bs=1 seek=$((4294965248 - 4)) conv=notrunc status=none
    printf 'TAIL' | dd of=src/huge.bin bs=1 seek=$((4097 * 1048576 - 4)) conv=notrunc status=none
    echo small > src/small.txt
    xorriso -as mkisofs -quiet -R -iso-level 3 -o - src 2>/dev/null | dd of=big.iso bs=1M conv=sparse iflag=fullblock status=none
    """
    return scriptFixture(dir, script)
}()

/// One line of `xorriso -find / -exec lsdl`.
struct LsdlEntry: Equatable, CustomStringConvertible {
    var mode: String
    var size: Int64
    var target: String?
    var description: String { "\(mode) \(size)\(target.map { " -> \($0)" } ?? "")" }
}

/// Path -> entry, from xorriso's own reading of the image.
func xorrisoListing(_ iso: String) throws -> [String: LsdlEntry] {
    var result: [String: LsdlEntry] = [:]
    for e in try Xorriso.lsdl(iso) {
        result[e.path] = LsdlEntry(mode: e.mode, size: e.size, target: e.target)
    }
    return result
}

/// Path -> entry, from our reader, in the same form (directories with size 0, as xorriso).
func ourListing(_ volume: ISO9660Volume) throws -> [String: LsdlEntry] {
    var result: [String: LsdlEntry] = ["/": LsdlEntry(mode: ISOListing.modeString(volume.root), size: 0)]
    try ISOListing.walk(volume, from: volume.root, path: "/") { dirPath, _, children in
        for c in children {
            let p = dirPath == "/" ? "/" + c.name : dirPath + "/" + c.name
            let size: Int64 = c.type == .regular ? c.size : 0
            result[p] = LsdlEntry(mode: ISOListing.modeString(c), size: size, target: c.symlinkTarget)
        }
    }
    return result
}

/// The image of an in-memory byte array (for corrupting images).
final class MemoryImage: ImageByteSource {
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    var size: Int64 { Int64(bytes.count) }
    func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard offset < size, offset >= 0 else { return 0 }
        let n = min(buffer.count, bytes.count - Int(offset))
        bytes.withUnsafeBytes { src in
            buffer.baseAddress!.copyMemory(from: src.baseAddress! + Int(offset), byteCount: n)
        }
        return n
    }
}

/// A jigdo variant of the release opened with local parts from the tree.
func openJigdo(_ variant: String, release: String, parts: (LocalParts) -> any PartSource = { $0 }) throws -> (ImageReader, LocalParts) {
    let image = try JigdoImage.open(jigdoPath: "\(release)/\(variant)/release.jigdo")
    let local = try LocalParts(template: image.template, resolver: LocationResolver(descriptor: image.descriptor),
                               scanDirectories: [release + "/tree"])
    let reader = ImageReader(template: TemplateDataReader(file: image.templateFile, info: image.template), parts: parts(local))
    return (reader, local)
}
