#if canImport(Glibc)
import Glibc
#endif
import Foundation
import JigdoFormat

/// The process's own command line as `ps` and `/proc/PID/cmdline` show it to every user of the
/// machine. A URL with a password (`--server L=http://alice:PW@host/`, a SOURCE URL, `-o
/// server=...`) is rewritten there in its masked form (`http://alice:***@host/`) before
/// anything else runs, so neither the command nor the mount daemon it forks (same memory)
/// shows the password. The arguments the command parses are the copy `CommandLine.arguments`
/// made before.
enum ArgumentArea {
    /// Rewrites the argument area when an argument holds a password; returns whether it did.
    @discardableResult
    static func maskPasswords(_ arguments: [String]) -> Bool {
        let masked = arguments.map { Passwords.masked(text: $0) }
        guard masked != arguments, let (start, end) = bounds(), end > start else { return false }
        let size = Int(end - start)
        // A masked argument can be longer than the original (a password of one or two
        // characters becomes `***`): what does not fit is cut off, never left as it was. The
        // rest is zeroed and the last byte is always NUL (the kernel then shows the area alone).
        var bytes: [UInt8] = []
        for a in masked { bytes += Array(a.utf8) + [0] }
        guard let area = UnsafeMutablePointer<UInt8>(bitPattern: start) else { return false }
        for i in 0..<size { area[i] = i < min(bytes.count, size - 1) ? bytes[i] : 0 }
        return true
    }

    /// `arg_start` and `arg_end` of /proc/self/stat (fields 48 and 49, after the command name
    /// in parentheses, which may itself hold blanks and parentheses).
    static func bounds() -> (UInt, UInt)? {
        guard let text = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state).
        guard fields.count > 46, let start = UInt(fields[45]), let end = UInt(fields[46]) else { return nil }
        return (start, end)
    }
}
