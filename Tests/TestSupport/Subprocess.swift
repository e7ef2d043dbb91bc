import Foundation
import JigdoFormat

/// The outcome of a finished process.
public struct ProcessResult: Sendable, CustomStringConvertible {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    /// stderr split into non-empty lines.
    public var stderrLines: [String] { stderr.split(separator: "\n").map(String.init) }
    public var description: String { "exit \(status)\nstdout: \(stdout.prefix(2000))\nstderr: \(stderr.prefix(2000))" }
}

/// Runs external programs and captures their output (through temp files, so large outputs can
/// never block the child).
public enum Subprocess {
    /// Runs `executable` (a path, or a name looked up in PATH) with `arguments` and waits for it.
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], cwd: String? = nil,
                           environment: [String: String]? = nil) throws -> ProcessResult {
        let scratch = try TemporaryDirectory()
        let outPath = scratch.path + "/stdout", errPath = scratch.path + "/stderr"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable.contains("/") ? executable : try which(executable))
        p.arguments = arguments
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        if let environment { p.environment = environment }
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = out
        p.standardError = err
        try p.run()
        p.waitUntilExit()
        try out.close()
        try err.close()
        return ProcessResult(
            status: p.terminationStatus,
            stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
    }

    /// Runs a shell command line with bash (`set -e -o pipefail`); throws when it fails.
    @discardableResult
    public static func shell(_ script: String, cwd: String? = nil) throws -> String {
        let r = try run("/bin/bash", ["-c", "set -e -o pipefail\n" + script], cwd: cwd)
        guard r.status == 0 else { throw FixtureError("shell command failed: \(script)\n\(r)") }
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

    /// Runs `jigdofs ARGUMENTS` and captures stdout, stderr and the exit status.
    ///
    /// `XDG_CACHE_HOME` points into the per-process temp dir, so caches the command keeps
    /// (the --scan checksum cache) never touch the user's ~/.cache; `environment` adds to or
    /// overrides the inherited variables.
    @discardableResult
    public static func run(_ arguments: [String], cwd: String? = nil, environment: [String: String] = [:]) throws -> ProcessResult {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw FixtureError("jigdofs binary not found at \(binary); run `swift build` first or set JIGDOFS_BINARY")
        }
        var env = ProcessInfo.processInfo.environment
        env["XDG_CACHE_HOME"] = ProcessTemp.root + "/xdg-cache"
        env.merge(environment) { _, new in new }
        return try Subprocess.run(binary, arguments, cwd: cwd, environment: env)
    }
}
