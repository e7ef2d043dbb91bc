import ArgumentParser
import Foundation
import ImageAssembly
import JigdoFormat

struct MakeImage: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make-image",
        abstract: "Write the image to a file and check its checksum.",
        discussion: "The file appears only when it is complete and its checksum matched; nothing half-written is left behind.")

    @OptionGroup var options: SourceOptions

    @Option(name: .shortAndLong, help: ArgumentHelp("The image file to write.", valueName: "FILE"))
    var output: String

    @Flag(name: .long, help: "Overwrite FILE if it exists.")
    var force = false

    func run() throws {
        if fileExists(output) && !force {
            throw CommandFailure(message: "\(output): already exists; use --force to overwrite it", code: 1)
        }
        if isDirectory(output) {
            throw CommandFailure(message: "\(output): is a directory", code: 1)
        }
        let source = try options.openSource()
        let (image, reader) = (source.image, source.reader)
        try source.prepareFullRead()

        let out = try PartialOutputFile(finalPath: output)
        defer { out.discard() }
        let bar = ProgressBar(title: "Writing")
        let result = try ImageStreamer(reader: reader).stream(
            sink: { try out.write($0) },
            progress: { bar.update(done: $0, total: reader.size) })
        bar.finish()
        guard result.matches else {
            throw CommandFailure(
                message: "\(output): image checksum \(result.checksum.base64) does not match the template's \(image.template.imageChecksum.base64); nothing written",
                code: 3)
        }
        try out.commit()
        print("\(output): \(reader.size) bytes written, \(image.template.checksumKind.rawValue) \(result.checksum.hex) matches the template")
    }
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read the whole image and check it against the template's image checksum.",
        discussion: "Exit status 0 only when the checksum matches.")

    @OptionGroup var options: SourceOptions

    func run() throws {
        let source = try options.openSource()
        let (image, reader) = (source.image, source.reader)
        try source.prepareFullRead()
        let bar = ProgressBar(title: "Verifying")
        let result = try ImageStreamer(reader: reader).stream(
            sink: { _ in },
            progress: { bar.update(done: $0, total: reader.size) })
        bar.finish()
        let kind = image.template.checksumKind.rawValue
        guard result.matches else {
            throw CommandFailure(
                message: "\(image.imageName): BAD: \(kind) \(result.checksum.hex), template says \(image.template.imageChecksum.hex)",
                code: 3)
        }
        print("\(image.imageName): OK (\(kind) \(result.checksum.hex), \(reader.size) bytes)")
    }
}
