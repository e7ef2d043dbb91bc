import ArgumentParser
import Foundation
import ImageAssembly
import JigdoFormat

struct MakeImage: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make-image",
        abstract: "Write the image to a file and check its checksum.",
        discussion: """
            The file appears only when it is complete and its checksum matched; nothing \
            half-written is left behind. Without -o the image is written under its own name \
            ([Image] Filename) in the current directory; -o DIR writes that name inside DIR; \
            -o - streams the image to standard output (progress on stderr; the checksum is still \
            checked and a mismatch exits 3).
            """)

    @OptionGroup var options: SourceOptions

    @Option(name: .shortAndLong, help: ArgumentHelp("Where to write the image: a file, a directory, or - for standard output (default: the image's name in the current directory).", valueName: "FILE|DIR|-"))
    var output: String?

    @Flag(name: .long, help: "Overwrite the output file if it exists.")
    var force = false

    /// The output path once the image's name is known.
    func outputPath(imageName: String?) throws -> String? {
        guard let output, output != "-" else {
            guard let imageName else { return nil }
            return try safeImageName(imageName)
        }
        if isDirectory(output) {
            guard let imageName else { return nil }
            return (output.hasSuffix("/") ? output : output + "/") + (try safeImageName(imageName))
        }
        return output
    }

    /// The image's name as a file name of the current directory (a remote .jigdo chooses it).
    func safeImageName(_ name: String) throws -> String {
        let base = baseName(name)
        guard !base.isEmpty, base != ".", base != "..", !base.hasPrefix(".") else {
            throw CommandFailure(message: "the image's name '\(name)' is not usable as a file name; give -o FILE", code: 1)
        }
        return base
    }

    func refuseExisting(_ path: String) throws {
        if isDirectory(path) {
            throw CommandFailure(message: "\(path): is a directory", code: 1)
        }
        if fileExists(path) && !force {
            throw CommandFailure(message: "\(path): already exists; use --force to overwrite it", code: 1)
        }
    }

    func run() throws {
        if output == "-" { return try writeToStandardOutput() }
        // A plain output file is checked before anything is opened or downloaded.
        if let early = try outputPath(imageName: nil) { try refuseExisting(early) }
        let source = try options.openSource()
        let (image, reader) = (source.image, source.reader)
        let path = try outputPath(imageName: image.imageName)!
        try refuseExisting(path)
        try source.prepareFullRead()

        let out = try PartialOutputFile(finalPath: path)
        defer { out.discard() }
        let cacheNote = source.keptPartsNote
        Interrupt.onInterrupt { "nothing written to \(path)\(cacheNote); run the same command again to go on" }
        let bar = ProgressBar(title: "Writing")
        let parts = PartsBeforeOffset(image.template)
        let result = try ImageStreamer(reader: reader).stream(
            sink: { try out.write($0) },
            progress: { bar.update(done: $0, total: reader.size, parts: parts.progress($0)) })
        bar.finish()
        guard result.matches else {
            throw CommandFailure(
                message: "\(path): image checksum \(result.checksum.base64) does not match the template's \(image.template.imageChecksum.base64); nothing written",
                code: 3)
        }
        try out.commit()
        printLine("\(path): \(formatBytes(reader.size)) written, \(image.template.checksumKind.rawValue) \(result.checksum.hex) matches the template")
    }

    /// `-o -`: the image to standard output as it is assembled; the checksum is checked at the
    /// end (the reader of the pipe must then discard what it got).
    func writeToStandardOutput() throws {
        if isatty(1) != 0 {
            throw CommandFailure(message: "-o -: standard output is a terminal; redirect it to a file, a pipe or a device", code: 1)
        }
        let source = try options.openSource()
        let (image, reader) = (source.image, source.reader)
        try source.prepareFullRead()
        signal(SIGPIPE, SIG_IGN)
        let cacheNote = source.keptPartsNote
        Interrupt.onInterrupt { "the image on standard output is incomplete\(cacheNote); run the same command again to go on" }
        let bar = ProgressBar(title: "Writing")
        let parts = PartsBeforeOffset(image.template)
        let result = try ImageStreamer(reader: reader).stream(
            sink: { bytes in
                if let e = writeFully(1, bytes) {
                    throw CommandFailure(message: "standard output: \(e.text); the image is incomplete", code: 1)
                }
            },
            progress: { bar.update(done: $0, total: reader.size, parts: parts.progress($0)) })
        bar.finish()
        let kind = image.template.checksumKind.rawValue
        guard result.matches else {
            throw CommandFailure(
                message: "standard output: image checksum \(kind) \(result.checksum.hex) does not match the template's \(image.template.imageChecksum.hex); the bytes written are wrong, discard them",
                code: 3)
        }
        writeStderr(RawNames.printable("\(image.imageName): \(formatBytes(reader.size)) written to standard output, \(kind) \(result.checksum.hex) matches the template") + "\n")
    }
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read the whole image and check it against the template's image checksum.",
        discussion: "Exit status 0 only when the checksum matches.")

    @OptionGroup var options: SourceOptions

    @Flag(name: .long, help: "List every part that is missing (without it, a list longer than 20 lines is cut short).")
    var listMissing = false

    func run() throws {
        MissingReport.listAll = listMissing
        let source = try options.openSource()
        let (image, reader) = (source.image, source.reader)
        try source.prepareFullRead()
        let cacheNote = source.keptPartsNote
        Interrupt.onInterrupt { "not verified\(cacheNote); run the same command again to go on" }
        let bar = ProgressBar(title: "Verifying")
        let parts = PartsBeforeOffset(image.template)
        let result = try ImageStreamer(reader: reader).stream(
            sink: { _ in },
            progress: { bar.update(done: $0, total: reader.size, parts: parts.progress($0)) })
        bar.finish()
        let kind = image.template.checksumKind.rawValue
        guard result.matches else {
            throw CommandFailure(
                message: "\(image.imageName): BAD: \(kind) \(result.checksum.hex), template says \(image.template.imageChecksum.hex)",
                code: 3)
        }
        printLine("\(image.imageName): OK (\(kind) \(result.checksum.hex), \(formatBytes(reader.size)))")
    }
}
