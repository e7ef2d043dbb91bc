import Foundation
import JigdoFormat
import PartSources
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Failures of the disk, injected through `Syscalls` (no root tmpfs needed): a full or read-only
/// cache costs caching, never a read or a file; a failed read names the file. Each rule covers
/// only this test's temporary directory, so tests running in parallel are not affected.
@Suite struct InjectedFailureTests {
    /// A checksum of the cache's kind (its bytes are never checked here).
    let sum = Checksum([UInt8](repeating: 0xAB, count: 16))

    @Test func readOnlyCacheDirectoryLeavesTheCacheUnwritable() throws {
        let tmp = try TemporaryDirectory()
        defer { tmp.remove() }
        // The same layout without a failure: writable (so the assertion below can fail).
        #expect(try PartCache(directory: tmp.file("ok")).isWritable)

        let failure = Syscalls.injectFailure([.mkdir], under: tmp.file("ro"), errno: EROFS)
        defer { failure.remove() }
        let cache = try PartCache(directory: tmp.file("ro"))
        #expect(!cache.isWritable)
        #expect(!FileManager.default.fileExists(atPath: tmp.file("ro/parts")))
    }

    @Test func fullDiskWhenOpeningAPartialFileCarriesENOSPC() throws {
        let tmp = try TemporaryDirectory()
        defer { tmp.remove() }
        let cache = try PartCache(directory: tmp.path)

        let failure = Syscalls.injectFailure([.open], under: tmp.file("partial"), errno: ENOSPC)
        defer { failure.remove() }
        do {
            let fd = try cache.lockPartial(for: sum)
            if let fd { close(fd) }
            Issue.record("lockPartial succeeded on a full disk")
        } catch let e as JigdoError {
            #expect(e.firstErrno?.rawValue == ENOSPC)
            #expect(PartCache.costsOnlyCaching(e.firstErrno))
            #expect(e.description.contains(cache.partialPath(for: sum)))
        }
        // The rule ends: the same call now takes the lock.
        failure.remove()
        let fd = try #require(try cache.lockPartial(for: sum))
        close(fd)
    }

    @Test func readOnlyDiskAtCommitKeepsThePartialFile() throws {
        let tmp = try TemporaryDirectory()
        defer { tmp.remove() }
        let cache = try PartCache(directory: tmp.path)
        let partial = cache.partialPath(for: sum)
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: partial))

        let failure = Syscalls.injectFailure([.rename], under: tmp.file("parts"), errno: EROFS)
        defer { failure.remove() }
        #expect {
            try cache.commit(partial: partial, as: sum)
        } throws: { error in
            (error as? JigdoError)?.firstErrno?.rawValue == EROFS
        }
        // Nothing half-done: the part is not in the cache, the downloaded bytes are still there.
        #expect(!cache.contains(sum, length: 3))
        #expect(FileManager.default.contents(atPath: partial) == Data([1, 2, 3]))

        failure.remove()
        try cache.commit(partial: partial, as: sum)
        #expect(cache.contains(sum, length: 3))
    }

    @Test func aFailedReadNamesTheFileAndOnlyTheInjectedCallFails() throws {
        let tmp = try TemporaryDirectory()
        defer { tmp.remove() }
        let path = tmp.file("part")
        try Data([UInt8](repeating: 7, count: 100)).write(to: URL(fileURLWithPath: path))

        let failure = Syscalls.injectFailure([.read], under: tmp.path, errno: EIO, times: 1)
        defer { failure.remove() }
        let file = try ReadOnlyFile(path: path)
        #expect {
            _ = try file.read(at: 0, count: 10)
        } throws: { error in
            guard let e = error as? JigdoError else { return false }
            return e.kind == .io && e.path == path && "\(e)".contains(errnoText(EIO))
        }
        // One failure only: the next read gets the bytes.
        #expect(try file.read(at: 90, count: 10) == [UInt8](repeating: 7, count: 10))
    }
}
