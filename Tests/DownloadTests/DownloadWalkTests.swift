import PartSources
import Testing

// The download decisions of one part and the mirrors' health, driven without any network:
// fake transfer outcomes and a fake clock.

private let a = "http://a.example/debian/pool/x.deb"
private let b = "http://b.example/debian/pool/x.deb"
private let c = "http://a.example/other/pool/x.deb"

private func failure(_ reason: TransferError.Reason) -> DownloadWalk.Outcome {
    .failed(TransferError(reason: reason))
}

/// The low-speed limit ("Operation too slow"): a stall.
private let stall = failure(.timedOut("Operation too slow"))
/// "Couldn't connect": transient.
private let refused = failure(.connectFailed("Couldn't connect"))

@Suite("DownloadWalk and MirrorHealth: the decisions of a part's download, without I/O")
struct DownloadWalkTests {
    @Test("transient errors are retried on the same URL with doubling delays, then the next location is tried and blamed once")
    func retriesWithBackoffThenFallback() {
        var w = DownloadWalk(urls: [a, b], attemptsPerLocation: 3, retryDelay: 0.5)
        #expect(w.start().action == .fetch(url: a, fromZero: false))
        #expect(w.handle(refused) == .init(action: .retry(url: a, after: 0.5)))
        #expect(w.handle(refused) == .init(action: .retry(url: a, after: 1.0)))
        let third = w.handle(refused)
        #expect(third.action == .fetch(url: b, fromZero: false))
        #expect(third.blame == a && !third.demote)
        let done = w.handle(.transferred(matches: true, resumed: false))
        #expect(done.action == .succeeded && done.credit == b && done.blame == nil)
    }

    @Test("a permanent error (404) or wrong bytes move on at once; when every location failed, the error names each URL")
    func fallbackAndGiveUp() {
        var w = DownloadWalk(urls: [a, b], attemptsPerLocation: 3, retryDelay: 0.5)
        _ = w.start()
        let first = w.handle(failure(.status(404)))
        #expect(first.action == .fetch(url: b, fromZero: false) && first.blame == a)
        let last = w.handle(.transferred(matches: false, resumed: false))
        #expect(last.blame == b)
        guard case .giveUp(let errors) = last.action else {
            Issue.record("expected giveUp, got \(last.action)")
            return
        }
        #expect(errors.count == 2)
        #expect(errors[0].hasPrefix(a) && errors[0].contains("HTTP status 404"))
        #expect(errors[1].hasPrefix(b) && errors[1].contains("wrong checksum"))
    }

    @Test("a stall demotes its mirror at once, with no retry on it")
    func stallDemotes() {
        var w = DownloadWalk(urls: [a, b], attemptsPerLocation: 3, retryDelay: 0.5)
        _ = w.start()
        let step = w.handle(stall)
        #expect(step.action == .fetch(url: b, fromZero: false))
        #expect(step.blame == a && step.demote)
        #expect(w.freshConnect, "a stalled connection is not reused")
    }

    @Test("a resumed file that mismatches, or a refused range, restarts from byte 0 once on the same URL")
    func restartFromZeroOnce() {
        var w = DownloadWalk(urls: [a, b], attemptsPerLocation: 1, retryDelay: 0)
        _ = w.start()
        #expect(w.handle(.transferred(matches: false, resumed: true)).action == .fetch(url: a, fromZero: true))
        // Once only: the second mismatch blames the mirror.
        let again = w.handle(.transferred(matches: false, resumed: true))
        #expect(again.action == .fetch(url: b, fromZero: false) && again.blame == a)

        var r = DownloadWalk(urls: [a], attemptsPerLocation: 2, retryDelay: 0.25)
        _ = r.start()
        #expect(r.handle(failure(.rangeRefused)).action == .fetch(url: a, fromZero: true))
        #expect(r.handle(failure(.rangeRefused)).action == .retry(url: a, after: 0.25))
    }

    @Test("a response that breaks HTTP blames its mirror and asks for a fresh connection; a full cache falls back to memory without blame")
    func brokenResponsesAndMemory() {
        var w = DownloadWalk(urls: [a, b], attemptsPerLocation: 3, retryDelay: 0.5)
        _ = w.start()
        #expect(!w.freshConnect)
        let step = w.handle(failure(.protocolViolation("Content-Length 10 for a request of 20 bytes")))
        #expect(step.action == .fetch(url: b, fromZero: false) && step.blame == a)
        #expect(w.freshConnect)
        let memory = w.handle(failure(.diskFull("No space left on device")))
        #expect(memory.action == .memory(url: b) && memory.blame == nil)
        let skipped = w.skip("the part is too large to keep in memory")
        #expect(skipped.blame == nil)
        if case .giveUp(let errors) = skipped.action {
            #expect(errors.last?.contains("too large") == true)
        } else {
            Issue.record("expected giveUp, got \(skipped.action)")
        }
    }

    @Test("cancellation (shutdown) gives up at once, without trying further locations")
    func cancellation() {
        var w = DownloadWalk(urls: [a, b], attemptsPerLocation: 3, retryDelay: 0.5)
        _ = w.start()
        let step = w.handle(failure(.cancelled))
        #expect(step.blame == nil)
        guard case .giveUp(let errors) = step.action else {
            Issue.record("expected giveUp, got \(step.action)")
            return
        }
        #expect(errors == ["\(a): cancelled"])
        #expect(w.currentURL == nil)
    }

    @Test("no location at all gives up at the start")
    func noLocations() {
        var w = DownloadWalk(urls: [], attemptsPerLocation: 3, retryDelay: 0.5)
        #expect(w.start().action == .giveUp(errors: []))
    }

    @Test("MirrorHealth: three failures in a row demote a location for the penalty time (fake clock); a success or the time passing restores it; other locations on the host are unaffected")
    func mirrorHealth() {
        var h = MirrorHealth()
        h.penalty = 100
        let location = { (u: String) in String(u.dropLast("pool/x.deb".count)) }
        let la = location(a), lc = location(c)
        #expect(la != lc && a.hasPrefix("http://a.example/") && c.hasPrefix("http://a.example/"))
        h.noteFailure(la, now: 10, demote: false)
        h.noteFailure(la, now: 11, demote: false)
        #expect(!h.isDemoted(la, now: 12))
        #expect(h.order([a, b, c], now: 12, location: location) == [a, b, c])
        h.noteFailure(la, now: 12, demote: false)
        #expect(h.isDemoted(la, now: 13))
        #expect(h.order([a, b, c], now: 13, location: location) == [b, c, a], "the other mirror on host a stays first")
        #expect(!h.isDemoted(la, now: 112), "demoted until the penalty has passed since the last failure")
        #expect(h.failures[la] == 3 && h.failures[lc] == nil)
        h.noteSuccess(la)
        #expect(!h.isDemoted(la, now: 13))

        // A stall demotes at once.
        h.noteFailure(lc, now: 50, demote: true)
        #expect(h.isDemoted(lc, now: 51))
        #expect(h.order([c, b], now: 51, location: location) == [b, c])
    }

    /// Location of these tests' URLs: the URL less the part's path.
    private static func location(_ u: String) -> String { String(u.dropLast("pool/x.deb".count)) }

    @Test("several mirrors of equal weight share the parts: unmeasured ones alternate by what they still have to send; the others stay as fallbacks in file order")
    func equalMirrorsShareTheWork() {
        var h = MirrorHealth()
        let urls = [(url: a, weight: 0), (url: b, weight: 0)]
        var firsts: [String] = []
        for _ in 0..<4 {
            let order = h.order(urls, length: 1000, now: 1, location: Self.location)
            #expect(Set(order) == [a, b], "every location stays in the walk as a fallback")
            firsts.append(order[0])
            h.noteStarted(Self.location(order[0]), bytes: 1000, now: 1)
        }
        #expect(firsts == [a, b, a, b])
        // With nothing outstanding anywhere: file order.
        h.noteEnded(Self.location(a), bytes: 1000, received: 1000, now: 2)
        h.noteEnded(Self.location(a), bytes: 1000, received: 1000, now: 2)
        #expect(h.order(urls, length: 1000, now: 3, location: Self.location)[0] == a, "a has nothing outstanding, b has 2000 bytes")
    }

    @Test("a mirror measured four times as fast gets about four parts in five while both are kept busy (fake clock)")
    func workByMeasuredSpeed() {
        var h = MirrorHealth()
        h.minimumSample = 0
        let la = Self.location(a), lb = Self.location(b)
        let second: UInt64 = 1_000_000_000
        // Measured: a delivered 4 MB in one second, b 1 MB.
        h.noteStarted(la, bytes: 4_000_000, now: 0)
        h.noteStarted(lb, bytes: 1_000_000, now: 0)
        h.noteEnded(la, bytes: 4_000_000, received: 4_000_000, now: second)
        h.noteEnded(lb, bytes: 1_000_000, received: 1_000_000, now: second)
        #expect(h.rate(la) == 4_000_000 && h.rate(lb) == 1_000_000)
        var count = [la: 0, lb: 0]
        for _ in 0..<100 {
            let first = h.order([(a, 0), (b, 0)], length: 100_000, now: 2 * second, location: Self.location)[0]
            count[Self.location(first), default: 0] += 1
            h.noteStarted(Self.location(first), bytes: 100_000, now: 2 * second)
        }
        #expect((78...82).contains(count[la]!), "\(count)")
        #expect(count[la]! + count[lb]! == 100)
    }

    @Test("a lower weight (--try-last) or a demoted mirror is never preferred, however busy the others are")
    func weightsAndDemotionWin() {
        var h = MirrorHealth()
        h.penalty = 100
        for _ in 0..<10 { h.noteStarted(Self.location(a), bytes: 1 << 30, now: 1) }
        #expect(h.order([(a, 1), (b, 0)], length: 1000, now: 1, location: Self.location) == [a, b], "b is --try-last")
        #expect(h.order([(a, 0), (b, 0)], length: 1000, now: 1, location: Self.location) == [b, a], "a has 10 GiB to send")
        h.noteFailure(Self.location(b), now: 1, demote: true)
        #expect(h.order([(a, 0), (b, 0)], length: 1000, now: 2, location: Self.location) == [a, b], "b stalled: demoted")
    }
}

@Suite("ReadStreams: read-ahead per sequential stream")
struct ReadStreamsTests {
    @Test("two interleaved sequential readers are each recognised and each get their own window; a random read starts none")
    func twoStreams() {
        var s = ReadStreams()
        let window = { (i: Int, _: Int) in i + 4 }
        var ahead: [Range<Int>] = []
        // Reader A at parts 10, 11, 12, ...; reader B at 100, 101, 102, ... interleaved.
        for step in 0..<4 {
            if let r = s.note(10 + step, windowEnd: window) { ahead.append(r) }
            if let r = s.note(100 + step, windowEnd: window) { ahead.append(r) }
        }
        #expect(s.count == 2)
        #expect(ahead.contains { $0.contains(13) && $0.contains(15) }, "\(ahead)")
        #expect(ahead.contains { $0.contains(103) && $0.contains(105) }, "\(ahead)")
        // Each part is handed out once per stream: windows do not overlap.
        let all = ahead.flatMap { Array($0) }
        #expect(Set(all).count == all.count)
        // A single read elsewhere is a new stream, with no read-ahead yet.
        #expect(s.note(500, windowEnd: window) == nil)
    }

    @Test("more streams than followed: the least recently read is forgotten")
    func bounded() {
        var s = ReadStreams()
        s.maxStreams = 2
        _ = s.note(1, windowEnd: { i, _ in i + 1 })
        _ = s.note(50, windowEnd: { i, _ in i + 1 })
        _ = s.note(90, windowEnd: { i, _ in i + 1 })
        #expect(s.count == 2)
    }
}
