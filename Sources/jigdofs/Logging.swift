#if canImport(Glibc)
import Glibc
#endif
import Foundation
import FUSEBridge
import JigdoFormat
import Logging
import Synchronization

/// The one logging setup of the process: every component's `Logger` (whatever its label) goes
/// through `RoutedLogHandler` to where `LogSetup` says: stderr while a command runs in the
/// foreground (and while a mount is being set up, so its errors reach the terminal), then, once
/// a mount is in the background, syslog (datagrams to /dev/log, what journald and rsyslog read)
/// or `--log-file`, each line naming the mount point.
///
/// Every message is made printable first (`RawNames.printable`: control characters and raw
/// bytes as `\xHH`), whoever logs it, so a name from a .jigdo, a template or an image can
/// neither forge a line of the log nor reach a terminal as an escape sequence.
///
/// Repeats are folded: a line whose exact text was logged before is counted instead of written
/// again (a failing mirror fails for every part it is asked for, a read of a missing part fails
/// each time it is tried); the count is written when the mount ends (`flushRepeats`).
enum LogSetup {
    enum Destination {
        /// `jigdofs: warning: message` on stderr.
        case terminal
        /// Timestamped lines on stderr, which `Daemon.ready` pointed at the log file.
        case file(path: String)
        case syslog(SyslogSocket)
    }

    struct State {
        var destination: Destination = .terminal
        var level: Logger.Level = .warning
        /// Put before every message (the mount point, in the background).
        var prefix = ""
        /// Message -> times seen, for folding repeats (bounded).
        var seen: [String: Int] = [:]
    }

    static let state = Mutex(State())
    static let maxRemembered = 4096

    static func bootstrap(level: Logger.Level) {
        state.withLock { $0.level = level }
        WarningFolds.installOnce
        LoggingSystem.bootstrap { label in RoutedLogHandler(label: label) }
    }

    static var level: Logger.Level {
        get { state.withLock { $0.level } }
        set { state.withLock { $0.level = newValue } }
    }

    /// From now on lines go to `logFile` (nil: syslog), prefixed with the mount point.
    static func background(logFile: String?, prefix: String) {
        let destination: Destination = logFile.map { .file(path: $0) } ?? .syslog(SyslogSocket())
        state.withLock {
            $0.destination = destination
            $0.prefix = RawNames.printable(prefix)
        }
    }

    /// SIGHUP (logrotate): the log file is opened again under its name, syslog reconnected.
    static func reopen() {
        let destination = state.withLock { $0.destination }
        switch destination {
        case .terminal:
            return
        case .file(let path):
            let fd = LogFile.open(path)
            if fd < 0 {
                write(.error, "\(path): cannot reopen log file: \(String(cString: strerror(errno))); still writing to the old one")
                return
            }
            dup2(fd, 2)
            close(fd)
            write(.notice, "log file reopened")
        case .syslog(let socket):
            socket.reconnect()
            write(.notice, "syslog connection reopened")
        }
    }

    /// Writes what repeats were folded (at the end of a mount).
    static func flushRepeats() {
        let repeated = state.withLock { s -> [(String, Int)] in
            defer { s.seen = [:] }
            return s.seen.filter { $0.value > 1 }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        }
        for (message, count) in repeated {
            write(.notice, "\(count - 1) more time\(count == 2 ? "" : "s"): \(message)", fold: false)
        }
    }

    static func write(_ level: Logger.Level, _ text: String, fold: Bool = true) {
        // Logs are read by others (syslog, a shared log file): no name can add a line to them
        // (control characters escaped) and no URL's password reaches them.
        let message = Passwords.masked(text: RawNames.printable(text))
        // A command's errors on the terminal are left to WarningFolds (counted by kind, the
        // count written when the command ends); a mount has no such end before the unmount.
        let commandError = level >= .error && WarningFolds.enabled
        let (destination, prefix, first) = state.withLock { s -> (Destination, String, Bool) in
            var first = true
            let terminal = if case .terminal = s.destination { true } else { false }
            if fold && !(commandError && terminal) {
                let n = s.seen[message, default: 0]
                first = n == 0
                if n > 0 || s.seen.count < maxRemembered { s.seen[message] = n + 1 }
            }
            return (s.destination, s.prefix, first)
        }
        guard first else { return }
        switch destination {
        case .terminal:
            // A command's warnings of one kind are folded into one line with a count (see
            // WarningFolds); the progress line is cleared first.
            if level >= .warning, WarningFolds.enabled, !WarningFolds.first(message) { return }
            let text = level >= .warning ? "jigdofs: \(level): \(message)\n" : "jigdofs: \(message)\n"
            ProgressBar.makeRoomForMessage()
            writeAll(2, Array(text.utf8))
        case .file:
            let text = "\(timestamp()) jigdofs[\(getpid())] \(level): \(prefix)\(message)\n"
            writeAll(2, Array(text.utf8))
        case .syslog(let socket):
            socket.send(priority: syslogSeverity(level), message: prefix + message)
        }
    }

    static func syslogSeverity(_ level: Logger.Level) -> Int32 {
        switch level {
        case .trace, .debug: return LOG_DEBUG
        case .info: return LOG_INFO
        case .notice: return LOG_NOTICE
        case .warning: return LOG_WARNING
        case .error: return LOG_ERR
        case .critical: return LOG_CRIT
        }
    }

    static func timestamp() -> String {
        var now = time(nil)
        var tm = tm()
        gmtime_r(&now, &tm)
        var buffer = [CChar](repeating: 0, count: 32)
        strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &tm)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `--log-level` / `-v` names.
    static func parseLevel(_ text: String) -> Logger.Level? {
        switch text.lowercased() {
        case "trace": return .trace
        case "debug": return .debug
        case "info": return .info
        case "notice": return .notice
        case "warning", "warn": return .warning
        case "error", "err": return .error
        case "critical", "crit": return .critical
        default: return nil
        }
    }
}

/// Every Logger of the process: the level and destination are the process's (LogSetup), so a
/// component's logger created before the mount went to the background follows it there.
struct RoutedLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    let label: String
    private var ownLevel: Logger.Level?

    init(label: String) { self.label = label }

    var logLevel: Logger.Level {
        get { ownLevel ?? LogSetup.level }
        set { ownLevel = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var text = "\(event.message)"
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        if !all.isEmpty {
            text += " (" + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ") + ")"
        }
        LogSetup.write(event.level, text)
    }
}

/// Syslog over its local socket, written by hand (no openlog state, a path tests can point at a
/// stand-in with `JIGDOFS_SYSLOG_SOCKET`): `<PRIORITY>TIMESTAMP jigdofs[PID]: MESSAGE` datagrams,
/// facility daemon. A message that cannot be sent (no syslog running) is dropped.
final class SyslogSocket: Sendable {
    let path: String
    /// The socket (-1: not connected), and the lines not sent because its queue was full.
    private let conn = Mutex<(fd: Int32, dropped: Int)>((-1, 0))

    init(path: String = ProcessInfo.processInfo.environment["JIGDOFS_SYSLOG_SOCKET"].flatMap { $0.isEmpty ? nil : $0 } ?? "/dev/log") {
        self.path = path
    }

    deinit {
        conn.withLock { if $0.fd >= 0 { close($0.fd) } }
    }

    func reconnect() {
        conn.withLock { s in
            if s.fd >= 0 { close(s.fd) }
            s.fd = -1
        }
    }

    func send(priority: Int32, message: String) {
        var now = time(nil)
        var tm = tm()
        localtime_r(&now, &tm)
        var stamp = [CChar](repeating: 0, count: 32)
        strftime(&stamp, stamp.count, "%b %e %H:%M:%S", &tm)
        let time = String(decoding: stamp.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let line = Array("<\(LOG_DAEMON | priority)>\(time) jigdofs[\(getpid())]: \(message)".utf8.prefix(8000))
        conn.withLock { s in
            for _ in 0..<2 {
                if s.fd < 0 { s.fd = Self.connect(path) }
                let fd = s.fd
                guard fd >= 0 else { return }
                // Never waits: a syslog daemon that does not read (its queue full) must not hold up
                // the thread that logs, which may be about to answer a FUSE request. The line is
                // dropped then, and the next line that goes through says how many were.
                if s.dropped > 0 {
                    let note = "<\(LOG_DAEMON | LOG_WARNING)>\(time) jigdofs[\(getpid())]: \(s.dropped) log lines dropped (the syslog socket was full)"
                    if Self.sendNow(fd, Array(note.utf8)) >= 0 { s.dropped = 0 }
                }
                let sent = Self.sendNow(fd, line)
                if sent >= 0 { return }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    s.dropped += 1
                    return
                }
                // The syslog daemon restarted (journald): connect again, once.
                close(fd)
                s.fd = -1
            }
        }
    }

    private static func sendNow(_ fd: Int32, _ bytes: [UInt8]) -> Int {
        bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
    }

    private static func connect(_ path: String) -> Int32 {
        let s = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { return -1 }
        guard withUnixAddress(path, { Glibc.connect(s, $0, $1) }) == 0 else {
            close(s)
            return -1
        }
        return s
    }
}

/// Calls `body` with a `sockaddr_un` for `path` (a leading `@` means Linux's abstract namespace,
/// as systemd writes NOTIFY_SOCKET). Returns -1 for a path that does not fit.
func withUnixAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    var bytes = Array(path.utf8)
    let abstract = bytes.first == UInt8(ascii: "@")
    if abstract { bytes[0] = 0 }
    let capacity = MemoryLayout.size(ofValue: address.sun_path)
    guard bytes.count < capacity else { return -1 }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (i, b) in bytes.enumerated() { raw[i] = b }
    }
    let length = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)! + bytes.count + (abstract ? 0 : 1)
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(length)) }
    }
}

/// sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET when systemd started us.
enum ServiceNotification {
    static func send(_ text: String) {
        guard let path = ProcessInfo.processInfo.environment["NOTIFY_SOCKET"], !path.isEmpty else { return }
        let s = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { return }
        defer { close(s) }
        let bytes = Array(text.utf8)
        _ = withUnixAddress(path) { address, length in
            Int32(bytes.withUnsafeBytes { sendto(s, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), address, length) })
        }
    }
}

/// SIGHUP asks a background mount to reopen its log (what logrotate sends), instead of
/// ending it. The handler only writes a byte to a pipe (async-signal-safe); a thread reads it
/// and does the work.
enum HangupSignal {
    nonisolated(unsafe) private static var writeFD: Int32 = -1

    static func install(_ action: @escaping @Sendable () -> Void) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        writeFD = fds[1]
        let readFD = fds[0]
        let thread = Thread {
            var byte: UInt8 = 0
            while true {
                let n = read(readFD, &byte, 1)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                action()
            }
        }
        thread.name = "jigdofs-sighup"
        thread.start()
        var act = sigaction()
        act.__sigaction_handler.sa_handler = { _ in
            let saved = errno
            var byte: UInt8 = 1
            _ = Glibc.write(HangupSignal.writeFD, &byte, 1)
            errno = saved
        }
        sigemptyset(&act.sa_mask)
        act.sa_flags = SA_RESTART
        sigaction(SIGHUP, &act, nil)
        var unblock = sigset_t()
        sigemptyset(&unblock)
        sigaddset(&unblock, SIGHUP)
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
    }
}

/// A log line that cannot be written is lost: there is nowhere to say so.
private func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
    _ = bytes.withUnsafeBytes { writeFully(fd, $0) }
}
