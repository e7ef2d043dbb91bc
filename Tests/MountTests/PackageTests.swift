import Foundation
import Synchronization
import TestSupport
import Testing

// The .deb of scripts/build-deb.sh: contents, lintian, installed into a scratch root, and the
// installed binary run with the Swift toolchain hidden. The release build takes minutes and
// needs SwiftPM (which `swift test` holds), so scripts/test.sh builds the package once before
// `swift test` and passes it in $JIGDOFS_DEB; without it these tests do not run.
@Suite(.serialized, .enabled(if: Harness.canMount, "needs root, /dev/fuse and fusermount3"),
       .enabled(if: ProcessInfo.processInfo.environment["JIGDOFS_DEB"] != nil, "set JIGDOFS_DEB to a .deb of scripts/build-deb.sh (scripts/test.sh does)"))
struct PackageTests {
    static let package: Result<String, any Error> = Result {
        let deb = ProcessInfo.processInfo.environment["JIGDOFS_DEB"] ?? ""
        guard FileManager.default.fileExists(atPath: deb) else { throw FixtureError("JIGDOFS_DEB=\(deb): no such file") }
        return deb
    }

    func deb() throws -> String { try Self.package.get() }

    @Test func contentsDependsAndConffiles() throws {
        let deb = try deb()
        #expect(deb.hasSuffix("_amd64.deb") && (deb as NSString).lastPathComponent.hasPrefix("jigdofs_"), "\(deb)")
        let fields = try Harness.check(["dpkg-deb", "-f", deb, "Package", "Architecture", "Depends"]).stdout
        #expect(fields.contains("Package: jigdofs") && fields.contains("Architecture: amd64"), "\(fields)")
        for lib in ["libfuse3-3", "libcurl4", "zlib1g", "libbz2-1.0", "libsqlite3-0", "libc6", "fuse3"] {
            #expect(fields.contains(lib), "Depends lacks \(lib): \(fields)")
        }
        #expect(!fields.contains("swift"), "\(fields)")
        let conffiles = try Harness.check(["dpkg-deb", "--info", deb, "conffiles"]).stdout
        #expect(conffiles.split(separator: "\n").contains("/etc/jigdofs.conf"), "\(conffiles)")

        let listing = try Harness.check(["dpkg-deb", "--contents", deb]).stdout
        let paths = listing.split(separator: "\n").compactMap { line -> String? in
            guard let dot = line.range(of: " ./"), let path = line[dot.upperBound...].split(separator: " ").first else { return nil }
            return "/" + path
        }
        for p in ["/usr/bin/jigdofs", "/usr/bin/jigdo-loop-mount", "/usr/bin/jigdo-write-usb", "/etc/jigdofs.conf",
                  "/usr/share/man/man1/jigdofs.1.gz", "/usr/share/man/man5/jigdofs.conf.5.gz",
                  "/usr/share/man/man1/jigdo-loop-mount.1.gz", "/usr/share/man/man1/jigdo-write-usb.1.gz",
                  "/usr/share/man/man8/mount.jigdofs.8.gz",
                  "/usr/share/bash-completion/completions/jigdofs", "/usr/share/zsh/vendor-completions/_jigdofs",
                  "/usr/share/fish/vendor_completions.d/jigdofs.fish",
                  "/usr/share/doc/jigdofs/copyright", "/usr/share/doc/jigdofs/changelog.gz",
                  "/usr/share/doc/jigdofs/examples/fstab", "/usr/share/doc/jigdofs/examples/srv-jigdo-sme.mount",
                  "/usr/share/doc/jigdofs/examples/srv-jigdo-sme.automount"] {
            #expect(paths.contains(p), "the package lacks \(p)")
        }
        for helper in ["mount.jigdofs", "mount.fuse.jigdofs"] {
            #expect(listing.contains("./sbin/\(helper) -> /usr/bin/jigdofs"), "\(helper): \(listing)")
        }
        // A man page for every subcommand the binary has.
        for name in try subcommandNames() {
            #expect(paths.contains { $0.hasPrefix("/usr/share/man/man1/") && $0.hasSuffix("\(name).1.gz") && $0.contains("jigdofs") },
                    "no man page for `jigdofs \(name)`")
        }
    }

    /// The subcommands, as the binary under test describes itself.
    func subcommandNames() throws -> [String] {
        struct Dump: Decodable {
            struct Command: Decodable { var commandName: String; var subcommands: [Command]? }
            var command: Command
        }
        let json = try Harness.check([Harness.jigdofs, "--experimental-dump-help"]).stdoutData
        return try JSONDecoder().decode(Dump.self, from: json).command.subcommands?.map(\.commandName).filter { $0 != "help" } ?? []
    }

    @Test func lintianReportsNoErrors() throws {
        let r = try Harness.run(["lintian", "--fail-on", "error", try deb()])
        #expect(r.status == 0, "\(r)")
        #expect(!r.stdout.contains("E: "), "\(r.stdout)")
    }

    @Test func installedIntoAScratchRootItRunsWithoutTheToolchain() throws {
        let root = try Harness.makeTempDir("root")
        defer { removeTree(root) }
        try Harness.check(["dpkg-deb", "-x", try deb(), root])
        let binary = root + "/usr/bin/jigdofs"
        let man = try Harness.check(["man", "-M", root + "/usr/share/man", "-w", "jigdofs"]).stdout
        #expect(man.hasPrefix(root + "/usr/share/man/man1/jigdofs.1"), "\(man)")
        let confMan = try Harness.check(["man", "-M", root + "/usr/share/man", "-w", "5", "jigdofs.conf"]).stdout
        #expect(confMan.hasPrefix(root), "\(confMan)")
        let bash = try Harness.run(["bash", "-c", "source \(shellQuote(root + "/usr/share/bash-completion/completions/jigdofs")) && complete -p jigdofs"])
        #expect(bash.status == 0 && bash.stdout.contains("jigdofs"), "\(bash)")

        // /opt/swift hidden behind an empty tmpfs in a private mount namespace: the installed
        // binary finds all it needs, mounts a fixture, the image is right, and it unmounts.
        let variant = release.variant("jf-md5-gz")
        let mnt = try Harness.makeTempDir("deb-mnt")
        defer { Harness.cleanUpMount(mnt) }
        let script = """
            set -eu
            mount --make-rprivate /
            mount -t tmpfs -o size=1m empty /opt/swift
            test -z "$(ls -A /opt/swift)"
            if ldd \(shellQuote(binary)) | grep -e 'not found' -e /opt/swift; then exit 10; fi
            \(shellQuote(binary)) --version
            trap 'fusermount3 -u \(shellQuote(mnt)) 2>/dev/null || true' EXIT
            \(shellQuote(binary)) mount \(shellQuote(variant.jigdo)) \(shellQuote(mnt))
            cmp \(shellQuote(mnt + "/release.iso")) \(shellQuote(variant.iso))
            fusermount3 -u \(shellQuote(mnt))
            trap - EXIT
            if grep -q \(shellQuote(" " + mnt + " ")) /proc/self/mounts; then exit 11; fi
            echo all-done
            """
        let r = try Harness.run(["unshare", "-m", "/bin/sh", "-c", script])
        #expect(r.status == 0 && r.stdout.contains("all-done"), "\(r)")
    }

    let release: FixtureRelease

    init() throws {
        release = try Fixtures.release()
    }
}
