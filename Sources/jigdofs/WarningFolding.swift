import Foundation
import Logging
import Synchronization

/// Repeated warnings of one kind in a command's output (`LogSetup`'s terminal lines): the
/// first is shown, the others are counted and summed up in one line at the end ("161 more
/// like ..."). The mount turns it off: it logs every line as it comes.
enum WarningFolds {
    private struct Fold {
        var first: String
        var more = 0
    }
    private static let on = Mutex(true)
    /// False for the mount, which logs every line as it comes.
    static var enabled: Bool {
        get { on.withLock { $0 } }
        set { on.withLock { $0 = newValue } }
    }
    private static let folds = Mutex<(order: [String], byKind: [String: Fold])>(([], [:]))

    static let installOnce: Void = {
        atexit { WarningFolds.flush() }
    }()

    /// The kind of a message: its words after the subject ("URL: ...", "path: ..."), with
    /// those that vary from one occurrence to the next (paths, numbers, checksums) left out.
    static func kind(of text: String) -> String {
        let rest = text.range(of: ": ").map { text[$0.upperBound...] } ?? text[...]
        return rest.split(separator: " ").map { word -> Substring in
            let varies = word.contains("/") || word.contains(where: \.isNumber) || word.count >= 16
            return varies ? "*" : word
        }.joined(separator: " ")
    }

    /// Whether `text` is the first of its kind (to be shown); a later one is counted.
    static func first(_ text: String) -> Bool {
        let k = kind(of: text)
        return folds.withLock { f in
            if f.byKind[k] != nil {
                f.byKind[k]!.more += 1
                return false
            }
            f.byKind[k] = Fold(first: text)
            f.order.append(k)
            return true
        }
    }

    /// One line per folded kind: how many more there were.
    static func flush() {
        let lines = folds.withLock { f -> [String] in
            defer { f = ([], [:]) }
            return f.order.compactMap { k in
                guard let fold = f.byKind[k], fold.more > 0 else { return nil }
                return "jigdofs: warning: \(fold.more) more like \"\(fold.first)\""
            }
        }
        guard !lines.isEmpty else { return }
        ProgressBar.makeRoomForMessage()
        writeStderr(lines.joined(separator: "\n") + "\n")
    }
}
