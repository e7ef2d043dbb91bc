import Foundation
import JigdoFormat

// Test helpers of the download tests: the fixture release, a real nginx and the
// fault-injecting server, all on 127.0.0.1, started and stopped by the tests.
// (Kept local to this target; TestSupport has the shared fixture helpers of the core tests.)

struct DownloadTestError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// A fresh temp directory, removed when released.
final class TempDir: @unchecked Sendable {
    let path: String
    init() throws {
        var template = Array("/tmp/jigdofs-dl-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw DownloadTestError("mkdtemp: \(errnoText(errno))")
        }
        path = String(cString: template)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

enum DownloadFixture {
    /// `Tests/` of the package.
    static let testsDirectory: String = {
        var url = URL(fileURLWithPath: #filePath)
        url.deleteLastPathComponent()
        url.deleteLastPathComponent()
        return url.path
    }()

    /// The jigdofs binary next to the test bundle.
    static var binary: String {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
        for candidate in [dir + "/jigdofs", testsDirectory + "/../.build/debug/jigdofs"] where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        return dir + "/jigdofs"
    }

    private static let built = Result { () throws -> String in
        let dir = NSTemporaryDirectory() + "jigdofs-dl-fixture-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        let r = try runProcess("/bin/bash", [testsDirectory + "/Fixtures/make-release.sh", dir, "120", "3"])
        guard r.status == 0 else { throw DownloadTestError("make-release.sh failed: \(r.stderr)") }
        atexit { try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + "jigdofs-dl-fixture-\(getpid())") }
        return dir
    }

    /// The OUT directory of make-release.sh (a release of 120 files), built once per process.
    static func release() throws -> String { try built.get() }
}

struct ProcessResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a program to completion and collects its output.
func runProcess(_ path: String, _ args: [String], environment: [String: String]? = nil) throws -> ProcessResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    if let environment { p.environment = environment }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = FileHandle.nullDevice
    try p.run()
    // Read both pipes concurrently so a full pipe never blocks the child.
    let errData = LockedData()
    let t = Thread { errData.set(err.fileHandleForReading.readDataToEndOfFile()) }
    t.start()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    while !errData.isSet { usleep(1000) }
    return ProcessResult(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData.get(), as: UTF8.self))
}

final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data: Data?
    func set(_ d: Data) { lock.lock(); data = d; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return data != nil }
    func get() -> Data { lock.lock(); defer { lock.unlock() }; return data ?? Data() }
}

/// A port on 127.0.0.1 that was free a moment ago.
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw DownloadTestError("socket: \(errnoText(errno))") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0
        }
    }
    guard ok else { throw DownloadTestError("bind: \(errnoText(errno))") }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// Whether something accepts connections on 127.0.0.1:port.
func isListening(_ port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = UInt16(port).bigEndian
    return withUnsafePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}

/// A server child process, stopped (SIGTERM, then waited for) by `stop()` or when released.
final class ServerProcess: @unchecked Sendable {
    let process = Process()
    let stdout = Pipe()
    private var stopped = false
    /// The signal that stops it. Children inherit the test runner's blocked signals, so only a
    /// program that resets its signal mask (nginx's master does) can take SIGTERM.
    private let stopSignal: Int32

    init(shellCommand: String, stopSignal: Int32 = SIGTERM) throws {
        self.stopSignal = stopSignal
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", shellCommand]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    func stop() {
        guard !stopped else { return }
        stopped = true
        if process.isRunning { kill(process.processIdentifier, stopSignal) }
        process.waitUntilExit()
    }

    deinit { stop() }
}

/// nginx (the Debian package) serving a directory on 127.0.0.1, with its own config and
/// access log in a temp dir.
final class Nginx: @unchecked Sendable {
    let port: Int
    let dir: TempDir
    private let server: ServerProcess

    let tls: Bool
    var url: String { "\(tls ? "https" : "http")://127.0.0.1:\(port)/" }
    var accessLogPath: String { dir.path + "/access.log" }
    /// With `tls`: the self-signed certificate (for 127.0.0.1) clients must trust.
    var certificatePath: String { dir.path + "/cert.pem" }

    /// - Parameter tls: serve https with a certificate made here with openssl.
    init(root: String, tls: Bool = false) throws {
        dir = try TempDir()
        self.tls = tls
        var listenSuffix = ""
        var sslLines = ""
        if tls {
            let r = try runProcess("/usr/bin/openssl", [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", dir.path + "/key.pem", "-out", dir.path + "/cert.pem",
            ])
            guard r.status == 0 else { throw DownloadTestError("openssl: \(r.stderr)") }
            listenSuffix = " ssl"
            sslLines = "ssl_certificate \(dir.path)/cert.pem;\n    ssl_certificate_key \(dir.path)/key.pem;"
        }
        var lastError = "nginx did not start"
        for _ in 0..<5 {
            let port = try freePort()
            let d = dir.path
            let conf = """
                daemon off;
                worker_processes 1;
                pid \(d)/nginx.pid;
                error_log \(d)/error.log;
                events { worker_connections 512; }
                http {
                  access_log \(d)/access.log;
                  client_body_temp_path \(d)/tmp;
                  proxy_temp_path \(d)/tmp;
                  fastcgi_temp_path \(d)/tmp;
                  uwsgi_temp_path \(d)/tmp;
                  scgi_temp_path \(d)/tmp;
                  keepalive_requests 100000;
                  server {
                    listen 127.0.0.1:\(port)\(listenSuffix);
                    \(sslLines)
                    root \(root);
                  }
                }
                """
            try conf.write(toFile: d + "/nginx.conf", atomically: true, encoding: .utf8)
            let server = try ServerProcess(shellCommand: "exec nginx -p '\(d)' -c '\(d)/nginx.conf'")
            // Wait (bounded) until it listens; a port taken meanwhile makes nginx exit.
            for _ in 0..<500 {
                if isListening(port) { break }
                if !server.process.isRunning { break }
                usleep(10_000)
            }
            if isListening(port) {
                self.port = port
                self.server = server
                return
            }
            server.stop()
            lastError = (try? String(contentsOfFile: d + "/error.log", encoding: .utf8)) ?? lastError
        }
        throw DownloadTestError("nginx: \(lastError)")
    }

    func stop() { server.stop() }
    deinit { server.stop() }

    /// (status, path) of every request so far.
    func requests() -> [(status: Int, path: String)] {
        let text = (try? String(contentsOfFile: accessLogPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            // ... "GET /path HTTP/1.1" 200 ...
            guard let q1 = line.firstIndex(of: "\"") else { return nil }
            let rest = line[line.index(after: q1)...]
            guard let q2 = rest.firstIndex(of: "\"") else { return nil }
            let request = rest[..<q2].split(separator: " ")
            let after = rest[rest.index(after: q2)...].split(separator: " ")
            guard request.count >= 2, let status = after.first.flatMap({ Int($0) }) else { return nil }
            return (status, String(request[1]).removingPercentEncoding ?? String(request[1]))
        }
    }
}

/// Tests/Fixtures/fault-server.py on 127.0.0.1 (it picks a free port itself and reports it).
final class FaultServer: @unchecked Sendable {
    let port: Int
    let dir: TempDir
    private let server: ServerProcess

    var url: String { "http://127.0.0.1:\(port)/" }

    init(root: String) throws {
        dir = try TempDir()
        let script = DownloadFixture.testsDirectory + "/Fixtures/fault-server.py"
        server = try ServerProcess(shellCommand: "exec python3 '\(script)' '\(root)' '\(dir.path)/requests.log'", stopSignal: SIGKILL)
        let line = server.stdout.fileHandleForReading.readLine()
        guard let port = Int(line) else {
            server.stop()
            throw DownloadTestError("fault server did not start")
        }
        self.port = port
    }

    func stop() { server.stop() }
    deinit { server.stop() }

    /// (mode, path, range) of every request so far.
    func requests() -> [(mode: String, path: String, range: String)] {
        let text = (try? String(contentsOfFile: dir.path + "/requests.log", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            let words = line.split(separator: " ")
            guard words.count >= 3 else { return nil }
            let path = words[1..<(words.count - 1)].joined(separator: " ")
            return (String(words[0]), path, String(words.last!))
        }
    }
}

extension FileHandle {
    /// Reads up to a newline (for a child's first line of output).
    func readLine() -> String {
        var bytes: [UInt8] = []
        while true {
            let d = readData(ofLength: 1)
            if d.isEmpty || d.first == 10 { break }
            bytes.append(d.first!)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Whether two files have the same content.
func filesEqual(_ a: String, _ b: String) throws -> Bool {
    let fa = try ReadOnlyFile(path: a), fb = try ReadOnlyFile(path: b)
    guard fa.size == fb.size else { return false }
    var offset: Int64 = 0
    while offset < fa.size {
        let n = Int(min(1 << 20, fa.size - offset))
        if try fa.read(at: offset, count: n) != fb.read(at: offset, count: n) { return false }
        offset += Int64(n)
    }
    return true
}

/// Regular files anywhere under `dir`.
func regularFilesCount(_ dir: String) -> Int {
    guard let e = FileManager.default.enumerator(atPath: dir) else { return 0 }
    var n = 0
    while let rel = e.nextObject() as? String {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: dir + "/" + rel, isDirectory: &isDir), !isDir.boolValue { n += 1 }
    }
    return n
}
