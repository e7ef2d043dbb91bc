import Foundation
import JigdoFormat

// Test servers on 127.0.0.1 only, started and stopped by the tests: a real nginx (the Debian
// package) with its own config and access log, and Tests/Fixtures/fault-server.py.

/// A port on 127.0.0.1 that was free a moment ago.
public func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw FixtureError("socket: \(errnoText(errno))") }
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
    guard ok else { throw FixtureError("bind: \(errnoText(errno))") }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// Whether something accepts connections on 127.0.0.1:port.
public func isListening(_ port: Int) -> Bool {
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
public final class ServerProcess: @unchecked Sendable {
    public let process = Process()
    public let stdout = Pipe()
    private var stopped = false
    /// The signal that stops it. Children inherit the test runner's blocked signals, so only a
    /// program that resets its signal mask (nginx's master does) can take SIGTERM.
    private let stopSignal: Int32

    public init(shellCommand: String, stopSignal: Int32 = SIGTERM) throws {
        self.stopSignal = stopSignal
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", shellCommand]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    public func stop() {
        guard !stopped else { return }
        stopped = true
        if process.isRunning { kill(process.processIdentifier, stopSignal) }
        process.waitUntilExit()
    }

    deinit { stop() }
}

/// nginx (the Debian package) serving a directory on 127.0.0.1, with its own config and
/// access log in a temp dir.
public final class Nginx: @unchecked Sendable {
    public let port: Int
    public let dir: TemporaryDirectory
    private let server: ServerProcess

    public let tls: Bool
    public var url: String { "\(tls ? "https" : "http")://127.0.0.1:\(port)/" }
    public var accessLogPath: String { dir.path + "/access.log" }
    /// With `tls`: the self-signed certificate (for 127.0.0.1) clients must trust.
    public var certificatePath: String { dir.path + "/cert.pem" }

    /// - Parameter tls: serve https with a certificate made here with openssl.
    /// - Parameter http2: with `tls`, offer HTTP/2 (ALPN); the access log then also names each
    ///   request's connection (`connections()`).
    /// - Parameter serverConfig: more lines for the `server` block (auth_basic, access_log, a
    ///   `location` that redirects as a mirrorlist does ...).
    /// - Parameter listenOptions: after the address of `listen` (e.g. `sndbuf=64k`).
    public init(root: String, tls: Bool = false, http2: Bool = false, serverConfig: String = "", listenOptions: String = "") throws {
        dir = try TemporaryDirectory(prefix: "jigdofs-dl")
        self.tls = tls
        var listenSuffix = ""
        var sslLines = ""
        if tls {
            let r = try Subprocess.run("/usr/bin/openssl", [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", dir.path + "/key.pem", "-out", dir.path + "/cert.pem",
            ])
            guard r.status == 0 else { throw FixtureError("openssl: \(r.stderr)") }
            listenSuffix = http2 ? " ssl http2" : " ssl"
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
                  log_format withconn '$remote_addr - - [$time_local] "$request" $status $body_bytes_sent conn=$connection';
                  access_log \(d)/access.log\(http2 ? " withconn" : "");
                  client_body_temp_path \(d)/tmp;
                  proxy_temp_path \(d)/tmp;
                  fastcgi_temp_path \(d)/tmp;
                  uwsgi_temp_path \(d)/tmp;
                  scgi_temp_path \(d)/tmp;
                  keepalive_requests 100000;
                  log_format timed '$msec $request_time $body_bytes_sent "$request" $status';
                  log_format conn '$connection "$request" $status';
                  server {
                    listen 127.0.0.1:\(port)\(listenSuffix) \(listenOptions);
                    \(sslLines)
                    root \(root);
                    \(serverConfig)
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
        throw FixtureError("nginx: \(lastError)")
    }

    public func stop() { server.stop() }
    deinit { server.stop() }

    /// The path of the request `settleLog()` makes; left out of `requests()` and `connections()`.
    static let settlePath = "/.jigdofs-test-settle"

    /// nginx writes a request's log line only after the response was sent, so a client can
    /// hold every byte before the line exists. One more request, answered by the same single
    /// worker once every earlier response was finished and logged, makes the log complete.
    /// (A stopped server has nothing pending: curl is refused at once.)
    public func settleLog() {
        _ = try? Subprocess.run("/usr/bin/curl", ["-sk", "-o", "/dev/null", "--max-time", "10", url + String(Self.settlePath.dropFirst())])
    }

    private func logLines() -> [Substring] {
        settleLog()
        let text = (try? String(contentsOfFile: accessLogPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").filter { !$0.contains(" \(Self.settlePath) ") }
    }

    /// The distinct connections that carried the requests so far, and the protocols used
    /// (only for an `http2` server, whose log names them).
    public func connections() -> (connections: Set<String>, protocols: Set<String>) {
        var conns = Set<String>(), protocols = Set<String>()
        for line in logLines() {
            if let c = line.split(separator: " ").last, c.hasPrefix("conn=") { conns.insert(String(c.dropFirst(5))) }
            if let q1 = line.firstIndex(of: "\"") {
                let rest = line[line.index(after: q1)...]
                if let q2 = rest.firstIndex(of: "\""), let proto = rest[..<q2].split(separator: " ").last {
                    protocols.insert(String(proto))
                }
            }
        }
        return (conns, protocols)
    }

    /// (status, path) of every request so far.
    public func requests() -> [(status: Int, path: String)] {
        return logLines().compactMap { line in
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
public final class FaultServer: @unchecked Sendable {
    public let port: Int
    public let dir: TemporaryDirectory
    private let server: ServerProcess

    public var url: String { "http://127.0.0.1:\(port)/" }

    public init(root: String) throws {
        dir = try TemporaryDirectory(prefix: "jigdofs-dl")
        let script = Fixtures.testsDirectory + "/Fixtures/fault-server.py"
        server = try ServerProcess(shellCommand: "exec python3 '\(script)' '\(root)' '\(dir.path)/requests.log'", stopSignal: SIGKILL)
        let line = server.stdout.fileHandleForReading.readLine()
        guard let port = Int(line) else {
            server.stop()
            throw FixtureError("fault server did not start")
        }
        self.port = port
    }

    public func stop() { server.stop() }
    deinit { server.stop() }

    /// (mode, path, range) of every request so far.
    public func requests() -> [(mode: String, path: String, range: String)] {
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
    public func readLine() -> String {
        var bytes: [UInt8] = []
        while true {
            let d = readData(ofLength: 1)
            if d.isEmpty || d.first == 10 { break }
            bytes.append(d.first!)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
