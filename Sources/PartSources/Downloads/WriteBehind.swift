#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import JigdoFormat
import Synchronization

/// Hashes and writes the bodies of file transfers off the transfer thread. The transfer thread
/// only copies the pieces of a body into a pooled buffer and queues it when full (or at the
/// end); a lane hashes it and writes it to the partial file. Why: one thread serves every connection, and the responses
/// of a full window arrive together. With the hash (MD5 is most of the cost) and the write on
/// that thread, the last response of such a burst waited for all the others; on a 20 ms link
/// that added about a third to every transfer, and at 0 ms that thread was the bottleneck.
///
/// Order: a transfer's pieces and its end go to one lane (by transfer id), and a lane runs its
/// items in order, so a transfer's bytes are hashed and written in order and its completion
/// runs after its last write. A lane owns the transfer's file descriptor, its hasher and its
/// write error from the first piece on: the transfer thread no longer touches them.
///
/// Memory: at most `capacity` buffers of `pieceSize` bytes are being filled, queued or written
/// (64 x 128 KiB = 8 MiB); a transfer thread that needs one more waits for a lane to give one
/// back (the disk or the hash is then the slower side, and the network waits, as it did when
/// both ran inline). Before it waits, the buffers being filled are queued, so a wait always
/// ends. Why this many: a full window's responses (32 of about 150 KB) arrive within a few
/// milliseconds, about 5 MB. When each 16 KiB piece took a buffer of its own, 32 buffers made
/// the transfer thread wait up to 34 ms in one `curl_multi_perform` (20 ms bench link: 8.1-8.4 s;
/// 128 buffers: 6.65 s). Full buffers touch all their pages: 128 of them took the daemon's peak
/// RSS to 60 MiB, 64 keep it at 55-59 MiB with the same times, 32 were slower at 20 ms.
final class WriteBehind: @unchecked Sendable {
    /// The bytes one buffer takes (libcurl's receive buffer is set to this too: fewer recv calls).
    static let pieceSize = 128 << 10

    private let lanes: [DispatchQueue]
    let pool: PiecePool

    init(lanes count: Int = WriteBehind.defaultLanes, capacity: Int = 64) {
        lanes = (0..<max(1, count)).map { DispatchQueue(label: "jigdofs.write-behind.\($0)") }
        pool = PiecePool(size: Self.pieceSize, capacity: max(2, capacity))
    }

    /// One lane per core, at least two, at most four: a burst is hashed on every core while
    /// the transfer thread mostly waits for the network (one lane hashes MD5 at several
    /// hundred MB/s).
    static var defaultLanes: Int { max(2, min(4, ProcessInfo.processInfo.activeProcessorCount)) }

    func lane(_ t: Transfer) -> DispatchQueue { lanes[Int(t.id % UInt64(lanes.count))] }

    /// Transfers with a buffer being filled (`Transfer.filling`), by id. Touched only by the
    /// thread that calls `write` and `finish` (the transfer thread).
    private var filling: [UInt64: Transfer] = [:]
    /// Buffers handed to lanes so far (for tests: pieces coalesce).
    private(set) var queuedWrites = 0

    /// Adds `count` bytes of `t`'s body for its file at `offset` (copied: the caller's bytes
    /// may be reused once this returns). Consecutive pieces fill one buffer, which goes to the
    /// lane once full (libcurl hands a body over in pieces of 16 KiB at most: one write and
    /// one hash call per piece were most of the lanes' cost besides MD5 itself). May wait for a
    /// free buffer; the buffers being filled are queued first, so the wait always ends.
    func write(_ t: Transfer, fd: Int32, _ data: UnsafeRawPointer, count: Int, at offset: Int64) {
        var done = 0
        while done < count {
            let at = offset + Int64(done)
            if let f = t.filling, f.fd != fd || f.at + Int64(f.count) != at { queue(t) }
            if t.filling == nil {
                t.filling = Transfer.Filling(piece: takePiece(), count: 0, at: at, fd: fd,
                                             since: DispatchTime.now().uptimeNanoseconds)
                filling[t.id] = t
            }
            let n = min(count - done, Self.pieceSize - t.filling!.count)
            (t.filling!.piece.bytes.baseAddress! + t.filling!.count).copyMemory(from: data + done, byteCount: n)
            t.filling!.count += n
            done += n
            if t.filling!.count == Self.pieceSize { queue(t) }
        }
    }

    /// Whether some buffer is being filled (the transfer thread then polls often enough for
    /// `flush(olderThan:)`).
    var isFilling: Bool { !filling.isEmpty }

    /// Queues the buffers that have been filling for `age` nanoseconds or more: a slow or
    /// stalled transfer's bytes reach its partial file (and survive a crash, for a resume)
    /// within about that time, as they did when every piece was written at once.
    func flush(olderThan age: UInt64) {
        guard !filling.isEmpty else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        for t in filling.values where now - min(now, t.filling!.since) >= age { queue(t) }
    }

    private func takePiece() -> Piece {
        if let p = pool.take(waiting: false) { return p }
        // Every buffer is out: those being filled go to their lanes, which give buffers back.
        for t in filling.values { queue(t) }
        return pool.take(waiting: true)!
    }

    /// Hands `t`'s buffer being filled (if any) to its lane, to be hashed and written.
    private func queue(_ t: Transfer) {
        guard let f = t.filling else { return }
        t.filling = nil
        filling[t.id] = nil
        queuedWrites += 1
        let pool = self.pool
        lane(t).async {
            defer { pool.giveBack(f.piece) }
            guard t.writeError.load(ordering: .relaxed) == 0 else { return }
            let bytes = UnsafeRawBufferPointer(start: f.piece.bytes.baseAddress, count: f.count)
            t.hasher?.update(bytes)
            var written = 0
            while written < f.count {
                let w = Syscalls.pwrite(f.fd, bytes.baseAddress! + written, f.count - written, off_t(f.at + Int64(written)))
                if w < 0 {
                    if errno == EINTR { continue }
                    t.writeError.store(errno, ordering: .relaxed)
                    return
                }
                written += w
            }
        }
    }

    /// After `t`'s last piece: queues what is left of its body, closes its file, and hands
    /// `deliver` the write error (0: none) and the checksum of everything hashed (nil without
    /// a hasher) once every piece is written.
    func finish(_ t: Transfer, fd: Int32, deliver: @escaping @Sendable (_ writeError: Int32, _ checksum: Checksum?) -> Void) {
        queue(t)
        lane(t).async {
            Syscalls.close(fd)
            let error = t.writeError.load(ordering: .relaxed)
            let sum = error == 0 ? t.hasher?.finalize() : nil
            DispatchQueue.global().async { deliver(error, sum) }
        }
    }
}

/// A buffer of `PiecePool`, owned by one writer at a time (hence sendable).
struct Piece: @unchecked Sendable {
    let bytes: UnsafeMutableRawBufferPointer
}

/// Buffers of one size, at most `capacity` out at once: `take` waits for one when all are out.
/// Kept for reuse (a fresh 128 KiB buffer is a fresh mapping: page faults and zeroing).
final class PiecePool: @unchecked Sendable {
    private struct Free: @unchecked Sendable {
        var list: [Piece] = []
        var allocated = 0
    }
    private let size: Int
    private let available: DispatchSemaphore
    private let free = Mutex(Free())

    init(size: Int, capacity: Int) {
        self.size = size
        available = DispatchSemaphore(value: capacity)
    }

    /// A buffer; without `waiting`, nil when all are out.
    func take(waiting: Bool = true) -> Piece? {
        if waiting {
            available.wait()
        } else if available.wait(timeout: .now()) == .timedOut {
            return nil
        }
        let kept = free.withLock { f -> Piece? in
            if let b = f.list.popLast() { return b }
            f.allocated += 1
            return nil
        }
        return kept ?? Piece(bytes: .allocate(byteCount: size, alignment: 4096))
    }

    /// Buffers allocated so far (never more than the capacity).
    var allocated: Int { free.withLock { $0.allocated } }

    func giveBack(_ b: Piece) {
        free.withLock { $0.list.append(b) }
        available.signal()
    }
}
