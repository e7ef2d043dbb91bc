import ArgumentParser
import Foundation
import CPosix
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
        subcommands: [Info.self, MakeImage.self, Verify.self, Mount.self, Status.self, Prefetch.self, Umount.self, Cache.self, ListCommand.self, Cat.self, Copy.self, ConfigCommand.self]
    )

    /// Runs a command; every failure becomes one line on stderr and a non-zero exit.
    ///
    /// Before ArgumentParser sees the command line: a mount in any of the forms mount(8),
    /// mount.fuse3 and fstab use becomes one `jigdofs mount` command line (MountInvocation), and
    /// the configuration files' settings are put in front of the command's own arguments.
    static func main() {
        let environment = ProcessInfo.processInfo.environment
        boundMallocArenas(environment)
        LogSetup.bootstrap(level: environment["JIGDOFS_DEBUG"] != nil ? .debug : .warning)
        let invokedAs = baseName(CommandLine.arguments.first ?? "jigdofs")
        var arguments = Array(CommandLine.arguments.dropFirst())
        // Before any thread or fork: `ps` must not show a password given in a URL.
        ArgumentArea.maskPasswords(CommandLine.arguments)
        do {
            let subcommands = OptionCatalog.subcommands(of: JigdoFS.self)
            var fake = false
            if let mount = try MountInvocation.normalize(arguments, invokedAs: invokedAs, subcommands: Set(subcommands.keys)) {
                arguments = mount.arguments
                fake = mount.fake
            }
            arguments = try applyConfiguration(to: arguments, subcommands: subcommands)
            var command = try parseAsRoot(arguments)
            // mount -f: everything checked, nothing mounted.
            if fake { return }
            try command.run()
        } catch let error as JigdoError {
            writeError(RawNames.printable("\(error)"))
            Foundation.exit(error.exitCode)
        } catch let error as CommandFailure {
            writeError(error.printableMessage)
            Foundation.exit(error.code)
        } catch where exitCode(for: error) == .validationFailure {
            // Usage errors (a bad option or option value, see OptionValues): one line, exit 64,
            // like every other failure; the usage text would bury it (--help shows it).
            writeError(RawNames.printable(message(for: error)))
            Foundation.exit(ExitCode.validationFailure.rawValue)
        } catch where exitCode(for: error) != .success {
            // ArgumentParser's own message may quote an argument (a URL with its password).
            FileHandle.standardError.write(Data((Passwords.masked(text: fullMessage(for: error)) + "\n").utf8))
            Foundation.exit(exitCode(for: error).rawValue)
        } catch {
            exit(withError: error)
        }
    }

    /// The one error line of a failed command; a URL's password in it is masked.
    static func writeError(_ message: String) {
        FileHandle.standardError.write(Data("jigdofs: \(Passwords.masked(text: message))\n".utf8))
    }

    /// The configuration's arguments for the (innermost) subcommand the command line names,
    /// inserted right after the subcommand's name, so the command line's own come later.
    static func applyConfiguration(to arguments: [String], subcommands: [String: any ParsableCommand.Type]) throws -> [String] {
        var command: (any ParsableCommand.Type)?
        var table = subcommands
        var depth = 0
        while depth < arguments.count, let next = table[arguments[depth]] {
            command = next
            depth += 1
            table = OptionCatalog.subcommands(of: next)
        }
        guard let command, ObjectIdentifier(command) != ObjectIdentifier(ConfigCommand.self) else { return arguments }
        let rest = Array(arguments[depth...])
        if rest.contains("--help") || rest.contains("-h") { return arguments }
        let config = try Configuration.load()
        // No configuration file: nothing to add (and no need for the option catalog, which
        // dumps the command's help).
        guard config.files.contains(where: \.present) else { return arguments }
        let catalog = OptionCatalog(command)
        let added = config.arguments(for: catalog, commandLine: rest)
        return Array(arguments[..<depth]) + added + rest
    }
}

/// A failure the CLI reports with a specific exit code. Beside `JigdoError` (whose kind gives
/// the exit code, `exitCode` below) for the lines only the CLI writes: advice added to an
/// error (exit 2 with "use --scan DIR..."), a choice the user must make (exit 64), several
/// lines at once.
struct CommandFailure: Error {
    var message: String
    var code: Int32
    /// Set by `init(lines:code:)`: `message` is lines already made printable.
    private var multiline = false

    init(message: String, code: Int32) {
        self.message = message
        self.code = code
    }

    /// Several lines at once (a header and a list): each is made printable on its own, so a
    /// name inside one cannot add a line.
    init(lines: [String], code: Int32) {
        self.message = lines.map(RawNames.printable).joined(separator: "\n")
        self.code = code
        self.multiline = true
    }

    /// What is written to stderr: one line (control characters escaped, see
    /// `RawNames.printable`), or the lines of `init(lines:code:)`.
    var printableMessage: String { multiline ? message : RawNames.printable(message) }
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

/// glibc's malloc gives each thread that contends an arena of its own (up to 8 a core) and keeps
/// what is freed in it, and raises its mmap threshold after a large block is freed, so the 1 MiB
/// buffers of FUSE reads and downloads end up kept in every arena. A mount's daemon runs a FUSE
/// worker pool, a transfer thread and dispatch queues: after a 4 GiB read of a 50,000-part image
/// it held 63.8 MiB (70.3 MiB after 1,000 random reads). An arena a core (at least 2, at most 8)
/// and a fixed 256 KiB threshold (large buffers are mapped and given back when freed): 54.9 and
/// 60.6 MiB, no slower (`bench/scale.sh`). The MALLOC_ARENA_MAX and MALLOC_MMAP_THRESHOLD_
/// environment variables still decide when set.
private func boundMallocArenas(_ environment: [String: String]) {
    if environment["MALLOC_ARENA_MAX"] == nil {
        _ = jfs_malloc_arena_max(Int32(max(2, min(8, ProcessInfo.processInfo.activeProcessorCount))))
    }
    if environment["MALLOC_MMAP_THRESHOLD_"] == nil { _ = jfs_malloc_mmap_threshold(256 << 10) }
}
