import PartSources
import Testing

// The per-mirror concurrency decisions, driven without any network: a simulated link whose
// throughput depends on the transfers running on it (shared equally among them), a fake clock.

/// A link: each transfer gets at most `perTransfer` bytes/s (its round trips), all of them
/// together at most `capacity` (the line).
private struct FakeLink {
    var perTransfer: Double
    var capacity: Double
    func rate(_ n: Int) -> Double { min(Double(n) * perTransfer, capacity) }
}

private let second: UInt64 = 1_000_000_000

/// Runs transfers of `partBytes` on `location` for `seconds` of fake time, starting new ones
/// whenever the governor allows and transfers are queued; returns the limit after every
/// transfer ended. Queued: `waiting(now)` less those running (`.max`: always more), or, with
/// `bursts`, what `bursts(tick)` added at each tenth of a second. `link(now)` may change.
/// Stops early once `stop` holds after an end.
@discardableResult
private func simulate(
    _ g: inout ConcurrencyGovernor, location: String = "http://m/debian/", host: String = "http://m",
    from start: UInt64 = 0, seconds: Double, partBytes: Double = 150_000,
    waiting: (UInt64) -> Int = { _ in .max }, bursts: ((UInt64) -> Int)? = nil,
    until stop: (ConcurrencyGovernor, [Int]) -> Bool = { _, _ in false }, link: (UInt64) -> FakeLink
) -> (limits: [Int], end: UInt64, maxRunning: Int) {
    var now = start
    let end = start + UInt64(seconds * Double(second))
    var remaining: [Double] = []
    var limits: [Int] = []
    var maxRunning = 0
    var queued = bursts == nil ? waiting(now) : 0
    var tick = start
    while now < end {
        if let bursts {
            while tick <= now { queued += bursts(tick); tick += second / 10 }
        }
        while queued > 0 && g.mayStart(location, host: host, demand: false) {
            g.started(location, host: host, now: now)
            remaining.append(partBytes)
            queued -= 1
        }
        maxRunning = max(maxRunning, remaining.count)
        guard !remaining.isEmpty else {
            now += second / 10
            if bursts == nil { queued = waiting(now) }
            continue
        }
        let each = link(now).rate(remaining.count) / Double(remaining.count)
        let first = remaining.min()!
        let dt = first / each
        now += max(1, UInt64(dt * Double(second)))
        remaining = remaining.map { $0 - first }
        let done = remaining.filter { $0 <= 0.5 }.count
        remaining.removeAll { $0 <= 0.5 }
        for _ in 0..<done {
            g.ended(location, host: host, bytes: Int64(partBytes), now: now)
            limits.append(g.limit(location))
        }
        if stop(g, limits) { break }
        if bursts == nil { queued = waiting(now) == .max ? .max : max(0, waiting(now) - remaining.count) }
    }
    return (limits, now, maxRunning)
}

/// One period of `location` run by hand: its limit kept full (more always waiting), twice the
/// limit transfers ending evenly over 0.6 s at `rate` bytes/s.
private func period(_ g: inout ConcurrencyGovernor, rate: Double, now: inout UInt64,
                    location: String = "http://m/debian/", host: String = "http://m") {
    let n = 2 * g.limit(location)
    let step = UInt64(0.6 / Double(n) * Double(second))
    let bytes = Int64(rate * 0.6 / Double(n))
    while g.mayStart(location, host: host, demand: false) { g.started(location, host: host, now: now) }
    for _ in 0..<n {
        now += step
        g.ended(location, host: host, bytes: bytes, now: now)
        while g.mayStart(location, host: host, demand: false) { g.started(location, host: host, now: now) }
    }
}

/// `count` transfers of `location` (started now if the limit allows) ending a millisecond
/// apart with `bytes` each.
private func quickEnds(_ g: inout ConcurrencyGovernor, count: Int, bytes: Int64, now: inout UInt64,
                       location: String = "http://m/debian/", host: String = "http://m") {
    while g.mayStart(location, host: host, demand: false) { g.started(location, host: host, now: now) }
    for _ in 0..<count {
        now += second / 1000
        g.ended(location, host: host, bytes: bytes, now: now)
        while g.mayStart(location, host: host, demand: false) { g.started(location, host: host, now: now) }
    }
}

/// Like `simulate`, with parts of the given sizes (in turn) and their bytes told to the
/// governor as they arrive (`received`), as HTTPDownloader does: the limits after each end.
private func simulateArrivals(_ g: inout ConcurrencyGovernor, seconds: Double, sizes: [Double],
                              link: FakeLink) -> [Int] {
    let location = "http://m/debian/", host = "http://m"
    var now: UInt64 = 0
    let end = UInt64(seconds * Double(second))
    var remaining: [Double] = []
    var next = 0
    var owed = 0.0
    var limits: [Int] = []
    while now < end {
        while g.mayStart(location, host: host, demand: false) {
            g.started(location, host: host, now: now)
            remaining.append(sizes[next % sizes.count])
            next += 1
        }
        let each = link.rate(remaining.count) / Double(remaining.count)
        // Steps of at most 10 ms, as libcurl's loop reports progress between ends.
        let dt = min(remaining.min()! / each, 0.01)
        now += max(1, UInt64(dt * Double(second)))
        owed += each * dt * Double(remaining.count)
        let whole = owed.rounded(.down)
        g.received(location, bytes: Int64(whole))
        owed -= whole
        remaining = remaining.map { $0 - each * dt }
        let done = remaining.filter { $0 <= 0.5 }.count
        remaining.removeAll { $0 <= 0.5 }
        for _ in 0..<done {
            g.ended(location, host: host, bytes: 0, now: now)
            limits.append(g.limit(location))
        }
    }
    return limits
}

private func governor(initial: Int = 4, perHost: Int = 32, ceiling: Int = 64) -> ConcurrencyGovernor {
    var s = ConcurrencyGovernor.Settings()
    s.initial = initial
    s.perHost = perHost
    s.ceiling = ceiling
    return ConcurrencyGovernor(settings: s)
}

@Suite("ConcurrencyGovernor: transfers per mirror grow while its throughput grows")
struct ConcurrencyGovernorTests {
    @Test("a latency-bound mirror is given more transfers until its line is full, then held there")
    func growsToTheLine() {
        // 10 MB/s per transfer, 160 MB/s line: 16 transfers fill it.
        var g = governor(perHost: 64)
        let r = simulate(&g, seconds: 8, until: { g, limits in
            limits.contains(32) && g.locations["http://m/debian/"]?.phase != .growing
        }) { _ in FakeLink(perTransfer: 10e6, capacity: 160e6) }
        #expect(g.limit("http://m/debian/") == 16, "limits: \(Set(r.limits).sorted())")
        #expect(r.limits.contains(32), "32 was tried (and brought nothing)")
        #expect(g.locations["http://m/debian/"]?.phase != .growing)
    }

    @Test("parts of very different sizes: the rate is the bytes arriving, so each doubling that helps is kept")
    func mixedSizesGrow() {
        // 3 MB/s per transfer (its round trips), a 100 MB/s line: 32 transfers fill it. Most
        // parts are small, one in twenty is 8 MB (a kernel, an office suite): a period's ends are
        // then mostly small parts while the large ones run, or a large one ending at once.
        var sizes: [Double] = []
        for i in 0..<40 {
            let small = 20_000 + (i * 7_919) % 280_000
            sizes.append(i % 20 == 7 ? 8e6 : Double(small))
        }
        for trial in 0..<20 {
            var g = governor(initial: 8, perHost: 32, ceiling: 32)
            let cut = (trial * 3) % sizes.count
            let rotated = Array(sizes[cut...]) + Array(sizes[..<cut])
            let limits = simulateArrivals(&g, seconds: 6, sizes: rotated, link: FakeLink(perTransfer: 3e6, capacity: 100e6))
            var steps: [Int] = []
            for l in limits where steps.last != l { steps.append(l) }
            #expect(limits.last == 32, "trial \(trial): limits \(steps)")
            #expect(!zip(limits, limits.dropFirst()).contains { $1 < $0 }, "trial \(trial): a doubling that helped was taken back")
            // The rate of its last judgement (16 transfers of 3 MB/s: 48 MB/s) is what the
            // link carried, within a tenth.
            let rate = g.locations["http://m/debian/"]?.lastRate ?? 0
            #expect(abs(rate - 48e6) < 4.8e6, "trial \(trial): measured \(rate / 1e6) MB/s")
        }
    }

    @Test("a mirror one transfer already saturates keeps its initial limit")
    func saturatedStaysLow() {
        var g = governor()
        let r = simulate(&g, seconds: 5) { _ in FakeLink(perTransfer: 100e6, capacity: 100e6) }
        #expect(g.limit("http://m/debian/") == 4)
        #expect(r.limits.max() == 8, "one doubling was tried")
    }

    @Test("growth stops at the polite per-host cap and at the --jobs ceiling")
    func capped() {
        let unbounded = FakeLink(perTransfer: 10e6, capacity: .infinity)
        var polite = governor(perHost: 12, ceiling: 64)
        let a = simulate(&polite, seconds: 5) { _ in unbounded }
        #expect(polite.limit("http://m/debian/") == 12)
        #expect(a.maxRunning == 12)
        var jobs = governor(perHost: 64, ceiling: 20)
        let b = simulate(&jobs, seconds: 5) { _ in unbounded }
        #expect(jobs.limit("http://m/debian/") == 20)
        #expect(b.maxRunning == 20)
    }

    @Test("two locations on one host share its cap")
    func hostCapShared() {
        var g = governor(initial: 8, perHost: 10)
        for i in 0..<8 {
            let may = g.mayStart("http://m/a/", host: "http://m", demand: false)
            #expect(may)
            g.started("http://m/a/", host: "http://m", now: UInt64(i))
        }
        var second = 0
        while g.mayStart("http://m/b/", host: "http://m", demand: false) {
            g.started("http://m/b/", host: "http://m", now: 10)
            second += 1
        }
        #expect(second == 2)
        #expect(g.runningByHost["http://m"] == 10)
        // Another host is not affected; a reader that waits may use two more.
        let otherHost = g.mayStart("http://other/", host: "http://other", demand: false)
        let reader = g.mayStart("http://m/b/", host: "http://m", demand: true)
        let readAhead = g.mayStart("http://m/b/", host: "http://m", demand: false)
        #expect(otherHost)
        #expect(reader)
        #expect(!readAhead)
        g.ended("http://m/a/", host: "http://m", bytes: 0, measured: false, now: 11)
        #expect(g.runningByHost["http://m"] == 9)
        #expect(g.locations["http://m/a/"]?.running == 7)
    }

    @Test("a mirror asked for fewer transfers than its limit is not given more")
    func notHeldBackNoGrowth() {
        var g = governor()
        // The reader keeps at most 3 transfers queued: the limit of 4 never holds work back.
        let r = simulate(&g, seconds: 5, waiting: { _ in 3 }) { _ in FakeLink(perTransfer: 10e6, capacity: 1e9) }
        #expect(Set(r.limits) == [4])
    }

    @Test("a warm-up (not compared) comes after each change and ends once the transfers running then and `limit` more ended, however soon")
    func warmUp() {
        var g = governor(perHost: 64)
        var now: UInt64 = 0
        // The location's first transfers (connections being set up): 4 end within 4 ms.
        quickEnds(&g, count: 4, bytes: 1_000, now: &now)
        #expect(g.limit("http://m/debian/") == 4)
        period(&g, rate: 10e6, now: &now)  // compared: grows
        #expect(g.limit("http://m/debian/") == 8)
        // The change settling in, far below the rate: no verdict on 8 (it would step back). It
        // ends once the transfers running at the change and 8 more have ended.
        quickEnds(&g, count: 16, bytes: 1_000, now: &now)
        #expect(g.limit("http://m/debian/") == 8)
        period(&g, rate: 20e6, now: &now)  // 8 does bring more
        #expect(g.limit("http://m/debian/") == 16)
    }

    @Test("a stall or a 429/503 halves the limit, down to one")
    func congestionHalves() {
        var g = governor(perHost: 64)
        simulate(&g, seconds: 8, until: { g, limits in limits.contains(16) && g.limit("http://m/debian/") == 16 }) { _ in
            FakeLink(perTransfer: 10e6, capacity: 160e6)
        }
        #expect(g.limit("http://m/debian/") == 16)
        for expected in [8, 4, 2, 1, 1] {
            g.started("http://m/debian/", host: "http://m", now: 9 * second)
            g.ended("http://m/debian/", host: "http://m", bytes: 0, congestion: true, now: 9 * second)
            #expect(g.limit("http://m/debian/") == expected)
        }
    }

    @Test("a holding mirror tries more again later, and keeps them when the line got faster")
    func reprobes() {
        var g = governor(perHost: 64)
        // 40 MB/s until second 15, then 320 MB/s.
        let r = simulate(&g, seconds: 40) { now in
            FakeLink(perTransfer: 10e6, capacity: now < 15 * second ? 40e6 : 320e6)
        }
        #expect(r.limits.prefix(50).max()! <= 8)
        #expect(g.limit("http://m/debian/") >= 24, "limits: \(Set(r.limits).sorted())")
    }

    @Test("a mirror more transfers do not help is tried again soon after the first hold, then ever more rarely")
    func reprobeBacksOff() {
        // 4 transfers fill the line: every try of 8 brings nothing.
        var g = governor(initial: 4, perHost: 64)
        var now: UInt64 = 0
        var last = g.limit("http://m/debian/")
        var triesPerWindow: [Int] = []
        for _ in 0..<6 {
            let r = simulate(&g, from: now, seconds: 10) { _ in FakeLink(perTransfer: 10e6, capacity: 40e6) }
            now = r.end
            var tries = 0
            for l in r.limits {
                if l > last { tries += 1 }
                last = l
            }
            triesPerWindow.append(tries)
        }
        #expect(g.limit("http://m/debian/") == 4)
        // Holds of 2, 4, 8, 16, 32 s: two tries in the first 10 s (a misjudged doubling is
        // tried again after 2 s), at most one in the last 30 s.
        #expect(triesPerWindow[0] >= 2, "tries per 10 s: \(triesPerWindow)")
        #expect(triesPerWindow[3...].reduce(0, +) <= 1, "tries per 10 s: \(triesPerWindow)")
        #expect(triesPerWindow.reduce(0, +) <= 5, "tries per 10 s: \(triesPerWindow)")
    }

    @Test("under --limit-rate, a mirror that gets the whole rate is neither grown nor tried with more")
    func rateCeilingHolds() {
        // 10 MB/s per transfer, everything held to 20 MB/s: 2 transfers get the whole rate.
        var s = ConcurrencyGovernor.Settings()
        s.initial = 4
        s.perHost = 64
        s.ceiling = 64
        s.rateCeiling = 20e6
        var g = ConcurrencyGovernor(settings: s)
        let r = simulate(&g, seconds: 30) { _ in FakeLink(perTransfer: 10e6, capacity: 20e6) }
        #expect(r.limits.max() == 4, "limits: \(Set(r.limits).sorted())")
        #expect(r.maxRunning <= 4)
        // Without a ceiling, the same link is tried with 8 again and again.
        var free = governor(initial: 4, perHost: 64)
        let f = simulate(&free, seconds: 30) { _ in FakeLink(perTransfer: 10e6, capacity: 20e6) }
        #expect(f.limits.max()! > 4)
    }

    @Test("idle time between reads does not count as a slow mirror")
    func idleNotSlow() {
        var g = governor(perHost: 64)
        // Bursts of 150 transfers every 3 s (a reader that pauses) on a line more transfers fill
        // better: each burst takes well under a second; the pauses must not count.
        let r = simulate(&g, seconds: 120, bursts: { tick in (tick / (second / 10)) % 30 == 0 ? 150 : 0 }) { _ in
            FakeLink(perTransfer: 10e6, capacity: 1e9)
        }
        #expect(r.limits.allSatisfy { $0 >= 4 })
        // As on a line without pauses: every doubling brings more, up to the cap of 64
        // (counting the pauses as slowness stops the growth early).
        #expect(g.limit("http://m/debian/") == 64, "limits: \(Set(r.limits).sorted())")
    }
}
