#if canImport(Glibc)
import Glibc
#endif
import JigdoFormat
@testable import PartSources
import Testing

// The pipeline's one record of every part, driven by events without any I/O: handles are
// numbers, failures a fake error, identities made up.

/// A fake failure for the table.
struct Failed: Error, Equatable { var why: String }

/// A made-up file identity (`n` tells them apart).
func identity(_ n: Int64) -> FileIdentity {
    var st = stat()
    st.st_ino = 1000 + UInt(n)
    st.st_size = 10
    st.st_mtim.tv_sec = Int(n)
    return FileIdentity(st)
}

@Suite("PartTable: every part's state, waiters and attempts, without I/O")
struct PartTableTests {
    typealias Table = PartTable<Int, Failed, Int>

    private func isHere(_ t: Table, _ key: Int32) -> Bool { t.isHere(key) }

    @Test("a demand starts one attempt; more demands join it; waiters get nil when it is done, and later demands find it here")
    func demandJoinAndWake() {
        var t = Table()
        let first = t.demand(1)
        #expect(first.start && first.promote == nil)
        let second = t.demand(1)
        #expect(!second.start && second.attempt == first.attempt)
        #expect(t.fetching == 1 && t.fetchingKeys == [1])
        guard case .registered = t.register(1, attempt: first.attempt, 1) else { Issue.record("not registered"); return }
        guard case .registered = t.register(1, attempt: first.attempt, 2) else { Issue.record("not registered"); return }
        let end = t.finished(1, attempt: first.attempt, .landed)
        #expect(end.waiters == [1, 2] && end.readerWaited && end.close.isEmpty)
        #expect(t.isHere(1) && t.fetching == 0)
        guard case .now(nil) = t.register(1, attempt: first.attempt, 3) else { Issue.record("a done part should answer at once"); return }
        let ahead = t.prefetch(1)
        #expect(ahead == nil, "read-ahead starts nothing for a part here")
    }

    @Test("a failure reaches the waiters of that attempt (cancellation is one: shutdown fails every download); the next demand starts a new attempt")
    func failureAndRetry() {
        var t = Table()
        let a = t.demand(1)
        _ = t.register(1, attempt: a.attempt, 7)
        let end = t.finished(1, attempt: a.attempt, .failed(Failed(why: "cancelled")))
        #expect(end.waiters == [7])
        // A waiter registering after the failure gets it at once ...
        guard case .now(let e) = t.register(1, attempt: a.attempt, 8), e == Failed(why: "cancelled") else {
            Issue.record("expected the failure at once")
            return
        }
        guard case .failed(a.attempt, Failed(why: "cancelled"))? = t.state(1) else { Issue.record("not failed"); return }
        // ... and a new reader starts over.
        let b = t.demand(1)
        #expect(b.start && b.attempt > a.attempt)
        guard case .fetching(b.attempt, false, 0)? = t.state(1) else { Issue.record("not fetching the new attempt"); return }
    }

    @Test("read-ahead starts only idle parts; a reader arriving promotes its queued transfer once")
    func prefetchAndPromotion() {
        var t = Table()
        let a = t.prefetch(1)
        #expect(a != nil)
        let again = t.prefetch(1)
        #expect(again == nil, "already downloading")
        #expect(t.isPrefetch(1, attempt: a!))
        let promoteNow = t.submitted(1, attempt: a!, transfer: 42, asPrefetch: true)
        #expect(!promoteNow)
        let d = t.demand(1)
        #expect(!d.start && d.promote == 42 && d.attempt == a)
        #expect(!t.isPrefetch(1, attempt: a!))
        let once = t.demand(1)
        #expect(once.promote == nil, "promoted once")
        _ = t.finished(1, attempt: a!, .landed)
        let afterDone = t.prefetch(1)
        #expect(afterDone == nil, "done")
    }

    @Test("another image's reader promotes this image's read-ahead transfer once; a demand transfer is not promoted")
    func promoteIfPrefetch() {
        var t = Table()
        let a = t.prefetch(1)!
        _ = t.submitted(1, attempt: a, transfer: 9, asPrefetch: true)
        let first = t.promoteIfPrefetch(1), second = t.promoteIfPrefetch(1)
        #expect(first == 9 && second == nil)
    }

    @Test("a reader arriving while the read-ahead transfer is being submitted: the submission says to promote it")
    func promotionDuringSubmission() {
        var t = Table()
        let a = t.prefetch(1)!
        let d = t.demand(1)
        #expect(d.promote == nil, "no transfer queued yet")
        let promote = t.submitted(1, attempt: a, transfer: 5, asPrefetch: true)
        #expect(promote)
    }

    @Test("the end of an older attempt changes nothing: the newer attempt and its waiters stay; a file it opened is closed")
    func staleAttempt() {
        var t = Table()
        let a = t.demand(1)
        _ = t.finished(1, attempt: a.attempt, .failed(Failed(why: "404")))
        let b = t.demand(1)
        _ = t.register(1, attempt: b.attempt, 1)
        let stale = t.finished(1, attempt: a.attempt, .opened(77, identity(1)))
        #expect(stale.waiters.isEmpty && stale.close == [77])
        #expect(!t.isHere(1) && t.fetching == 1)
        let end = t.finished(1, attempt: b.attempt, .landed)
        #expect(end.waiters == [1])
    }

    @Test("a download that ends with its file committed and opened is served from that file: the read finds it open, with the identity it was hashed at")
    func finishedOpen() {
        var t = Table()
        let a = t.demand(1)
        let end = t.finished(1, attempt: a.attempt, .opened(5, identity(1)))
        #expect(end.close.isEmpty)
        guard case .open(5, identity(1))? = t.read(1) else { Issue.record("not open: \(String(describing: t.state(1)))"); return }
        #expect(t.verifiedIdentity(1) == identity(1))
    }

    @Test("at most openLimit files are open: the least recently read is closed and stays verified by its identity, and opening it again with that identity needs no check")
    func openFilesBounded() {
        var t = Table(openLimit: 2)
        let c1 = t.opened(1, 10, identity(1)), c2 = t.opened(2, 20, identity(2))
        #expect(c1.isEmpty && c2.isEmpty)
        _ = t.read(1)  // 2 is now the least recently read
        let c3 = t.opened(3, 30, identity(3))
        #expect(c3 == [20])
        guard case .verified(identity(2))? = t.state(2) else { Issue.record("2 should be verified, closed"); return }
        #expect(t.verifiedIdentity(2) == identity(2))
        guard case .open(10, _)? = t.state(1), case .open(30, _)? = t.state(3) else { Issue.record("1 and 3 should be open"); return }
        // Opened again: 1 is the least recently read now.
        let c4 = t.opened(2, 21, identity(2))
        #expect(c4 == [10])
    }

    @Test("a file whose identity changed after a read does not stand: its entry goes (checked again or fetched again); one this process touched stands")
    func identityChanged() {
        var t = Table()
        _ = t.opened(1, 10, identity(1))
        let touched = t.confirm(1, identity: identity(1))
        #expect(touched.stands && touched.close == nil)
        let changed = t.confirm(1, identity: identity(2))
        #expect(!changed.stands && changed.close == 10)
        #expect(t.state(1) == nil)
        let gone = t.confirm(1, identity: nil)
        #expect(!gone.stands)
    }

    @Test("a cache file that failed its check or was evicted is forgotten; a part being downloaded is not")
    func forgetFile() {
        var t = Table()
        _ = t.opened(1, 10, identity(1))
        let closed = t.forgetFile(1)
        #expect(closed == 10)
        #expect(t.state(1) == nil)
        let a = t.demand(2)
        let none = t.forgetFile(2)
        #expect(none == nil)
        #expect(t.fetching == 1)
        _ = t.finished(2, attempt: a.attempt, .landed)
        t.forgetFile(2)
        let again = t.demand(2)
        #expect(again.start)
    }

    @Test("parts kept in memory stay within the budget, least recently read first out; a download ending in memory is served from it")
    func memoryBudget() {
        var t = Table(memoryBudget: 10)
        let a = t.demand(1)
        _ = t.finished(1, attempt: a.attempt, .inMemory([1, 2, 3, 4]))
        guard case .memory([1, 2, 3, 4])? = t.read(1) else { Issue.record("not in memory"); return }
        _ = t.kept(2, bytes: [5, 6, 7, 8])
        _ = t.read(1)  // 2 is now the least recently read
        _ = t.kept(3, bytes: [9, 9, 9, 9])
        #expect(t.state(2) == nil, "evicted")
        #expect(t.memoryKeys == [1, 3])
        _ = t.kept(4, bytes: [UInt8](repeating: 0, count: 11))
        #expect(t.state(4) == nil, "larger than the budget: not kept")
    }

    @Test("a local copy is a state: found once, refused when its check fails; it never replaces a download's state")
    func localStates() {
        var t = Table()
        t.foundLocal(1)
        guard case .local? = t.read(1) else { Issue.record("not local"); return }
        #expect(t.isBusyOrHere(1) && !t.isHere(1))
        t.localRefused(1)
        #expect(t.state(1) == nil)
        let a = t.demand(2)
        t.foundLocal(2)
        t.localRefused(2)
        guard case .fetching(a.attempt, false, 0)? = t.state(2) else { Issue.record("download state lost"); return }
    }
}

@Suite("RecencyList: least recently used order with costs")
struct RecencyListTests {
    @Test("adds, touches and removes keep the order and the total")
    func order() {
        var l = RecencyList<Int>()
        l.add(1, cost: 3)
        l.add(2, cost: 4)
        l.add(3, cost: 5)
        #expect(l.oldest == 1 && l.newest == 3 && l.total == 12)
        l.touch(1)
        #expect(l.oldest == 2 && l.newest == 1)
        l.remove(2)
        #expect(l.oldest == 3 && l.total == 8 && l.count == 2)
        l.add(3, cost: 1)
        #expect(l.newest == 3 && l.oldest == 1 && l.total == 4)
        l.remove(1)
        l.remove(3)
        #expect(l.oldest == nil && l.newest == nil && l.total == 0)
    }
}

extension PartTableTests {
    @Test("a demand for a part another reader just opened or kept in memory starts nothing: its waiter is answered at once and the reader reads again")
    func demandForPartHere() {
        var t = Table()
        _ = t.opened(1, 10, identity(1))
        let d = t.demand(1)
        #expect(!d.start && d.promote == nil)
        guard case .now(nil) = t.register(1, attempt: d.attempt, 1) else { Issue.record("should answer at once"); return }
        guard case .open(10, _)? = t.state(1) else { Issue.record("the open file was dropped"); return }
        _ = t.kept(2, bytes: [1])
        let m = t.demand(2)
        #expect(!m.start)
        guard case .memory? = t.state(2) else { Issue.record("the bytes were dropped"); return }
    }
}

@Suite("hostOf: scheme://host[:port] of a URL, byte-wise")
struct HostOfTests {
    @Test("the scheme and host of a URL, the whole text when it has no scheme://", arguments: [
        ("http://h.example:8080/debian/pool/x.deb", "http://h.example:8080"),
        ("https://h.example", "https://h.example"),
        ("ftp://h/x://y", "ftp://h"),
        ("http:/x://y/z", "http:/x://y"),
        ("pool/main/x.deb", "pool/main/x.deb"),
        ("a:b", "a:b"),
        ("http://", "http://"),
        ("http://ä.example/ü", "http://ä.example"),
    ])
    func host(url: String, expected: String) {
        #expect(hostOf(url) == expected)
    }
}

extension PartTableTests {
    @Test("parts of one checksum share one entry: reading the second copy after the first downloads nothing more, and a read of both at once asks once")
    func duplicatePartsShareAnEntry() throws {
        let f = try FakePipeline(count: 4, sameBytes: [2: 0, 3: 1])
        #expect(f.pipeline.key(2) == 0 && f.pipeline.key(3) == 1 && f.pipeline.key(1) == 1)
        let first = BackgroundRead(f.pipeline, part: 0)
        let copy = BackgroundRead(f.pipeline, part: 2)
        let p = try #require(f.fetcher.next())
        f.fetcher.serve(p, f.parts[0])
        #expect(first.bytes() == f.parts[0])
        #expect(copy.bytes() == f.parts[2])
        #expect(f.fetcher.requested.count == 1, "\(f.fetcher.requested)")
        // One entry, open: the copy was served from the file the download opened, not checked again.
        guard case .open? = f.pipeline.event({ $0.state(f.pipeline.key(2)) }) else {
            Issue.record("the copy's entry is not the open one")
            return
        }
        // The other pair: the later copy first, then the earlier one.
        let later = BackgroundRead(f.pipeline, part: 3)
        f.fetcher.serve(try #require(f.fetcher.next()), f.parts[3])
        #expect(later.bytes() == f.parts[3])
        let earlier = BackgroundRead(f.pipeline, part: 1)
        #expect(earlier.bytes() == f.parts[1])
        #expect(f.fetcher.requested.count == 2, "\(f.fetcher.requested)")
    }
}
