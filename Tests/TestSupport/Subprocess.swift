import Foundation
import JigdoFormat

/// The outcome of a finished process.
public struct ProcessResult: Sendable, CustomStringConvertible {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    /// stdout as raw bytes (for binary output such as `jigdofs cat`).
    public var stdoutData: Data
    /// stderr split into non-empty lines.
    public var stderrLines: [String] { stderr.split(separator: "\n").map(String.init) }
    public var description: String { "exit \(status)\nstdout: \(stdout.prefix(2000))\nstderr: \(stderr.prefix(2000))" }
}

/// Runs external programs and captures their output.
///
/// Every child gets `XDG_CACHE_HOME` in the per-process temp dir (unless `environment` sets it),
/// so nothing a test starts (jigdofs directly, or through a script or mount helper) can write
/// its --scan checksum cache into the user's ~/.cache; likewise configuration files that do not
/// exist, so no test depends on the machine's /etc/jigdofs.conf.
public enum Subprocess {
    /// The `XDG_CACHE_HOME` every child process sees by default.
    public static var cacheHome: String { ProcessTemp.root + "/xdg-cache" }

    /// Runs `executable` (a path, or a name looked up in PATH) with `arguments` and waits for it.
    ///
    /// `environment` adds to or overrides the inherited variables; `stdin` is written to the
    /// child's standard input (default: /dev/null). Output goes to temp files, so no pipe can
    /// fill up, and a daemon that keeps a copy of the descriptors cannot make us wait for
    /// end-of-file.
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], cwd: String? = nil,
                           environment: [String: String] = [:], stdin: Data? = nil) throws -> ProcessResult {
        let scratch = try TemporaryDirectory()
        let outPath = scratch.path + "/stdout", errPath = scratch.path + "/stderr"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        var env = ProcessInfo.processInfo.environment
        env["XDG_CACHE_HOME"] = cacheHome
        // Never the machine's /etc/jigdofs.conf or ~/.config/jigdofs/config (a test that wants
        // a configuration passes its own JIGDOFS_SYSTEM_CONFIG / JIGDOFS_CONFIG).
        env["JIGDOFS_SYSTEM_CONFIG"] = ProcessTemp.root + "/no-system-config"
        env["XDG_CONFIG_HOME"] = ProcessTemp.root + "/xdg-config"
        env["JIGDOFS_CONFIG"] = nil
        env.merge(environment) { _, new in new }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable.contains("/") ? executable : try which(executable))
        p.arguments = arguments
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        p.environment = env
        let input = Pipe()
        p.standardInput = stdin == nil ? FileHandle.nullDevice : input
        p.standardOutput = out
        p.standardError = err
        try p.run()
        try? out.close()
        try? err.close()
        if let stdin {
            input.fileHandleForWriting.write(stdin)
            try? input.fileHandleForWriting.close()
        }
        p.waitUntilExit()
        let outData = FileManager.default.contents(atPath: outPath) ?? Data()
        let errData = FileManager.default.contents(atPath: errPath) ?? Data()
        return ProcessResult(
            status: p.terminationStatus,
            stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self),
            stdoutData: outData)
    }

    /// Runs `command` (`[executable] + arguments`) and waits for it.
    @discardableResult
    public static func run(_ command: [String], cwd: String? = nil, environment: [String: String] = [:],
                           stdin: Data? = nil) throws -> ProcessResult {
        guard let executable = command.first else { throw FixtureError("empty command line") }
        return try run(executable, Array(command.dropFirst()), cwd: cwd, environment: environment, stdin: stdin)
    }

    /// Runs `command` and requires exit status 0.
    @discardableResult
    public static func check(_ command: [String], cwd: String? = nil, environment: [String: String] = [:]) throws -> ProcessResult {
        let r = try run(command, cwd: cwd, environment: environment)
        guard r.status == 0 else {
            throw FixtureError("\(command.joined(separator: " ")) failed (\(r.status)): \(r.stderr)")
        }
        return r
    }

    /// Runs a shell command line with bash (`set -euo pipefail`); returns stdout, throws (with
    /// stderr) when it fails.
    @discardableResult
    public static func shell(_ script: String, cwd: String? = nil) throws -> String {
        let r = try run("/bin/bash", ["-c", "set -euo pipefail\n" + script], cwd: cwd)
        guard r.status == 0 else { throw FixtureError("shell command failed: \(script.prefix(500))\n\(r)") }
        return r.stdout
    }

    static func which(_ name: String) throws -> String {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let p = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        throw FixtureError("\(name): not found in PATH")
    }
}

/// `s` quoted for a POSIX shell.
public func shellQuote(_ s: String) -> String {
    "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// The built `jigdofs` executable.
public enum CLI {
    /// Path of the binary: `$JIGDOFS_BINARY` if set; else `jigdofs` next to the running test
    /// bundle (the build's bin dir, whatever the configuration or --build-path); else
    /// `<package>/.build/debug/jigdofs`.
    public static let binary: String = {
        if let b = ProcessInfo.processInfo.environment["JIGDOFS_BINARY"], !b.isEmpty { return b }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        // The test binary may sit inside a bundle directory (`*.xctest/Contents/MacOS`).
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("jigdofs").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir.deleteLastPathComponent()
        }
        return Fixtures.packageRoot + "/.build/debug/jigdofs"
    }()

    /// Throws a clear error when the binary has not been built.
    public static func requireBinary() throws {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw FixtureError("jigdofs binary not found at \(binary); run `swift build` first or set JIGDOFS_BINARY")
        }
    }

    /// Runs `jigdofs ARGUMENTS` and captures stdout, stderr and the exit status (through
    /// `Subprocess.run`, so `XDG_CACHE_HOME` is a temp dir; `environment` adds to or overrides
    /// the inherited variables).
    @discardableResult
    public static func run(_ arguments: [String], cwd: String? = nil, environment: [String: String] = [:]) throws -> ProcessResult {
        try requireBinary()
        return try Subprocess.run(binary, arguments, cwd: cwd, environment: environment)
    }
}

/// Waits (bounded; failing, not timing) until `condition` holds.
public func waitUntil(_ what: String, seconds: Double = 30, _ condition: () -> Bool) throws {
    let deadline = Date().addingTimeInterval(seconds)
    while !condition() {
        if Date() > deadline { throw FixtureError("gave up waiting: \(what)") }
        usleep(20_000)
    }
}
