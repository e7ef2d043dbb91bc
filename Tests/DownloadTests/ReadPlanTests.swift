import Dispatch
import Foundation
import ImageAssembly
import JigdoFormat
import PartSources
import Synchronization
import TestSupport
import Testing

/// The end of a `WouldWait`, for a test standing in for the FUSE bridge.
private final class WaitEnd: Sendable {
    private let error = Mutex<JigdoError?>(nil)
    private let signal = DispatchSemaphore(value: 0)
    func set(_ e: JigdoError?) { error.withLock { $0 = e }; signal.signal() }
    /// The error the wait ended with (nil: the parts are there); throws when it never ends.
    func wait() throws -> JigdoError? {
        guard signal.wait(timeout: .now() + 120) == .success else { throw DownloadTestError("the wait never ended") }
        return error.withLock { $0 }
    }
}

/// A read of several missing parts starts them all at once and waits once (`PartSource.reading`).
/// The parts come from fault-server.py's `/gate/3/`: it holds every answer until three parts
/// were asked for (or 20 s passed). Before, a read started only the next missing part: the
/// server saw one request, its gate opened only at the timeout, and these tests fail.
@Suite("Reads planned whole: every missing part of a read is started at once", .serialized)
struct ReadPlanTests {
    /// No stall detection while the gate holds the answers.
    func gateConfig() -> DownloadConfig {
        var c = fastConfig()
        c.lowSpeedTime = 120
        return c
    }

    /// A range of the image from inside one part area to inside the third after it, covering
    /// three part areas with bytes and distinct checksums (and template data only between them).
    func threeParts(_ o: Opened) -> (offset: Int64, count: Int)? {
        let template = o.image.template
        var window: [(area: LayoutEntry, part: Int)] = []
        for e in template.layout {
            guard case .part(let p) = e.source else { continue }
            window.append((e, p))
            if window.count > 3 { window.removeFirst() }
            guard window.count == 3, Set(window.map { template.parts[$0.part].checksum }).count == 3,
                  window.allSatisfy({ $0.area.length >= 2 }) else { continue }
            let start = window[0].area.imageOffset + window[0].area.length / 2
            let end = window[2].area.imageOffset + window[2].area.length / 2
            return (start, Int(end - start))
        }
        return nil
    }

    /// The release behind the gate of three, opened with an empty cache (in the TempDir), and a
    /// range of three missing parts.
    func gated() throws -> (FaultServer, TempDir, Opened, offset: Int64, count: Int) {
        let fault = try FaultServer(root: try DownloadFixture.release())
        do {
            let tmp = try TempDir()
            let o = try Opened(servers: [fault.url + "gate/3/tree/"], cacheDir: tmp.path + "/cache", config: gateConfig())
            guard let (offset, count) = threeParts(o) else {
                o.downloader.shutdown()
                throw DownloadTestError("no three consecutive parts in the fixture")
            }
            return (fault, tmp, o, offset, count)
        } catch {
            fault.stop()
            throw error
        }
    }

    /// How many parts the server had been asked for when it sent its first answer.
    func askedBeforeFirstAnswer(_ fault: FaultServer) -> Int? {
        fault.requests().first { $0.mode == "gate-released" }.flatMap { Int($0.range) }
    }

    @Test("a FUSE-style read (ReadContext.withoutWaiting) over three missing parts starts all three, waits once, and is right")
    func nonWaitingReadStartsAllParts() throws {
        let (fault, tmp, o, offset, count) = try gated()
        defer { fault.stop(); o.downloader.shutdown(); withExtendedLifetime(tmp) {} }
        // As the bridge does: run the read without waiting; on WouldWait, wait for its end
        // (holding the request's pins) and run it again.
        let holds = ReadHolds()
        defer { holds.releaseAll() }
        var got: [UInt8]?
        var waits = 0
        while got == nil, waits < 10 {
            do {
                got = try ReadContext.withoutWaiting(holding: holds) { try o.reader.read(at: offset, count: count) }
            } catch let wait as WouldWait {
                waits += 1
                let end = WaitEnd()
                wait.register { end.set($0) }
                if let error = try end.wait() { throw error }
            }
        }
        let asked = try #require(askedBeforeFirstAnswer(fault))
        #expect(asked >= 3, "the server was asked for \(asked) part(s) before it answered the first")
        #expect(waits == 1, "the read waited \(waits) times")
        let original = try ReadOnlyFile(path: o.iso)
        #expect(got == (try original.read(at: offset, count: count)))
    }

    @Test("a blocking read over three missing parts starts all three at once and is right")
    func blockingReadStartsAllParts() throws {
        let (fault, tmp, o, offset, count) = try gated()
        defer { fault.stop(); o.downloader.shutdown(); withExtendedLifetime(tmp) {} }
        let got = try o.reader.read(at: offset, count: count)
        let asked = try #require(askedBeforeFirstAnswer(fault))
        #expect(asked >= 3, "the server was asked for \(asked) part(s) before it answered the first")
        let original = try ReadOnlyFile(path: o.iso)
        #expect(got == (try original.read(at: offset, count: count)))
        // Every part was fetched once.
        let paths = fault.requests().filter { $0.mode == "gate" }.map(\.path)
        #expect(Set(paths).count == paths.count, "\(paths)")
    }

    @Test("a read over three parts whose first fails: answered with that part's error, once, while the others still download")
    func failureOfOnePartAnswersTheRead() throws {
        let release = try DownloadFixture.release()
        let fault = try FaultServer(root: release)
        defer { fault.stop() }
        let tmp = try TempDir()
        // 404 everywhere: every part fails (after its attempts).
        let o = try Opened(servers: [fault.url + "404/tree/"], cacheDir: tmp.path + "/cache")
        defer { o.downloader.shutdown() }
        let (offset, count) = try #require(threeParts(o))
        let holds = ReadHolds()
        defer { holds.releaseAll() }
        do {
            _ = try ReadContext.withoutWaiting(holding: holds) { try o.reader.read(at: offset, count: count) }
            Issue.record("the read did not wait")
        } catch let wait as WouldWait {
            let calls = Mutex(0)
            let end = WaitEnd()
            wait.register { e in
                calls.withLock { $0 += 1 }
                end.set(e)
            }
            let error = try end.wait()
            #expect(error != nil, "a failed part must answer the read with its error")
            // All three parts end (each failed) before the store is idle; `done` was called once.
            for _ in 0..<6000 where o.store.statistics().downloading > 0 { usleep(10_000) }
            #expect(o.store.statistics().downloading == 0)
            #expect(calls.withLock { $0 } == 1)
            // All three were asked for (before, only the first: the read was answered with its error).
            #expect(Set(fault.requests().map(\.path)).count == 3, "\(fault.requests().map(\.path))")
        }
        #expect(throws: JigdoError.self) { try o.reader.read(at: offset, count: count) }
    }
}
