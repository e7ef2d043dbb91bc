import ImageAssembly
import JigdoFormat
import PartSources
import Synchronization
import TestSupport
import Testing

/// A source over local parts that records what `ImageReader` asks of it: each plan handed to
/// `reading` (its parts, in order) and each part read; `wait` makes `reading` throw instead.
private final class PlanRecorder: PartSource {
    let inner: LocalParts
    let wait: Bool
    let plans = Mutex<[[Int]]>([])
    let reads = Mutex<[Int]>([])

    init(_ inner: LocalParts, wait: Bool = false) {
        self.inner = inner
        self.wait = wait
    }

    func readPart(_ index: Int, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        reads.withLock { $0.append(index) }
        try inner.readPart(index, at: offset, into: buffer)
    }

    func isLocallyAvailable(_ index: Int) -> Bool { inner.isLocallyAvailable(index) }

    func reading(_ parts: ReadParts, _ read: () throws -> Void) throws {
        plans.withLock { $0.append(Array(parts)) }
        if wait { throw WouldWait { $0(nil) } }
        try read()
    }
}

/// `ImageReader` maps a read to its areas once and hands a read of several parts to
/// `PartSource.reading` before a byte of it is read.
@Suite struct ReadPlanningTests {
    /// Part areas of the image in order: (area start, length, part).
    func partAreas(_ info: TemplateInfo) -> [(offset: Int64, length: Int64, part: Int)] {
        info.layout.compactMap { e in
            if case .part(let p) = e.source { return (e.imageOffset, e.length, p) }
            return nil
        }
    }

    @Test("a read over several parts is planned once with exactly its parts in read order; its bytes are right")
    func severalPartsArePlannedWhole() throws {
        let v = try Fixtures.release().variant("jf-md5-gz")
        let opened = try openImage(v)
        let recorder = PlanRecorder(opened.parts)
        let reader = ImageReader(template: opened.reader.template, parts: recorder)
        let areas = partAreas(reader.info).filter { $0.length >= 2 }
        try #require(areas.count >= 6)
        // From inside the 2nd part area to inside the 5th: every part area between them too.
        let start = areas[1].offset + areas[1].length / 2
        let end = areas[4].offset + areas[4].length / 2
        let expected = partAreas(reader.info).filter { $0.offset + $0.length > start && $0.offset < end }.map(\.part)
        let got = try reader.read(at: start, count: Int(end - start))
        #expect(recorder.plans.withLock { $0 } == [expected])
        #expect(recorder.reads.withLock { $0 } == expected)
        #expect(got == (try ReadOnlyFile(path: v.iso).read(at: start, count: Int(end - start))))
    }

    @Test("a read within one part is not planned (nothing to gather)")
    func onePartIsNotPlanned() throws {
        let v = try Fixtures.release().variant("jf-md5-gz")
        let opened = try openImage(v)
        let recorder = PlanRecorder(opened.parts)
        let reader = ImageReader(template: opened.reader.template, parts: recorder)
        let area = try #require(partAreas(reader.info).first { $0.length >= 16 })
        let got = try reader.read(at: area.offset + 4, count: Int(area.length) - 8)
        #expect(recorder.plans.withLock { $0 }.isEmpty)
        #expect(recorder.reads.withLock { $0 } == [area.part])
        #expect(got == (try ReadOnlyFile(path: v.iso).read(at: area.offset + 4, count: Int(area.length) - 8)))
    }

    @Test("a plan that must wait (WouldWait) stops the read before any part is read")
    func waitingPlanReadsNothing() throws {
        let v = try Fixtures.release().variant("jf-md5-gz")
        let opened = try openImage(v)
        let recorder = PlanRecorder(opened.parts, wait: true)
        let reader = ImageReader(template: opened.reader.template, parts: recorder)
        let areas = partAreas(reader.info)
        try #require(areas.count >= 3)
        #expect(throws: WouldWait.self) {
            try reader.read(at: areas[0].offset, count: Int(areas[2].offset + areas[2].length - areas[0].offset))
        }
        #expect(recorder.plans.withLock { $0 }.count == 1)
        #expect(recorder.reads.withLock { $0 }.isEmpty)
    }
}
