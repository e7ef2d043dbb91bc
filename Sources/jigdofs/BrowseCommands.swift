#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import ImageAssembly
import ISO9660
import JigdoFormat
import PartSources

/// Opens the ISO 9660 file system of SOURCE: a .jigdo (through the image reader, so only the
/// template and the parts actually touched are read) or, for convenience, a plain ISO file.
func openVolume(_ options: SourceOptions) throws -> ISO9660Volume {
    if looksLikeISO9660File(options.source) {
        return try ISO9660Volume.open(ImageFile(path: options.source), name: baseName(options.source))
    }
    let source = try options.openSource()
    return try ISO9660Volume.open(source.reader, name: source.image.imageName)
}

/// ISO 9660 errors become the CLI's one-line failures; a part that is needed but missing
/// (directories normally lie in the template, but need not) says what to do.
func withISOErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as ISO9660Error {
        throw CommandFailure(message: e.description, code: 1)
    } catch let e as JigdoError where e.kind == .partUnavailable {
        throw CommandFailure(message: "\(e.description); use --scan DIR, --map LABEL=DIR or --scan-image OLD.iso", code: 2)
    }
}

struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List the files inside the image (ISO 9660 with Rock Ridge or Joliet).",
        discussion: """
            Reads only the image's directory records, which normally lie in the template: no \
            parts are needed. SOURCE may also be a plain ISO file. Times are local, sizes exact. \
            Control characters and bytes that are not UTF-8 in names are shown as \\xHH, a \
            backslash as \\\\ (as ls -b does).
            """)

    @OptionGroup var options: SourceOptions

    @Argument(help: "A path inside the image.")
    var path: String = "/"

    @Flag(name: .customShort("l"), help: "Long listing: mode, links, owner, group, size, time, symlink target.")
    var long = false

    @Flag(name: .customShort("R"), help: "List subdirectories recursively.")
    var recursive = false

    @Flag(name: .customShort("a"), help: "Accepted for ls habits (nothing inside an image is hidden).")
    var all = false

    @Flag(name: .customShort("1"), help: "One name per line (what the short listing does anyway).")
    var onePerLine = false

    func run() throws {
        try withISOErrors {
            let volume = try openVolume(options)
            let entry = try volume.lookup(path)
            let display = path.hasPrefix("/") ? path : "/" + path
            guard entry.isDirectory else {
                var shown = entry
                shown.name = path
                printLine(ISOListing.lines([shown], long: long)[0])
                return
            }
            guard recursive else {
                for line in ISOListing.lines(ISOListing.sorted(try volume.list(entry)), long: long) { printLine(line) }
                return
            }
            var first = true
            try ISOListing.walk(volume, from: entry, path: display) { dirPath, _, children in
                if !first { printLine("") }
                first = false
                printLine("\(RawNames.printableName(dirPath)):")
                for line in ISOListing.lines(children, long: long) { printLine(line) }
            }
        }
    }
}

struct Cat: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cat",
        abstract: "Write one file from inside the image to standard output.",
        discussion: "Reads only the parts the file's own extents cover. SOURCE may also be a plain ISO file.")

    @OptionGroup var options: SourceOptions

    @Argument(help: "The path of the file inside the image.")
    var path: String

    func run() throws {
        try withISOErrors {
            let volume = try openVolume(options)
            let entry = try volume.lookup(path, followSymlinks: true)
            guard entry.type == .regular else {
                throw ISO9660Error(entry.isDirectory ? .isADirectory : .notFound, image: volume.name, path: path,
                                   entry.isDirectory ? "is a directory" : "is not a regular file")
            }
            let chunk = 1 << 20
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
            defer { buffer.deallocate() }
            var offset: Int64 = 0
            while offset < entry.size {
                let n: Int
                do {
                    n = try volume.read(entry, at: offset, into: buffer)
                } catch let e as JigdoError where e.kind == .partUnavailable {
                    throw CommandFailure(message: "\(volume.name): \(path): \(e.description); use --scan DIR, --map LABEL=DIR or --scan-image OLD.iso", code: 2)
                }
                guard n > 0 else { break }
                try writeAll(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                offset += Int64(n)
            }
        }
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        if let e = writeFully(1, bytes) { throw CommandFailure(message: "standard output: \(e.text)", code: 1) }
    }
}
