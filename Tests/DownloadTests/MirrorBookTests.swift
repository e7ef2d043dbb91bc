import PartSources
import Testing

// The mirrors' book and the walk's decision when a remembered redirect target fails, without
// any network: fake outcomes and explicit times.

private let second: UInt64 = 1_000_000_000

@Suite("MirrorBook: redirects, failures and health in one value; the walk decides after a redirect target fails")
struct MirrorBookTests {
    @Test("a redirector's answer is kept as a prefix mapping, used for other parts below it until it expires, and forgotten on demand")
    func redirectsRemembered() throws {
        var book = MirrorBook()
        let answer = book.learnRedirect(from: "http://redir.test/debian/pool/a/x.deb",
                                        to: "http://m1.test/mirror/debian/pool/a/x.deb", now: 10 * second)
        let learned = try #require(answer)
        #expect(learned.from == "http://redir.test/" && learned.to == "http://m1.test/mirror/")
        #expect(book.applyRedirect("http://redir.test/debian/pool/b/y.deb", now: 11 * second) == "http://m1.test/mirror/debian/pool/b/y.deb")
        #expect(book.applyRedirect("http://other.test/debian/pool/b/y.deb", now: 11 * second) == "http://other.test/debian/pool/b/y.deb")
        // Expired: the redirector is asked again.
        let later = 10 * second + MirrorBook.redirectLifetime
        #expect(book.applyRedirect("http://redir.test/debian/pool/b/y.deb", now: later) == "http://redir.test/debian/pool/b/y.deb")
        book.forgetRedirect(for: "http://redir.test/debian/pool/c/z.deb")
        #expect(book.applyRedirect("http://redir.test/debian/pool/b/y.deb", now: 11 * second) == "http://redir.test/debian/pool/b/y.deb")
    }

    @Test("no mapping without a common tail, for the same prefix, or to a target that is not http(s)")
    func redirectsRefused() {
        var book = MirrorBook()
        let noTail = book.learnRedirect(from: "http://r.test/a/x.deb", to: "http://m.test/b/y.deb", now: 0)
        let same = book.learnRedirect(from: "http://r.test/a/x.deb", to: "http://r.test/a/x.deb", now: 0)
        let notHTTP = book.learnRedirect(from: "http://r.test/debian/a/x.deb", to: "file:///etc/debian/a/x.deb", now: 0)
        #expect(noTail == nil && same == nil && notHTTP == nil)
        #expect(book.applyRedirect("http://r.test/debian/a/x.deb", now: 0) == "http://r.test/debian/a/x.deb")
    }

    @Test("failures count per host for status and demote their location; a success ends the run of failures")
    func failuresAndHealth() {
        var book = MirrorBook()
        for _ in 0..<3 { book.noteFailure(location: "http://a.test/debian/", host: "http://a.test", now: 5 * second, demote: false) }
        book.noteFailure(location: "http://a.test/other/", host: "http://a.test", now: 5 * second, demote: false)
        #expect(book.failuresByHost == ["http://a.test": 4])
        #expect(book.health.isDemoted("http://a.test/debian/", now: 6 * second))
        #expect(!book.health.isDemoted("http://a.test/other/", now: 6 * second))
        book.noteSuccess(location: "http://a.test/debian/")
        #expect(!book.health.isDemoted("http://a.test/debian/", now: 6 * second))
    }

    @Test("the fetcher's scheduling is in the same value: a transfer's slot, a congestion halving the limit, and one copy of every figure for status")
    func schedulingAndFigures() {
        var settings = ConcurrencyGovernor.Settings()
        settings.initial = 4
        var book = MirrorBook(governor: settings)
        let loc = "http://a.test/debian/", host = "http://a.test"
        let may = book.mayStart(loc, host: host, demand: false)
        #expect(may)
        book.started(loc, host: host, now: 1 * second)
        book.received(loc, bytes: 1000)
        let changed = book.ended(loc, host: host, bytes: 0, congestion: true, measured: true, now: 2 * second)
        #expect(changed?.limit == 2)
        book.noteFailure(location: loc, host: host, now: 2 * second, demote: false)
        let figures = book.figures
        #expect(figures.failuresByHost == [host: 1] && figures.failuresByLocation == [loc: 1])
        #expect(figures.concurrency[loc]?.limit == 2 && figures.concurrency.count == 1)
    }

    @Test("a failed redirect target: the location itself is asked again once, unblamed; a second time it fails as the location")
    func redirectTargetFailed() {
        let a = "http://redir.test/debian/x.deb", b = "http://b.test/debian/x.deb"
        var w = DownloadWalk(urls: [a, b], attemptsPerLocation: 1, retryDelay: 0.5)
        _ = w.start()
        let target404 = TransferError(reason: .status(404))
        #expect(w.handle(.redirectTargetFailed(target404)) == .init(action: .fetch(url: a, fromZero: false)))
        let again = w.handle(.redirectTargetFailed(target404))
        #expect(again.action == .fetch(url: b, fromZero: false) && again.blame == a)
        // The next location has its own once.
        #expect(w.handle(.redirectTargetFailed(target404)) == .init(action: .fetch(url: b, fromZero: false)))
    }
}
