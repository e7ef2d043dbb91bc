import PartSources
import Testing

/// The sequential-read detection behind read-ahead (`ReadStreams`), without a store or server.
@Suite("ReadStreams: sequential reading is detected, random reading is not")
struct ReadStreamsTests {
    /// A window of `n` parts past the read.
    func window(_ n: Int) -> (Int, Int) -> Int { { i, _ in i + 1 + n } }

    @Test("the window is told the stream's steps so far, so it can grow with the run")
    func windowGrowsWithTheRun() {
        var s = ReadStreams()
        let growing = { (index: Int, run: Int) in index + 1 + 2 * run }
        #expect(s.note(0, windowEnd: growing) == nil)
        #expect(s.note(1, windowEnd: growing) == nil)
        #expect(s.note(2, windowEnd: growing) == 3..<7)
        // One step more: the window moves by one part and grows by two.
        #expect(s.note(3, windowEnd: growing) == 7..<10)
        // Re-reading a part is no step: nothing new.
        #expect(s.note(3, windowEnd: growing) == nil)
    }

    @Test("reads of parts 0, 1, 2: the third asks for the window after it; each further read only for what is new")
    func sequentialRun() {
        var s = ReadStreams()
        #expect(s.note(0, windowEnd: window(4)) == nil)
        #expect(s.note(1, windowEnd: window(4)) == nil)
        #expect(s.note(2, windowEnd: window(4)) == 3..<7)
        // The frontier moved: parts already asked for are not asked for again.
        #expect(s.note(3, windowEnd: window(4)) == 7..<8)
        #expect(s.note(4, windowEnd: window(4)) == 8..<9)
        // Steps of up to two parts continue the stream.
        #expect(s.note(6, windowEnd: window(4)) == 9..<11)
        #expect(s.count == 1)
    }

    @Test("reads far apart, and many reads of one part, never ask for read-ahead")
    func randomAndRepeatedReads() {
        var s = ReadStreams()
        for index in [0, 10, 20, 5, 40, 33, 70] {
            #expect(s.note(index, windowEnd: window(4)) == nil, "read of part \(index)")
        }
        var t = ReadStreams()
        for _ in 0..<10 {
            #expect(t.note(9, windowEnd: window(4)) == nil)
        }
        #expect(t.count == 1)
    }

    @Test("two interleaved sequential readers each get their own window")
    func interleavedStreams() {
        var s = ReadStreams()
        #expect(s.note(0, windowEnd: window(3)) == nil)
        #expect(s.note(100, windowEnd: window(3)) == nil)
        #expect(s.note(1, windowEnd: window(3)) == nil)
        #expect(s.note(101, windowEnd: window(3)) == nil)
        #expect(s.note(2, windowEnd: window(3)) == 3..<6)
        #expect(s.note(102, windowEnd: window(3)) == 103..<106)
        #expect(s.count == 2)
    }

    @Test("a window that ends at the read (the last part) asks for nothing")
    func emptyWindow() {
        var s = ReadStreams()
        let end = { (_: Int, _: Int) in 3 }
        #expect(s.note(0, windowEnd: end) == nil)
        #expect(s.note(1, windowEnd: end) == nil)
        #expect(s.note(2, windowEnd: end) == nil)
    }
}
