#if canImport(Glibc)
import Glibc
#endif
import Foundation
@testable import FUSEBridge
import ImageAssembly
import JigdoFormat
import Logging
import PartSources
import Testing
import TestSupport

/// The small release's image as a mount shows it, with parts from the jigdo's own location.
private struct Mounted {
    let fs: JigdoFilesystem
    let variant: FixtureVariant
    let tree: String
    let reader: ImageReader
    static let name = "release.iso"
    static let mtime = timespec(tv_sec: 1_600_000_000, tv_nsec: 0)

    init(browse: Bool = true) throws {
        let release = try Fixtures.smallRelease()
        variant = release.variant("jf-sha256-gz")
        tree = release.tree
        let image = try JigdoImage.open(jigdoPath: variant.jigdo)
        let parts = try LocalParts(template: image.template, resolver: LocationResolver(descriptor: image.descriptor), scanDirectories: [])
        reader = ImageReader(template: TemplateDataReader(file: image.templateFile, info: image.template), parts: parts)
        fs = try JigdoFilesystem(images: [MountedImage(name: Self.name, reader: reader, jigdoPath: variant.jigdo, modificationTime: Self.mtime)],
                                 logger: Logger(label: "test"), browse: browse)
    }

    func getattr(_ path: String) throws -> (result: Int32, st: stat) {
        var st = stat()
        let r = try fs.getattr(path, &st)
        return (r, st)
    }

    /// All of a file through open + read, in reads of `chunk` bytes.
    func readAll(_ path: String, chunk: Int = 3000) throws -> [UInt8]? {
        let (r, handle) = try fs.open(path, flags: O_RDONLY)
        guard r == 0 else { return nil }
        defer { fs.release(handle: handle) }
        var out: [UInt8] = []
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = try fs.read(handle: handle, into: buffer, at: Int64(out.count))
            guard n > 0 else {
                #expect(n == 0, "read of \(path) at \(out.count): \(n)")
                break
            }
            out += buffer[0..<Int(n)]
        }
        return out
    }

    /// The names readdir gives for the directory at `path` (nil: opendir failed).
    func list(_ path: String) throws -> [String: mode_t]? {
        let (r, handle) = try fs.opendir(path)
        guard r == 0 else { return nil }
        defer { fs.release(handle: handle) }
        guard case .success(let names) = try fs.readdir(handle: handle) else { return nil }
        var out: [String: mode_t] = [:]
        for n in names { out[n.name] = n.type }
        #expect(out.count == names.count, "a name listed twice in \(path)")
        return out
    }
}

private func fileType(_ st: stat) -> mode_t { st.st_mode & 0o170000 }

@Suite("JigdoFilesystem routing, without mounting")
struct RoutingTests {
    @Test("getattr: root, image, X.iso.d, the status file and entries inside the view")
    func attributes() throws {
        let m = try Mounted()
        let root = try m.getattr("/")
        #expect(root.result == 0)
        #expect(fileType(root.st) == S_IFDIR && root.st.st_mode & 0o7777 == 0o555)

        let image = try m.getattr("/" + Mounted.name)
        #expect(image.result == 0)
        #expect(fileType(image.st) == S_IFREG && image.st.st_mode & 0o7777 == 0o444)
        let isoSize = try ReadOnlyFile(path: m.variant.iso).size
        #expect(Int64(image.st.st_size) == isoSize)
        #expect(image.st.st_mtim.tv_sec == Mounted.mtime.tv_sec)

        let view = try m.getattr("/\(Mounted.name).d")
        #expect(view.result == 0)
        #expect(fileType(view.st) == S_IFDIR)

        let status = try m.getattr("/" + StatusFile.name)
        #expect(status.result == 0)
        #expect(fileType(status.st) == S_IFREG && status.st.st_size == 0)

        let readme = try m.getattr("/\(Mounted.name).d/README.txt")
        #expect(readme.result == 0)
        #expect(fileType(readme.st) == S_IFREG)
        let readmeSize = try readBytes(m.tree + "/README.txt").count
        #expect(Int(readme.st.st_size) == readmeSize)
        let packages = try m.getattr("/\(Mounted.name).d/Packages")
        #expect(packages.result == 0 && fileType(packages.st) == S_IFDIR)
        // A trailing slash names the same directory.
        let slash = try m.getattr("/\(Mounted.name).d/Packages/")
        #expect(slash.result == 0 && fileType(slash.st) == S_IFDIR && slash.st.st_ino == packages.st.st_ino)
    }

    @Test("unknown names are ENOENT, in the root, below the image and inside the view",
          arguments: ["/nope", "/release.isox", "/release.is", "/release.iso/child", "/.jigdofs-status/x",
                      "/release.iso.d/nope", "/release.iso.d/Packages/nope", "/nope.d", "/.d", "release.iso", ""])
    func unknownNames(_ path: String) throws {
        let m = try Mounted()
        #expect(try m.getattr(path).result == -ENOENT)
        #expect(try m.fs.open(path, flags: O_RDONLY).result == -ENOENT)
        #expect(try m.fs.opendir(path).result == -ENOENT)
        #expect(try m.fs.access(path, mask: R_OK) == -ENOENT)
    }

    @Test("the root lists the image and its view, not the status file; the view lists the ISO's root")
    func directoryListings() throws {
        let m = try Mounted()
        let root = try #require(try m.list("/"))
        #expect(root == [".": S_IFDIR, "..": S_IFDIR, Mounted.name: S_IFREG, Mounted.name + ".d": S_IFDIR])

        let view = try #require(try m.list("/\(Mounted.name).d"))
        var expected: [String: mode_t] = [".": S_IFDIR, "..": S_IFDIR]
        for name in try FileManager.default.contentsOfDirectory(atPath: m.tree) {
            expected[name] = isDirectory(m.tree + "/" + name) ? S_IFDIR : S_IFREG
        }
        #expect(view == expected)

        let packages = try #require(try m.list("/\(Mounted.name).d/Packages"))
        let files = try FileManager.default.contentsOfDirectory(atPath: m.tree + "/Packages")
        #expect(Set(packages.keys) == Set(files + [".", ".."]))

        // Files are not directories.
        #expect(try m.fs.opendir("/" + Mounted.name).result == -ENOTDIR)
        #expect(try m.fs.opendir("/" + StatusFile.name).result == -ENOTDIR)
        #expect(try m.fs.opendir("/\(Mounted.name).d/README.txt").result == -ENOTDIR)
    }

    @Test("reads of the image equal the ISO, a read past its end is short, a read at the end is 0")
    func imageReads() throws {
        let m = try Mounted()
        let iso = try readBytes(m.variant.iso)
        let (r, handle) = try m.fs.open("/" + Mounted.name, flags: O_RDONLY)
        #expect(r == 0)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
        defer { buffer.deallocate() }
        for offset in [0, 16 * 2048, iso.count / 3, iso.count / 2 + 17, iso.count - 4096] {
            let n = try m.fs.read(handle: handle, into: buffer, at: Int64(offset))
            #expect(n == 4096)
            #expect(Array(buffer) == Array(iso[offset..<(offset + 4096)]), "bytes at \(offset)")
        }
        #expect(try m.fs.read(handle: handle, into: buffer, at: Int64(iso.count - 100)) == 100)
        #expect(Array(buffer[0..<100]) == Array(iso[(iso.count - 100)...]))
        #expect(try m.fs.read(handle: handle, into: buffer, at: Int64(iso.count)) == 0)
        #expect(m.fs.name(ofHandle: handle) == Mounted.name)
        // No such handle.
        #expect(try m.fs.read(handle: 7, into: buffer, at: 0) == -EBADF)
    }

    @Test("files inside the view read as the tree's files; a released handle is EBADF")
    func viewReads() throws {
        let m = try Mounted()
        #expect(try m.readAll("/\(Mounted.name).d/README.txt") == readBytes(m.tree + "/README.txt"))
        let packages = try FileManager.default.contentsOfDirectory(atPath: m.tree + "/Packages").sorted()
        // The largest package: a part, read in many reads.
        let sizes = try packages.map { try readBytes(m.tree + "/Packages/" + $0).count }
        let big = packages[try #require(sizes.indices.max { sizes[$0] < sizes[$1] })]
        #expect(sizes.max()! > 3000)
        #expect(try m.readAll("/\(Mounted.name).d/Packages/" + big) == readBytes(m.tree + "/Packages/" + big))

        let (r, handle) = try m.fs.open("/\(Mounted.name).d/README.txt", flags: O_RDONLY)
        #expect(r == 0)
        #expect(m.fs.name(ofHandle: handle) == "\(Mounted.name).d/README.txt")
        m.fs.release(handle: handle)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 16)
        defer { buffer.deallocate() }
        #expect(try m.fs.read(handle: handle, into: buffer, at: 0) == -EBADF)
        // A directory is not opened as a file.
        #expect(try m.fs.open("/\(Mounted.name).d/Packages", flags: O_RDONLY).result == -EISDIR)
        #expect(try m.fs.open("/", flags: O_RDONLY).result == -EISDIR)
    }

    @Test("the status file reads as a JSON report of the image", arguments: [1, 7, 4096])
    func statusFile(_ chunk: Int) throws {
        let m = try Mounted()
        let bytes = try #require(try m.readAll("/" + StatusFile.name, chunk: chunk))
        #expect(bytes.last == 10)
        let report = try JSONDecoder().decode(StatusFile.Report.self, from: Data(bytes))
        #expect(report.images.count == 1)
        #expect(report.images.first?.name == Mounted.name)
        #expect(report.images.first?.jigdo == m.variant.jigdo)
        #expect(report.images.first?.size == m.reader.size)
        let parts = Set(m.reader.info.parts.map(\.checksum)).count
        #expect(report.images.first?.parts.partsTotal == parts)
        #expect(report.images.first?.parts.partsLocal == parts)
    }

    @Test("opening for writing is EROFS; access for writing is EROFS, for reading 0",
          arguments: [O_WRONLY, O_RDWR, O_RDONLY | O_TRUNC])
    func writesRefused(_ flags: Int32) throws {
        let m = try Mounted()
        for path in ["/" + Mounted.name, "/" + StatusFile.name, "/\(Mounted.name).d/README.txt"] {
            #expect(try m.fs.open(path, flags: flags).result == -EROFS, "\(path)")
            #expect(try m.fs.access(path, mask: W_OK) == -EROFS, "\(path)")
            #expect(try m.fs.access(path, mask: R_OK) == 0, "\(path)")
        }
    }

    @Test("without browse views there is no X.iso.d")
    func noBrowse() throws {
        let m = try Mounted(browse: false)
        #expect(try m.getattr("/\(Mounted.name).d").result == -ENOENT)
        #expect(try m.getattr("/\(Mounted.name).d/README.txt").result == -ENOENT)
        let root = try #require(try m.list("/"))
        #expect(root == [".": S_IFDIR, "..": S_IFDIR, Mounted.name: S_IFREG])
        #expect(try m.getattr("/" + Mounted.name).result == 0)
    }
}

/// The low-level bridge's lookup and getattr by inode (no session: replies are only built).
@Suite("LowLevelBridge lookup and getattr by inode, without mounting")
struct InodeRoutingTests {
    func entry(_ reply: Reply) -> (ino: UInt64, st: stat)? {
        guard case .entry(let e) = reply else { return nil }
        return (UInt64(e.ino), e.attr)
    }

    @Test("names looked up in the root and in X.iso.d get their inodes; getattr of those inodes answers the same node")
    func lookupAndGetattr() throws {
        let m = try Mounted()
        let bridge = LowLevelBridge(filesystem: m.fs, attributeTimeout: 1)
        let root = LowLevelBridge.rootInode

        let image = try #require(entry(try bridge.lookup(root, Mounted.name)))
        #expect(image.ino == bridge.imageInodes[0])
        #expect(image.ino == LowLevelBridge.imageInode(name: Mounted.name, checksum: m.reader.info.imageChecksum.bytes))
        #expect(image.ino >= LowLevelBridge.firstImageInode && image.ino < LowLevelBridge.viewInode(0))
        #expect(bridge.path(of: image.ino) == "/" + Mounted.name)
        #expect(Int64(image.st.st_size) == m.reader.size)
        let status = try #require(entry(try bridge.lookup(root, StatusFile.name)))
        #expect(status.ino == LowLevelBridge.statusInode)
        let view = try #require(entry(try bridge.lookup(root, Mounted.name + ".d")))
        #expect(view.ino == LowLevelBridge.viewInode(0))
        #expect(fileType(view.st) == S_IFDIR)

        // Unknown names: a negative entry (inode 0), in the root, below the image and in the view.
        for (parent, name) in [(root, "nope"), (image.ino, "child"), (view.ino, "nope")] {
            let negative = try #require(entry(try bridge.lookup(parent, name)), "\(name)")
            #expect(negative.ino == 0, "\(name)")
        }
        // An inode nobody handed out.
        guard case .error(ENOENT) = try bridge.lookup(12345, "x") else {
            Issue.record("lookup under an unknown inode is not ENOENT")
            return
        }

        let readme = try #require(entry(try bridge.lookup(view.ino, "README.txt")))
        #expect(readme.ino >> LowLevelBridge.viewShift == 1 && readme.ino & LowLevelBridge.entryMask != 0)
        #expect(bridge.path(of: readme.ino) == "/\(Mounted.name).d/README.txt")
        guard case .attributes(let st) = try bridge.getattr(readme.ino) else {
            Issue.record("getattr of README.txt's inode failed")
            return
        }
        #expect(UInt64(st.st_ino) == readme.ino)
        #expect(st.st_size == readme.st.st_size && fileType(st) == S_IFREG)
        guard case .attributes(let imageAttributes) = try bridge.getattr(image.ino) else {
            Issue.record("getattr of the image's inode failed")
            return
        }
        #expect(Int64(imageAttributes.st_size) == m.reader.size)

        // Forgotten as often as it was looked up: the entry's inode names nothing any more.
        bridge.forget(readme.ino, 1)
        #expect(bridge.path(of: readme.ino) == nil)
        guard case .error(ENOENT) = try bridge.getattr(readme.ino) else {
            Issue.record("getattr of a forgotten inode is not ENOENT")
            return
        }
    }
}
