#if canImport(Glibc)
import Glibc
#endif
import Foundation
import FUSEBridge
import ImageAssembly
import JigdoFormat
import PartSources

// The words of the command line's common mistakes: a dead mount, a path that is no mount, a
// SOURCE that is not a .jigdo, errors about a URL that would name a cache file.

/// A SOURCE path that is something else than a .jigdo (an ISO, a template, a squashfs) is named
/// as what it is, before the .jigdo parser says something about gzip or [Image].
func refuseNonJigdo(_ path: String) throws {
    guard let what = fileKind(path) else { return }
    switch what {
    case .iso9660:
        throw CommandFailure(message: "\(path): is an ISO 9660 image, not a .jigdo file (jigdofs ls and cat read it as it is; give the .jigdo of the release)", code: 1)
    case .template:
        throw CommandFailure(message: "\(path): is a jigdo .template, not the .jigdo; give the .jigdo (the template is found next to it, or pass --template)", code: 1)
    case .squashfs:
        throw CommandFailure(message: "\(path): is a squashfs image, not a .jigdo file", code: 1)
    }
}

enum FileKind { case iso9660, template, squashfs }

/// What a local file is, by its first bytes (nil: possibly a .jigdo).
func fileKind(_ path: String) -> FileKind? {
    guard let f = try? ReadOnlyFile(path: path) else { return nil }
    guard let head = try? f.read(at: 0, count: Int(min(f.size, ISO9660Signature.offset + Int64(ISO9660Signature.length)))) else { return nil }
    let n = head.count
    if n >= 22, Array(head[0..<22]) == Array("JigsawDownload templat".utf8) { return .template }
    if n >= 4, Array(head[0..<4]) == Array("hsqs".utf8) { return .squashfs }
    if ISO9660Signature.matches(head: head) { return .iso9660 }
    return nil
}

/// Errors about a remote .jigdo name the URL, not the cache file it was fetched into.
func namingURL<T>(_ url: String, cacheDirectory: String, _ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch var e as JigdoError {
        // A refused cache entry: the line names the path to fix, not the URL.
        if CacheTrust.isRefusal(e) { throw e }
        let sources = (cacheDirectory.hasSuffix("/") ? cacheDirectory : cacheDirectory + "/") + "sources/"
        if let p = e.path, p.hasPrefix(sources) {
            e.path = url
        }
        if e.message.contains(sources) {
            // ".../sources/HASH/name.jigdo" inside a message: the URL instead.
            var words = e.message.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            for i in words.indices where words[i].contains(sources) {
                let trail = words[i].hasSuffix(":") ? ":" : ""
                words[i] = url + trail
            }
            e.message = words.joined(separator: " ")
        }
        if e.kind == .syntax && e.path == url {
            e.message += " (is \(url) the address of a .jigdo file?)"
        }
        throw e
    }
}

/// Mount points and file system types from /proc/self/mountinfo (FUSEBridge's parsing).
func mountTable() -> [(mountpoint: String, fstype: String)] {
    MountTable.mounts().map { ($0.mountPoint, $0.type) }
}

/// The absolute path without symlinks, as far as it exists.
func canonicalPath(_ path: String) -> String {
    let abs = normalizePath(absolutePath(path))
    guard let r = realpath(abs, nil) else { return abs }
    defer { free(r) }
    return String(cString: r)
}

/// Fails with how to clear it when `path` is a FUSE mount whose daemon is gone (ENOTCONN).
func refuseDeadMount(_ path: String) throws {
    var st = stat()
    guard stat(path, &st) != 0, errno == ENOTCONN else { return }
    let abs = normalizePath(absolutePath(path))
    let jigdofs = mountTable().contains { $0.mountpoint == abs && $0.fstype == "fuse.jigdofs" }
    throw CommandFailure(
        message: "\(path): \(jigdofs ? "a dead jigdofs mount" : "a dead FUSE mount") (its daemon is gone: Transport endpoint is not connected); `fusermount3 -u \(path)` clears it",
        code: 1)
}

/// `status`/`prefetch` of a path: a dead mount, no such directory, not a directory.
func checkMountPointPath(_ path: String) throws {
    try refuseDeadMount(path)
    var st = stat()
    guard stat(path, &st) == 0 else {
        throw CommandFailure(message: "\(path): no such directory", code: 1)
    }
    guard (st.st_mode & S_IFMT) == S_IFDIR else {
        throw CommandFailure(message: "\(path): not a directory, so not a jigdofs mount", code: 1)
    }
}

/// A mount point inside another jigdofs mount (its browse view, say) is refused: the daemon
/// would serve itself.
func refuseNestedMount(_ mountpoint: String) throws {
    let path = canonicalPath(mountpoint)
    var best: (mountpoint: String, fstype: String)?
    for m in mountTable() {
        let prefix = m.mountpoint == "/" ? "/" : m.mountpoint + "/"
        guard path.hasPrefix(prefix), m.mountpoint != path else { continue }
        if best == nil || m.mountpoint.count >= best!.mountpoint.count { best = m }
    }
    if let best, best.fstype == "fuse.jigdofs" {
        throw CommandFailure(message: "\(mountpoint): is inside the jigdofs mount at \(best.mountpoint); mount somewhere else", code: 1)
    }
}

/// A line of a command's text output (not `--json`, which is exact): names from a .jigdo, a
/// template or an image in it have their control characters escaped (`RawNames.printable`).
func printLine(_ text: String) {
    print(RawNames.printable(text))
}

/// JSON for people and for programs: pretty on a terminal, compact otherwise (`--pretty`
/// forces it, `compact` one line always); sorted keys either way.
func printJSON<T: Encodable>(_ value: T, pretty: Bool, compact: Bool = false) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    if !compact && (pretty || isatty(1) != 0) { encoder.outputFormatting.insert(.prettyPrinted) }
    FileHandle.standardOutput.write(try encoder.encode(value))
    FileHandle.standardOutput.write(Data("\n".utf8))
}

/// The cap of missing-part lists (`verify --list-missing` lists all).
enum MissingReport {
    nonisolated(unsafe) static var listAll = false
    static let maxLines = 20
}
