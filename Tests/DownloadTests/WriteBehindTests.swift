import Foundation
import JigdoFormat
@testable import PartSources
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

// The hash-and-write lanes behind the transfer thread, driven without a network: pieces of
// several transfers interleaved as libcurl hands them over, through a pool of two buffers.

private func transfer(_ id: UInt64, path: String) -> Transfer {
    var request = TransferRequest(url: "http://m/\(id)", path: path)
    request.hasher = ChecksumHasher(.md5)
    return Transfer(id: id, request: request, completion: { _ in })
}

private struct Delivered: Sendable {
    var error: Int32
    var checksum: Checksum?
    var sizeAtDelivery: Int
}

/// A new file for a transfer's body, open for writing.
private func openForWriting(_ path: String) -> Int32 {
    let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
    #expect(fd >= 0)
    return fd
}

/// Ends `t` and waits for the delivery: its write error, checksum, and its file's size then.
private func finishAndWait(_ w: WriteBehind, _ t: Transfer, fd: Int32) -> Delivered {
    let result = Mutex<Delivered?>(nil)
    let ended = DispatchSemaphore(value: 0)
    let path = t.path!
    w.finish(t, fd: fd) { error, sum in
        var st = stat()
        let size = stat(path, &st) == 0 ? Int(st.st_size) : -1
        result.withLock { $0 = Delivered(error: error, checksum: sum, sizeAtDelivery: size) }
        ended.signal()
    }
    ended.wait()
    return result.withLock { $0 }!
}

@Suite("WriteBehind: bodies hashed and written off the transfer thread")
struct WriteBehindTests {
    // Five transfers through two buffers: buffers being filled must be queued before a wait.
    @Test("interleaved pieces reach each file in order, are hashed in order, and the end waits for the last write")
    func piecesInOrder() throws {
        let tmp = try TempDir()
        let w = WriteBehind(lanes: 2, capacity: 2)
        var rng = SystemRandomNumberGenerator()
        let bodies: [[UInt8]] = (0..<5).map { i in (0..<(300_000 + i * 77_777)).map { _ in UInt8.random(in: 0...255, using: &rng) } }
        var transfers: [(Transfer, Int32, Int)] = []
        for i in bodies.indices {
            let path = tmp.path + "/part\(i)"
            let fd = openForWriting(path)
            transfers.append((transfer(UInt64(i + 1), path: path), fd, 0))
        }
        // Pieces of 1 byte to 300 KB (over one buffer: split), round robin over the transfers.
        let sizes = [1, 16_384, 131_072, 300_000, 7, 65_536]
        var step = 0
        while transfers.contains(where: { $0.2 < bodies[Int($0.0.id) - 1].count }) {
            for k in transfers.indices {
                let (t, fd, done) = transfers[k]
                let body = bodies[Int(t.id) - 1]
                guard done < body.count else { continue }
                let n = min(sizes[step % sizes.count], body.count - done)
                step += 1
                body.withUnsafeBytes { w.write(t, fd: fd, $0.baseAddress! + done, count: n, at: Int64(done)) }
                transfers[k].2 = done + n
            }
        }
        let results = Mutex<[UInt64: Delivered]>([:])
        let ended = DispatchSemaphore(value: 0)
        for (t, fd, _) in transfers {
            let path = t.path!
            w.finish(t, fd: fd) { error, sum in
                var st = stat()
                let size = stat(path, &st) == 0 ? Int(st.st_size) : -1
                results.withLock { $0[t.id] = Delivered(error: error, checksum: sum, sizeAtDelivery: size) }
                ended.signal()
            }
        }
        for _ in transfers { ended.wait() }
        let got = results.withLock { $0 }
        for (i, body) in bodies.enumerated() {
            let r = try #require(got[UInt64(i + 1)])
            var h = ChecksumHasher(.md5)
            h.update(body)
            #expect(r.error == 0)
            #expect(r.sizeAtDelivery == body.count, "the end was delivered before the last write")
            #expect(r.checksum == h.finalize(), "transfer \(i + 1): hashed out of order or incompletely")
            #expect(try Array(Data(contentsOf: URL(fileURLWithPath: tmp.path + "/part\(i)"))) == body)
        }
        #expect(w.pool.allocated <= 2, "more buffers than the pool's capacity")
    }

    @Test("libcurl's 16 KiB pieces fill whole buffers: one hash-and-write per buffer, the rest at the end")
    func piecesCoalesce() throws {
        let tmp = try TempDir()
        let path = tmp.path + "/part"
        let fd = openForWriting(path)
        let w = WriteBehind(lanes: 1, capacity: 4)
        let t = transfer(1, path: path)
        let piece = 16 << 10
        let body = (0..<(40 * piece + 1000)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) }
        var done = 0
        while done < body.count {
            let n = min(piece, body.count - done)
            body.withUnsafeBytes { w.write(t, fd: fd, $0.baseAddress! + done, count: n, at: Int64(done)) }
            done += n
        }
        let full = body.count / WriteBehind.pieceSize
        #expect(w.queuedWrites == full, "\(w.queuedWrites) writes queued for \(full) full buffers")
        let r = finishAndWait(w, t, fd: fd)
        #expect(w.queuedWrites == full + 1, "the rest of the body is queued by the end")
        var h = ChecksumHasher(.md5)
        h.update(body)
        #expect(r.error == 0)
        #expect(r.checksum == h.finalize())
        #expect(try Array(Data(contentsOf: URL(fileURLWithPath: path))) == body)
    }

    @Test("a buffer left filling (a slow or stalled transfer) is written once it is old enough, not only when full")
    func staleBufferFlushed() throws {
        let tmp = try TempDir()
        let path = tmp.path + "/part"
        let fd = openForWriting(path)
        let w = WriteBehind(lanes: 1, capacity: 4)
        let t = transfer(1, path: path)
        let body = [UInt8](repeating: 5, count: 20_000)
        body.withUnsafeBytes { w.write(t, fd: fd, $0.baseAddress!, count: body.count, at: 0) }
        w.flush(olderThan: 60_000_000_000)
        #expect(w.queuedWrites == 0, "a buffer younger than the age was queued")
        #expect(w.isFilling)
        w.flush(olderThan: 0)
        #expect(w.queuedWrites == 1)
        #expect(!w.isFilling)
        _ = finishAndWait(w, t, fd: fd)
        #expect(w.queuedWrites == 1, "nothing was left for the end")
        #expect(try Array(Data(contentsOf: URL(fileURLWithPath: path))) == body)
    }

    @Test("a transfer's end is delivered after its pieces, even when they are still queued")
    func endAfterQueuedPieces() throws {
        let tmp = try TempDir()
        let path = tmp.path + "/part"
        let fd = openForWriting(path)
        let w = WriteBehind(lanes: 1, capacity: 4)
        let t = transfer(1, path: path)
        // The lane is held until the end has been queued: its pieces are still waiting then.
        let gate = DispatchSemaphore(value: 0)
        w.lane(t).async { gate.wait() }
        let body = [UInt8](repeating: 9, count: 2 * WriteBehind.pieceSize)
        body.withUnsafeBytes { w.write(t, fd: fd, $0.baseAddress!, count: body.count, at: 0) }
        let size = Mutex(-1)
        let ended = DispatchSemaphore(value: 0)
        w.finish(t, fd: fd) { _, _ in
            var st = stat()
            size.withLock { $0 = stat(path, &st) == 0 ? Int(st.st_size) : -1 }
            ended.signal()
        }
        // Held, the lane cannot deliver the end: given half a second to do so wrongly.
        let early = ended.wait(timeout: .now() + 0.5) == .success
        #expect(!early, "the end was delivered before its pieces were written")
        gate.signal()
        if !early { ended.wait() }
        #expect(size.withLock { $0 } == body.count)
    }

    @Test("a write that fails stops the transfer's later pieces and is what its end reports")
    func failedWrite() throws {
        let tmp = try TempDir()
        let path = tmp.path + "/part"
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        let fd = open(path, O_RDONLY | O_CLOEXEC)  // every pwrite fails: EBADF
        #expect(fd >= 0)
        let w = WriteBehind(lanes: 1, capacity: 2)
        let t = transfer(1, path: path)
        let body = [UInt8](repeating: 7, count: 200_000)
        body.withUnsafeBytes { w.write(t, fd: fd, $0.baseAddress!, count: body.count, at: 0) }
        let r = finishAndWait(w, t, fd: fd)
        #expect(r.error == EBADF)
        #expect(r.checksum == nil, "a checksum of bytes that were not written")
        #expect(t.writeError.load(ordering: .relaxed) == EBADF, "the transfer thread is not told to stop")
    }
}
