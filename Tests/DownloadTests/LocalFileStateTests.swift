#if canImport(Glibc)
import Glibc
#endif
import Foundation
import ImageAssembly
@testable import JigdoFormat
@testable import PartSources
import Synchronization
import Testing

// A local source's checked file as a state of the part's entry (`PartTable.State.localFile`):
// handed over once, read by the table with one lookup and one pread, forgotten over the open
// files' bound and when the file changes.

extension PartTableTests {
    @Test("a local source's checked file is a state: a read marks it recent, the open files' bound closes the least recently read (cache or local) and forgets a local one, a changed identity forgets it")
    func localFileStates() {
        var t = Table(openLimit: 2)
        #expect(t.foundLocalFile(1, 10, base: 0, identity(1)).isEmpty)
        #expect(t.foundLocalFile(2, 20, base: 4096, identity(2)).isEmpty)
        guard case .localFile(20, 4096, identity(2))? = t.read(2) else { Issue.record("not a local file: \(String(describing: t.state(2)))"); return }
        #expect(t.isBusyOrHere(1) && !t.isHere(1), "read-ahead skips it; it is local, not downloaded")
        _ = t.read(1)  // 2 is now the least recently read
        // A cache file opened counts against the same bound: 2 is closed and forgotten.
        #expect(t.opened(3, 30, identity(3)) == [20])
        #expect(t.state(2) == nil, "a local file closed over the bound goes back to not known")
        guard case .localFile(10, 0, _)? = t.state(1) else { Issue.record("1 should stay open"); return }
        // Least recently read now: 1 (3 was opened after its read).
        #expect(t.foundLocalFile(4, 40, base: 0, identity(4)) == [10])
        #expect(t.state(1) == nil)
        guard case .open(30, _)? = t.state(3) else { Issue.record("the cache file should stay open"); return }
        // A changed identity: only the entry checked at that identity goes.
        #expect(t.localFileChanged(4, checked: identity(9)) == nil)
        #expect(t.localFileChanged(4, checked: identity(4)) == 40)
        #expect(t.state(4) == nil)
        let again = t.foundLocalFile(4, 41, base: 0, identity(5))
        #expect(again.isEmpty)
        guard case .localFile(41, 0, identity(5))? = t.state(4) else { Issue.record("not stored again"); return }
    }

    @Test("a local file never replaces a download, a cache file or bytes in memory; a demand for a part served from a local file starts nothing")
    func localFileDoesNotReplace() {
        var t = Table()
        let a = t.demand(1)
        #expect(t.foundLocalFile(1, 10, base: 0, identity(1)) == [10])
        guard case .fetching(a.attempt, false, 0)? = t.state(1) else { Issue.record("download state lost"); return }
        _ = t.opened(2, 20, identity(2))
        #expect(t.foundLocalFile(2, 21, base: 0, identity(2)) == [21])
        t.foundLocal(3)
        #expect(t.foundLocalFile(3, 30, base: 0, identity(3)).isEmpty, "a delegated local part takes the file handed over")
        let d = t.demand(3)
        #expect(!d.start)
        guard case .localFile(30, 0, _)? = t.state(3) else { Issue.record("the local file was dropped"); return }
    }
}

/// A local source that counts how often the pipeline asks it (for a file, or to read).
final class CountingCopies: LocalCopySource {
    let inner: LocalParts
    let copies = Mutex(0)
    let reads = Mutex(0)
    init(_ inner: LocalParts) { self.inner = inner }
    func checkedCopy(_ index: Int) throws -> LocalCopy? {
        copies.withLock { $0 += 1 }
        return try inner.checkedCopy(index)
    }
    func readPart(_ index: Int, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        reads.withLock { $0 += 1 }
        try inner.readPart(index, at: offset, into: buffer)
    }
    func isLocallyAvailable(_ index: Int) -> Bool { inner.isLocallyAvailable(index) }
    var asked: Int { copies.withLock { $0 } + reads.withLock { $0 } }
}

@Suite("PartPipeline: local parts kept by the table")
struct LocalFilePipelineTests {
    /// A fake-fetcher pipeline whose part 0 is in a `--scan` directory (written here, as
    /// `dir/p0`), behind a counting source.
    struct Fixture {
        let dir: TempDir
        let f: FakePipeline
        let source: CountingCopies
        var file: String { dir.path + "/p0" }

        init() throws {
            let dir = try TempDir()
            let made = Mutex<CountingCopies?>(nil)
            f = try FakePipeline(count: 2, local: { template, resolver, parts in
                try Data(parts[0]).write(to: URL(fileURLWithPath: dir.path + "/p0"))
                let c = CountingCopies(try LocalParts(template: template, resolver: resolver, scanDirectories: [dir.path]))
                made.withLock { $0 = c }
                return c
            })
            self.dir = dir
            source = try #require(made.withLock { $0 })
        }

        func read(_ part: Int = 0) throws -> [UInt8] {
            var buffer = [UInt8](repeating: 0, count: f.parts[part].count)
            try buffer.withUnsafeMutableBytes { try f.pipeline.readPart(part, at: 0, into: $0) }
            return buffer
        }
    }

    @Test("a local part's checked file is handed over once: later reads (whole or in pieces) do not ask the local source again")
    func handedOverOnce() throws {
        let x = try Fixture()
        #expect(try x.read() == x.f.parts[0])
        #expect(x.source.asked == 1)
        #expect(try x.read() == x.f.parts[0])
        var piece = [UInt8](repeating: 0, count: 100)
        try piece.withUnsafeMutableBytes { try x.f.pipeline.readPart(0, at: 1234, into: $0) }
        #expect(piece == Array(x.f.parts[0][1234..<1334]))
        #expect(x.source.asked == 1, "the local source was asked again: \(x.source.copies.withLock { $0 }) copies, \(x.source.reads.withLock { $0 }) reads")
        guard case .localFile(_, 0, _)? = x.f.pipeline.event({ $0.state(0) }) else { Issue.record("not kept as a local file"); return }
        #expect(x.f.fetcher.requested.isEmpty)
    }

    @Test("a local file rewritten after its check (other bytes, same size) is not served: the read checks it again, it is refused, and the part comes from a mirror")
    func changedLocalFileNotServed() throws {
        let x = try Fixture()
        #expect(try x.read() == x.f.parts[0])
        // Rewritten in place (same inode, same size); its mtime set apart so the change shows
        // whatever the file system's time granularity.
        let other = x.f.parts[0].map { $0 ^ 0xA5 }
        let fd = open(x.file, O_WRONLY)
        #expect(fd >= 0)
        #expect(other.withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, 0) } == other.count)
        var times = [timespec(tv_sec: 1_000_000, tv_nsec: 0), timespec(tv_sec: 1_000_000, tv_nsec: 0)]
        #expect(futimens(fd, &times) == 0)
        close(fd)
        let read = BackgroundRead(x.f.pipeline, part: 0)
        let p = try #require(x.f.fetcher.next())
        #expect(p.request.url == x.f.url("one", 0))
        x.f.fetcher.serve(p, x.f.parts[0])
        #expect(read.bytes() == x.f.parts[0])
        #expect(x.source.copies.withLock { $0 } == 2, "the changed file was not checked again")
        // The refusal stays: the next read is served from the cache, the local source says no
        // again without hashing.
        #expect(try x.read() == x.f.parts[0])
    }

    @Test("a local file that changed but still holds the part's bytes is checked again and served from the local file")
    func touchedLocalFileCheckedAgain() throws {
        let x = try Fixture()
        #expect(try x.read() == x.f.parts[0])
        var times = [timespec(tv_sec: 1_000_000, tv_nsec: 0), timespec(tv_sec: 1_000_000, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, x.file, &times, 0) == 0)
        #expect(try x.read() == x.f.parts[0])
        #expect(x.source.copies.withLock { $0 } == 2)
        #expect(x.f.fetcher.requested.isEmpty)
        guard case .localFile(_, 0, let id)? = x.f.pipeline.event({ $0.state(0) }) else { Issue.record("not kept as a local file"); return }
        #expect(id.modificationTimeNs == 1_000_000 * 1_000_000_000, "kept at the identity it was checked at again")
    }
}
