import ArgumentParser
import Foundation

/// The long options a command declares, read from ArgumentParser's own description of the
/// command (`_dumpHelp()`, the JSON behind `--experimental-dump-help`), so `-o key=value` and
/// the config file's `[Defaults]` map onto every option any command has, including options
/// added later, without a list of names to keep in step.
struct OptionCatalog {
    enum Kind { case option, flag }

    struct Entry {
        var name: String
        var kind: Kind
        var repeating: Bool
    }

    /// Long name (without `--`) -> entry.
    private(set) var entries: [String: Entry] = [:]
    /// Short name (one character) -> takes a value.
    private(set) var shortTakesValue: [Character: Bool] = [:]

    /// Options that are about the program, not about what it does.
    static let excluded: Set<String> = ["help", "version", "generate-completion-script", "experimental-dump-help"]

    init(_ command: any ParsableCommand.Type) {
        guard let info = try? JSONDecoder().decode(Dump.self, from: Data(command._dumpHelp().utf8)) else { return }
        for argument in info.command.arguments ?? [] {
            let kind: Kind
            switch argument.kind {
            case "option": kind = .option
            case "flag": kind = .flag
            default: continue
            }
            for name in argument.names ?? [] {
                if name.kind == "long", !Self.excluded.contains(name.name) {
                    entries[name.name] = Entry(name: name.name, kind: kind, repeating: argument.isRepeating)
                } else if name.kind == "short", let c = name.name.first {
                    shortTakesValue[c] = kind == .option
                }
            }
        }
    }

    subscript(name: String) -> Entry? { entries[name] }

    var names: [String] { entries.keys.sorted() }

    /// The subcommand types of the root command, by name.
    static func subcommands(of root: any ParsableCommand.Type) -> [String: any ParsableCommand.Type] {
        var out: [String: any ParsableCommand.Type] = [:]
        for sub in root.configuration.subcommands {
            out[sub._commandName] = sub
            for alias in sub.configuration.aliases { out[alias] = sub }
        }
        return out
    }

    private struct Dump: Decodable {
        struct Command: Decodable { var arguments: [Argument]? }
        struct Argument: Decodable {
            struct Name: Decodable { var kind: String; var name: String }
            var kind: String
            var names: [Name]?
            var isRepeating: Bool
        }
        var command: Command
    }
}

/// "did you mean" help for a mistyped name: the closest candidate within a small edit distance.
func closestName(to word: String, in candidates: [String]) -> String? {
    let limit = max(2, word.count / 3)
    var best: (name: String, distance: Int)?
    for c in candidates {
        let d = editDistance(word, c)
        if d <= limit, d < (best?.distance ?? Int.max) { best = (c, d) }
    }
    return best?.name
}

func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}
