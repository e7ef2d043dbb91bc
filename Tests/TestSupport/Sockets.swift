import Foundation
import JigdoFormat

/// A Unix datagram socket a test binds (a /dev/log stand-in, a NOTIFY_SOCKET), reading what the
/// process under test sends to it.
public final class DatagramListener: @unchecked Sendable {
    public let path: String
    private let fd: Int32

    public init(path: String) throws {
        self.path = path
        unlink(path)
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw FixtureError("socket: \(errnoText(errno))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw FixtureError("\(path): too long for a socket") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
        }
        guard ok else {
            close(fd)
            throw FixtureError("bind \(path): \(errnoText(errno))")
        }
        chmod(path, 0o666)
    }

    deinit {
        close(fd)
        unlink(path)
    }

    /// The next datagram, or nil if none arrives within `seconds` (a bound, not a timing).
    public func receive(seconds: Double = 30) -> String? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(seconds * 1000)) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return n < 0 ? nil : String(decoding: buffer[0..<n], as: UTF8.self)
    }

    /// Reads datagrams until one satisfies `match` (returned) or none arrives for `seconds`;
    /// every datagram read on the way is appended to `seen`.
    public func receive(until match: (String) -> Bool, seconds: Double = 30, seen: inout [String]) -> String? {
        while let d = receive(seconds: seconds) {
            seen.append(d)
            if match(d) { return d }
        }
        return nil
    }
}
