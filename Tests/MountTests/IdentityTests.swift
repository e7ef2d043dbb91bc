import Foundation
import JigdoFormat
import TestSupport
import Testing

// Issue 19: an image's identity (size, mtime, inode) follows its content, not our copies of
// the .jigdo: the same over remounts by URL (the .jigdo fetched again) and by local path (its
// servers edited, the SOURCEs in another order). And the log names a relative SOURCE as the
// mount table does.

/// What `stat` says of a file, as far as web servers, rsync and make look at it.
struct StatIdentity: Equatable, CustomStringConvertible {
    var inode: UInt64
    var size: Int64
    var seconds: Int
    var nanoseconds: Int

    init(_ path: String) throws {
        var st = stat()
        guard stat(path, &st) == 0 else { throw HarnessError("stat \(path): \(errnoText(errno))") }
        inode = UInt64(st.st_ino)
        size = Int64(st.st_size)
        seconds = st.st_mtim.tv_sec
        nanoseconds = st.st_mtim.tv_nsec
    }

    var description: String { "ino \(inode) size \(size) mtime \(seconds).\(nanoseconds)" }
}

/// Sets a file's mtime (and atime) to `seconds` since the epoch.
func setModificationTime(_ path: String, seconds: Int) throws {
    let times = [timespec(tv_sec: seconds, tv_nsec: 0), timespec(tv_sec: seconds, tv_nsec: 0)]
    guard utimensat(AT_FDCWD, path, times, 0) == 0 else { throw HarnessError("utimensat \(path): \(errnoText(errno))") }
}

/// A .jigdo's text (jigdo-file writes it plain, publishers gzip it).
func jigdoText(_ path: String) throws -> String {
    String(decoding: try Decompression.gunzipConcatenated(try readBytes(path), limit: 1 << 26), as: UTF8.self)
}

/// Writes `text` as the .jigdo at `path`, replacing the first line that starts with each key
/// of `replacing` by its value.
func writeJigdo(_ text: String, to path: String, replacing: [String: String]) throws {
    var done = Set<String>()
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
        for (prefix, new) in replacing where !done.contains(prefix) && line.hasPrefix(prefix) {
            done.insert(prefix)
            return new
        }
        return String(line)
    }
    guard done.count == replacing.count else { throw HarnessError("\(path): no line starting with \(Set(replacing.keys).subtracting(done))") }
    try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
}

@Suite(.serialized, .enabled(if: Harness.canMount, "needs root, /dev/fuse and fusermount3"))
struct IdentityTests {
    @Test("a .jigdo re-downloaded with the same bytes keeps the image's mtime and inode, also with an empty cache")
    func remountByURLKeepsIdentity() throws {
        let variant = try Fixtures.release().variant("jf-md5-gz")
        let dir = try Harness.makeTempDir("identity-url")
        defer { removeTree(dir) }
        let www = dir + "/www"
        try FileManager.default.createDirectory(atPath: www, withIntermediateDirectories: true)
        try variant.copyJigdoAndTemplate(into: www)
        try setModificationTime(www + "/release.template", seconds: 1_700_000_000)
        let nginx = try Nginx(root: www)
        defer { nginx.stop() }
        let url = nginx.url + "release.jigdo"

        func mounted(cache: String) throws -> StatIdentity {
            try Harness.withMount([url], options: ["--cache-dir", cache]) { try StatIdentity($0 + "/release.iso") }
        }
        let first = try mounted(cache: dir + "/cache")
        // The image's time is its template's (the server's Last-Modified of it).
        #expect(first.seconds == 1_700_000_000 && first.nanoseconds == 0, "\(first)")
        // The same bytes, published again: a new Last-Modified, a new cached copy of the .jigdo.
        try setModificationTime(www + "/release.jigdo", seconds: 1_750_000_000)
        let again = try mounted(cache: dir + "/cache")
        #expect(again == first, "first \(first), after the .jigdo was fetched again \(again)")
        // Another machine (nothing cached) sees the same identity.
        let fresh = try mounted(cache: dir + "/other-cache")
        #expect(fresh == first, "first \(first), with an empty cache \(fresh)")
        let jigdoFetches = nginx.requests().filter { $0.path == "/release.jigdo" && $0.status == 200 }
        #expect(jigdoFetches.count == 3, "the .jigdo was fetched at each mount: \(jigdoFetches)")
    }

    @Test("a local .jigdo: editing its servers or mounting the SOURCEs in another order keeps each image's mtime and inode")
    func localEditsAndOrderKeepIdentity() throws {
        let a = try Fixtures.release().variant("jf-md5-gz")
        let b = try Fixtures.smallRelease().variant("jf-sha256-bz2")
        let dir = try Harness.makeTempDir("identity-local")
        defer { removeTree(dir) }
        try FileManager.default.copyItem(atPath: a.template, toPath: dir + "/a.template")
        try FileManager.default.copyItem(atPath: b.template, toPath: dir + "/b.template")
        let aText = try jigdoText(a.jigdo)
        try writeJigdo(aText, to: dir + "/a.jigdo", replacing: ["Filename=": "Filename=a.iso", "Template=": "Template=a.template"])
        try writeJigdo(try jigdoText(b.jigdo), to: dir + "/b.jigdo", replacing: ["Filename=": "Filename=b.iso", "Template=": "Template=b.template"])

        func identities(_ sources: [String]) throws -> [String: StatIdentity] {
            try Harness.withMount(sources.map { dir + "/" + $0 }) { mnt in
                ["a": try StatIdentity(mnt + "/a.iso"), "b": try StatIdentity(mnt + "/b.iso")]
            }
        }
        let before = try identities(["a.jigdo", "b.jigdo"])
        #expect(before["a"]?.inode != before["b"]?.inode)
        let template = try StatIdentity(dir + "/a.template")
        #expect(before["a"]?.seconds == template.seconds && before["a"]?.nanoseconds == template.nanoseconds,
                "a.iso \(before["a"]!) has its template's time \(template)")
        // The servers edited (a new mirror), the file written later.
        try writeJigdo(aText, to: dir + "/a.jigdo", replacing: [
            "Filename=": "Filename=a.iso", "Template=": "Template=a.template", "[Servers]": "[Servers]\nMirror=http://127.0.0.1:9/",
        ])
        try setModificationTime(dir + "/a.jigdo", seconds: template.seconds + 1000)
        let after = try identities(["b.jigdo", "a.jigdo"])
        #expect(after == before, "before \(before), after the edit and in the other order \(after)")
    }

    @Test("a relative SOURCE is named in the log as in the mount table (absolute), not from the daemon's /")
    func relativeSourceInTheLog() throws {
        let variant = try Fixtures.release().variant("jf-md5-gz")
        let dir = try Harness.makeTempDir("relative")
        defer { removeTree(dir) }
        try variant.copyJigdoAndTemplate(into: dir)
        let log = dir + "/daemon.log"
        try Harness.withMount(["release.jigdo"], options: ["--log-file", log], cwd: dir) { mnt in
            var text = ""
            try Harness.waitUntil("the mount's log line") {
                text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                return text.contains("mounted ")
            }
            #expect(text.contains("mounted release.iso from \(dir)/release.jigdo"), "log: \(text)")
            #expect(!text.contains("from /release.jigdo"), "log: \(text)")
        }
    }
}
