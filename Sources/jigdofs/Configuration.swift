import ArgumentParser
import Foundation
import JigdoFormat

/// jigdofs' configuration: `/etc/jigdofs.conf`, then `$XDG_CONFIG_HOME/jigdofs/config`
/// (`~/.config/jigdofs/config`), in the .jigdo file's INI syntax (read by `INIFile`, with
/// jigdo's quoting rules):
///
///     [Servers]
///     Debian=http://deb.debian.org/debian/     # like --server Debian=...
///     [Mirrors]
///     Debian=http://ftp.de.debian.org/debian/  # like --mirror Debian=...
///     [Defaults]
///     scan = /srv/mirror                       # any long option: --scan /srv/mirror
///     cache-size = 20G
///     offline = true                           # a flag: true/false
///
/// `[Defaults]` keys are the long option names of the commands (found through `OptionCatalog`,
/// so options added later work too); a command uses those it has. The user's file overrides
/// the system's per key (per label for servers and mirrors), the command line overrides both.
/// `JIGDOFS_SYSTEM_CONFIG` and `JIGDOFS_CONFIG` name other files (tests use them).
struct Configuration {
    struct Setting {
        /// The long option, without `--`.
        var option: String
        /// The option's value; nil for a flag that is set.
        var value: String?
        /// `FILE:LINE`.
        var origin: String
        /// For server/mirror settings: the label (overridden per label).
        var label: String?
    }

    var settings: [Setting] = []
    /// Every file looked at, and whether it was there.
    var files: [(path: String, present: Bool)] = []

    static func paths(environment: [String: String]) -> [String] {
        let system = environment["JIGDOFS_SYSTEM_CONFIG"] ?? "/etc/jigdofs.conf"
        let user: String
        if let explicit = environment["JIGDOFS_CONFIG"] {
            user = explicit
        } else if let xdg = environment["XDG_CONFIG_HOME"], xdg.hasPrefix("/") {
            user = xdg + "/jigdofs/config"
        } else {
            user = (environment["HOME"] ?? NSHomeDirectory()) + "/.config/jigdofs/config"
        }
        return [system, user].filter { !$0.isEmpty }
    }

    /// Reads both files (a missing file is no error; a bad line is, naming file and line).
    static func load(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Configuration {
        var config = Configuration()
        // Dumping every command's options costs a debug build most of a second: only when a
        // file is there to check against them.
        lazy var known = allOptions()
        for path in paths(environment: environment) {
            guard fileExists(path) else {
                config.files.append((path, false))
                continue
            }
            config.files.append((path, true))
            let layer = try parse(try INIFile.load(path: path), known: known)
            config.override(with: layer)
        }
        return config
    }

    /// The long options of every command, by name (a [Defaults] key must name one of them).
    static func allOptions() -> [String: OptionCatalog.Entry] {
        var out: [String: OptionCatalog.Entry] = [:]
        func visit(_ command: any ParsableCommand.Type) {
            let catalog = OptionCatalog(command)
            for name in catalog.names { out[name] = catalog[name] }
            for sub in command.configuration.subcommands { visit(sub) }
        }
        visit(JigdoFS.self)
        return out
    }

    static let sections = ["Servers", "Mirrors", "Defaults"]

    static func parse(_ file: INIFile, known: [String: OptionCatalog.Entry]) throws -> [Setting] {
        var out: [Setting] = []
        for entry in file.entries {
            let origin = "\(file.path):\(entry.line)"
            func fail(_ message: String) -> JigdoError {
                JigdoError(.syntax, path: file.path, "line \(entry.line): \(message)")
            }
            switch entry.section {
            case "Servers", "Mirrors":
                guard !entry.value.isEmpty else { throw fail("\(entry.key)= needs a URL or directory") }
                out.append(Setting(option: entry.section == "Servers" ? "server" : "mirror",
                                   value: "\(entry.key)=\(entry.value)", origin: origin, label: entry.key))
            case "Defaults":
                guard let option = known[entry.key] else {
                    let guess = closestName(to: entry.key, in: Array(known.keys))
                    throw fail("unknown setting '\(entry.key)' in [Defaults]\(guess.map { "; did you mean '\($0)'?" } ?? "")")
                }
                switch option.kind {
                case .flag:
                    switch entry.value.lowercased() {
                    case "true", "yes", "on", "1", "": out.append(Setting(option: entry.key, value: nil, origin: origin))
                    case "false", "no", "off", "0": out.append(Setting(option: entry.key, value: "false", origin: origin))
                    default: throw fail("\(entry.key) is a flag: true or false, got '\(entry.value)'")
                    }
                case .option:
                    guard !entry.value.isEmpty else { throw fail("\(entry.key) needs a value") }
                    out.append(Setting(option: entry.key, value: entry.value, origin: origin))
                }
            default:
                let guess = closestName(to: entry.section, in: sections)
                throw fail("unknown section [\(entry.section)] (known: \(sections.map { "[\($0)]" }.joined(separator: ", ")))\(guess.map { "; did you mean [\($0)]?" } ?? "")")
            }
        }
        return out
    }

    /// A later file's settings replace an earlier one's with the same key (and label).
    mutating func override(with layer: [Setting]) {
        let replaced = Set(layer.map { Self.key($0) })
        settings = settings.filter { !replaced.contains(Self.key($0)) } + layer
    }

    static func key(_ s: Setting) -> String { s.option + "\u{0}" + (s.label ?? "") }

    /// The arguments the settings add in front of `arguments` (the command line after the
    /// subcommand) for a command with `catalog`: none for an option the command line gives
    /// (or, for --server/--mirror, for a label it gives).
    func arguments(for catalog: OptionCatalog, commandLine arguments: [String]) -> [String] {
        var given = Set<String>()
        var givenLabels = Set<String>()
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            if a == "--" { break }
            if a.hasPrefix("--") {
                let body = a.dropFirst(2)
                let name = String(body.prefix { $0 != "=" })
                given.insert(name)
                var value: String?
                if let eq = body.firstIndex(of: "=") {
                    value = String(body[body.index(after: eq)...])
                } else if catalog[name]?.kind == .option, i + 1 < arguments.count {
                    value = arguments[i + 1]
                    i += 1
                }
                if name == "server" || name == "mirror", let value, let eq = value.firstIndex(of: "=") {
                    givenLabels.insert(name + "\u{0}" + value[..<eq])
                }
            }
            i += 1
        }
        var out: [String] = []
        for s in settings {
            guard let entry = catalog[s.option] else { continue }
            if let label = s.label {
                if givenLabels.contains(s.option + "\u{0}" + label) { continue }
            } else if given.contains(s.option) {
                continue
            }
            switch entry.kind {
            case .flag:
                if s.value == nil { out.append("--" + s.option) }
            case .option:
                out += ["--" + s.option, s.value ?? ""]
            }
        }
        return out
    }
}

/// `jigdofs config`: the effective settings and where each came from.
struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Show the settings of the configuration files and where each comes from.",
        discussion: """
            jigdofs reads /etc/jigdofs.conf, then $XDG_CONFIG_HOME/jigdofs/config \
            (~/.config/jigdofs/config); the user's file overrides the system's, the command \
            line overrides both. The files use the .jigdo syntax: [Servers] LABEL=URL lines \
            work like --server, [Mirrors] like --mirror, and [Defaults] takes any long option \
            of the commands as NAME = VALUE (flags: NAME = true). See jigdofs.conf(5).
            """)

    func run() throws {
        let config = try Configuration.load()
        for f in config.files {
            print("# \(f.path)\(f.present ? "" : " (not present)")")
        }
        for section in Configuration.sections {
            let option = section == "Servers" ? "server" : section == "Mirrors" ? "mirror" : nil
            let settings = config.settings.filter { option == nil ? $0.label == nil : $0.option == option && $0.label != nil }
            guard !settings.isEmpty else { continue }
            print("[\(section)]")
            for s in settings {
                var line: String
                if option != nil {
                    line = s.value ?? ""
                } else {
                    line = "\(s.option) = \(s.value ?? "true")"
                }
                line = Passwords.masked(text: line)
                print("\(line)\(String(repeating: " ", count: max(1, 48 - line.count)))# \(s.origin)")
            }
        }
    }
}
