import ArgumentParser
import Foundation
import JigdoFormat
import Logging

@main
struct JigdoFS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jigdofs",
        abstract: "Use jigdo images (.jigdo + .template) as if they were the image files.",
        discussion: """
            A .jigdo file lists the parts (packages) of an image; the .template holds everything \
            else. jigdofs reads any byte range of the image from the template and from local \
            copies of the parts, without building the whole image first.
            """,
        version: "0.1.0",
        subcommands: [Info.self, MakeImage.self, Verify.self, Mount.self, Status.self, Prefetch.self, Umount.self, Cache.self, List.self, Cat.self, Copy.self]
    )

    /// Runs a command; every failure becomes one line on stderr and a non-zero exit.
    static func main() {
        LoggingSystem.bootstrap { label in
            FoldingLogHandler(label: label, level: ProcessInfo.processInfo.environment["JIGDOFS_DEBUG"] != nil ? .debug : .warning)
        }
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let error as JigdoError {
            FileHandle.standardError.write(Data("jigdofs: \(error)\n".utf8))
            Foundation.exit(error.exitCode)
        } catch let error as CommandFailure {
            FileHandle.standardError.write(Data("jigdofs: \(error.message)\n".utf8))
            Foundation.exit(error.code)
        } catch where exitCode(for: error) == .validationFailure {
            // Usage errors (a bad option or option value, see OptionValues): one line, exit 64,
            // like every other failure; the usage text would bury it (--help shows it).
            FileHandle.standardError.write(Data("jigdofs: \(message(for: error))\n".utf8))
            Foundation.exit(ExitCode.validationFailure.rawValue)
        } catch {
            exit(withError: error)
        }
    }
}

/// A failure the CLI reports with a specific exit code.
struct CommandFailure: Error {
    var message: String
    var code: Int32
}

extension JigdoError {
    /// 1: error; 2: parts missing; 3: bad checksum. (Usage errors are ArgumentParser's 64.)
    var exitCode: Int32 {
        switch kind {
        case .partUnavailable: return 2
        case .checksumMismatch: return 3
        default: return 1
        }
    }
}
