import Foundation
import Synchronization
import TestSupport
import Testing

// No FUSE worker waits for a download: with a mirror that stalls every part and many reads of
// missing parts outstanding, everything else the mount serves still answers at once, and
// SIGTERM answers the waiting reads with EIO and ends the daemon promptly.

/// Reads still blocked in pread, and how the finished ones ended.
final class OutstandingReads: @unchecked Sendable {
    let results = Mutex<[Int32]>([])
    let group = DispatchGroup()

    /// Starts `count` threads, each reading `length` bytes at its offset of `path`.
    func start(_ path: String, offsets: [Int64], length: Int) {
        for offset in offsets {
            group.enter()
            Thread { [self] in
                defer { group.leave() }
                let fd = open(path, O_RDONLY)
                guard fd >= 0 else { results.withLock { $0.append(errno) }; return }
                defer { close(fd) }
                switch preadFile(fd, at: offset, count: length) {
                case .success: results.withLock { $0.append(0) }
                case .failure(let e): results.withLock { $0.append(e.code.rawValue) }
                }
            }.start()
        }
    }

    var finished: Int { results.withLock { $0.count } }
}

/// Seconds `body` took (for generous bounds only; the figures belong to bench/).
func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = Date()
    try body()
    return Date().timeIntervalSince(start)
}

@Suite(.serialized, .enabled(if: Harness.canMount, "needs root, /dev/fuse and fusermount3"))
struct StallTests {
    @Test("a mirror stalling every part, 64 reads waiting: browsing, template and local reads and status answer at once; SIGTERM answers the waiting reads with EIO and the daemon exits")
    func stallingMirrorBlocksNothingElse() throws {
        let cold = try ColdRelease()
        defer { cold.remove() }
        let fault = try FaultServer(root: cold.release.root)
        defer { fault.stop() }
        let packages = cold.packages()
        let localPackage = packages[packages.count / 3]
        let scan = cold.dir + "/scan"
        try FileManager.default.createDirectory(atPath: scan, withIntermediateDirectories: true)
        try copyTree(cold.release.tree + "/" + localPackage, to: scan + "/local")
        let mnt = try Harness.makeTempDir("mnt")
        defer { Harness.cleanUpMount(mnt) }
        try Harness.check([Harness.jigdofs, "mount", "--server", "Base=\(fault.url)stall/tree/", "--cache-dir", cold.cacheDir,
                           "--scan", scan, cold.jigdo, mnt])
        try #require(Harness.isMounted(mnt))
        let daemons = Harness.pids(withArgument: mnt)
        try #require(daemons.count == 1)

        // 64 reads spread over the image: nearly all of its bytes are parts, none cached.
        let image = mnt + "/release.iso"
        let size = cold.size(cold.iso)
        let reads = OutstandingReads()
        reads.start(image, offsets: (0..<64).map { size / 64 * Int64($0) / 2048 * 2048 + 65536 }, length: 4096)
        try Harness.waitUntil("the stalling mirror is asked for parts") { fault.requests().count >= 4 }

        let view = mnt + "/release.iso.d"
        let small = regularFiles(under: cold.release.tree).filter { cold.size($0) < 1024 }.prefix(8)
        let elapsed = try seconds {
            let listed = try Harness.check(["ls", "-lR", view]).stdout
            #expect(listed.contains("README.txt"))
            // Template-only bytes: files below jigdo-file's part minimum.
            for file in small {
                try Harness.check(["cmp", view + file.dropFirst(cold.release.tree.count), file])
            }
            // A local part (--scan).
            try Harness.check(["cmp", view + "/" + localPackage, cold.release.tree + "/" + localPackage])
            let status = try StatusReport.of(mnt).images[0].parts
            #expect(status.transfersInFlight > 0)
        }
        // Generous (the goal is 100 ms each; bench/ has figures): far below the 20 s
        // a stalled transfer takes to be cut, so nothing here waited for one.
        #expect(elapsed < 8, "browse, template and local reads and status took \(elapsed) s")
        #expect(reads.finished < 48, "the reads should still be waiting for the stalled mirror (\(reads.finished) done)")

        // SIGTERM: every waiting read is answered (EIO), the daemon is gone promptly.
        let waited = try seconds {
            kill(daemons[0], SIGTERM)
            try Harness.waitUntil("the daemon exits", seconds: 10) { kill(daemons[0], 0) != 0 || Harness.isZombie(daemons[0]) }
        }
        #expect(waited < 3, "the daemon took \(waited) s to exit")
        #expect(reads.group.wait(timeout: .now() + 10) == .success, "reads still blocked after the daemon exited")
        let results = reads.results.withLock { $0 }
        #expect(results.count == 64)
        #expect(results.filter { $0 != 0 }.count >= 16, "\(results)")
        #expect(!Harness.isMounted(mnt))
    }

    @Test("fstat of an open image asks the daemon after the attribute timeout and still answers (the file handle names the image)")
    func fstatAfterAttributeTimeout() throws {
        let release = try Fixtures.release()
        let variant = release.variant("jf-md5-gz")
        try Harness.withMount([variant.jigdo], options: ["--attr-timeout", "0"]) { mnt in
            let fd = open(mnt + "/release.iso", O_RDONLY)
            try #require(fd >= 0)
            defer { close(fd) }
            let want = (try FileManager.default.attributesOfItem(atPath: variant.iso)[.size] as? Int64) ?? -1
            for _ in 0..<3 {
                var st = stat()
                #expect(fstat(fd, &st) == 0, "fstat: errno \(errno)")
                #expect(Int64(st.st_size) == want)
                var buf = [UInt8](repeating: 0, count: 16)
                #expect(pread(fd, &buf, 16, 0) == 16)
            }
            // Through a path too, with nothing cached by the kernel.
            #expect((try FileManager.default.attributesOfItem(atPath: mnt + "/release.iso")[.size] as? Int64) == want)
        }
    }
}

@Suite(.serialized, .enabled(if: Harness.canMount, "needs root, /dev/fuse and fusermount3"))
struct BackgroundPrefetchTests {
    @Test("mount --prefetch: with no read at all the daemon fetches every part once; status shows the progress; the image is right")
    func prefetchOption() throws {
        let cold = try ColdRelease()
        defer { cold.remove() }
        let parts = try cold.distinctParts()
        try Harness.withMount([cold.jigdo], options: cold.options + ["--prefetch"]) { mnt in
            try Harness.waitUntil("every part is cached", seconds: 120) {
                ((try? StatusReport.of(mnt).images[0].parts.partsMissing) ?? -1) == 0
            }
            let status = try StatusReport.of(mnt).images[0].parts
            #expect(status.partsCached == parts)
            let requests = cold.partRequests()
            #expect(requests.count == parts && Set(requests.map(\.path)).count == parts)
            try Harness.check(["cmp", mnt + "/release.iso", cold.iso])
            #expect(cold.partRequests().count == parts, "the reads needed no further download")
        }
    }
}
