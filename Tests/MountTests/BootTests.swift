import Foundation
import TestSupport
import Testing

// Issue 19: boot a VM from a release. An isolinux ISO made with Debian's isolinux and
// syslinux modules and xorriso (El Torito and isohybrid options as debian-cd gives them), its
// jigdo made with jigdo-file, served by nginx and mounted by URL with nothing local and an
// empty cache. QEMU (TCG) boots it: menu.c32 prints its title on the serial console, and the
// default entry runs poweroff.c32, which ends the VM.

/// The bootable release: the tree (boot files and big packages), the ISO, its .jigdo and
/// .template on nginx.
struct BootRelease {
    static let marker = "JIGDOFS-BOOT-MARKER"
    /// The syslinux modules the boot reads (menu.c32 needs libutil and libcom32).
    static let modules = ["ldlinux.c32", "libcom32.c32", "libutil.c32", "menu.c32", "poweroff.c32"]
    static let available = FileManager.default.isExecutableFile(atPath: "/usr/bin/qemu-system-x86_64")
        && FileManager.default.fileExists(atPath: "/usr/lib/ISOLINUX/isolinux.bin")
        && FileManager.default.fileExists(atPath: "/usr/lib/syslinux/modules/bios/poweroff.c32")

    let dir: String
    let nginx: Nginx
    var www: String { dir + "/www" }
    var tree: String { www + "/tree" }
    var iso: String { dir + "/boot.iso" }
    var url: String { nginx.url + "boot.jigdo" }

    init() throws {
        dir = try Harness.makeTempDir("boot")
        nginx = try Nginx(root: dir + "/www")
        let isolinux = tree + "/isolinux"
        try FileManager.default.createDirectory(atPath: isolinux, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "/usr/lib/ISOLINUX/isolinux.bin", toPath: isolinux + "/isolinux.bin")
        for m in Self.modules {
            try FileManager.default.copyItem(atPath: "/usr/lib/syslinux/modules/bios/" + m, toPath: isolinux + "/" + m)
        }
        // SERIAL first, so everything after it also goes to the serial console; a tenth of a
        // second, then the default entry: poweroff.c32.
        try """
            SERIAL 0 115200
            UI menu.c32
            MENU TITLE \(Self.marker)
            TIMEOUT 1
            DEFAULT poweroff
            LABEL poweroff
              MENU LABEL Power off
              COM32 poweroff.c32

            """.write(toFile: isolinux + "/isolinux.cfg", atomically: true, encoding: .utf8)
        // Packages the boot never reads, most of the image; a README and a manual that stay in
        // the template (not given to jigdo-file as parts).
        try Publishers.makeTree(tree, seed: 19, (1...6).map { ("pool/main/p/pkg\($0)/pkg\($0)_1.0_amd64.deb", 3_000_000 + $0 * 1000) }
            + [("pool/main/s/small/small_1_all.deb", 20_000), ("README.txt", 16_384)])
        try FileManager.default.createDirectory(atPath: tree + "/doc", withIntermediateDirectories: true)
        try (0..<40_000).map { "<para id=\"\($0)\">Installing from jigdo, step \($0 % 97).</para>\n" }.joined()
            .write(toFile: tree + "/doc/manual.txt", atomically: true, encoding: .utf8)
        // As debian-cd's boot-x86: El Torito no-emulation boot with a boot info table, and the
        // isohybrid MBR so the same image boots from a USB stick. The boot files go last, after
        // the README: the kernel reads whole pages and 1 MiB ahead, and the mount fetches the
        // parts that follow a sequential read (README: "Boot a VM from a release"), so packages
        // right after the boot files would be fetched too and the test could not tell.
        try Harness.check(["xorriso", "-as", "mkisofs", "-quiet", "-r", "-J", "-V", "JIGDOFS_BOOT", "-o", iso,
                           "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat", "-no-emul-boot", "-boot-load-size", "4",
                           "-boot-info-table", "-isohybrid-mbr", "/usr/lib/ISOLINUX/isohdpfx.bin",
                           "--sort-weight", "4", "/doc", "--sort-weight", "3", "/pool", "--sort-weight", "2", "/README.txt",
                           "--sort-weight", "1", "/isolinux", tree])
        try Harness.check(["jigdo-file", "make-template", "-r", "quiet", "--force", "-i", iso,
                           "-j", www + "/boot.jigdo", "-t", www + "/boot.template",
                           "--label", "Debian=\(tree)", "--uri", "Debian=\(nginx.url)tree/", tree + "//pool", tree + "//isolinux"])
    }

    /// The tree's files that are parts of the image (listed in the .jigdo's [Parts]), relative.
    func partPaths() throws -> Set<String> {
        let text = try String(contentsOfFile: www + "/boot.jigdo", encoding: .utf8)
        return Set(text.split(separator: "\n").compactMap { line -> String? in
            guard let r = line.range(of: "=Debian:") else { return nil }
            return String(line[r.upperBound...])
        })
    }

    /// Part paths nginx served (relative to the tree).
    func fetchedParts() -> [String] {
        nginx.requests().filter { $0.path.hasPrefix("/tree/") && $0.status / 100 == 2 }.map { String($0.path.dropFirst(6)) }
    }

    func remove() {
        nginx.stop()
        removeTree(dir)
    }
}

/// QEMU's result: its exit status (137: killed by the hard timeout) and the serial console.
func bootQEMU(_ drive: [String], seconds: Int = 50) throws -> (status: Int32, console: String, elapsed: Double) {
    let started = Date()
    let r = try Harness.run(["timeout", "-s", "KILL", String(seconds), "qemu-system-x86_64", "-accel", "tcg", "-m", "64",
                             "-nographic", "-no-reboot", "-nic", "none", "-boot", "d"] + drive)
    return (r.status, r.stdout + r.stderr, Date().timeIntervalSince(started))
}

@Suite(.serialized, .enabled(if: Harness.canMount && BootRelease.available, "needs root, /dev/fuse, qemu-system-x86, isolinux"))
struct BootTests {
    @Test("QEMU boots an isolinux ISO from a mount by URL with an empty cache: only the boot files' parts are fetched, then the image is bit-exact")
    func bootFromTheMount() throws {
        let release = try BootRelease()
        defer { release.remove() }
        let parts = try release.partPaths()
        let bootParts = parts.filter { $0.hasPrefix("isolinux/") }
        #expect(bootParts.count >= 4 && parts.count >= bootParts.count + 6, "parts \(parts.sorted())")
        try Harness.withMount([release.url], options: ["--cache-dir", release.dir + "/cache"]) { mnt in
            let image = mnt + "/boot.iso"
            let boot = try bootQEMU(["-cdrom", image])
            print("boot: \(String(format: "%.2f", boot.elapsed)) s to the power-off, parts \(release.fetchedParts().sorted())")
            #expect(boot.status == 0, "qemu did not power off by itself (status \(boot.status)): \(boot.console.suffix(2000))")
            #expect(boot.console.contains(BootRelease.marker), "no marker on the serial console: \(boot.console.suffix(2000))")
            let fetched = Set(release.fetchedParts())
            #expect(fetched.isSubset(of: bootParts), "fetched beyond the boot files: \(fetched.subtracting(bootParts).sorted())")
            #expect(!fetched.isEmpty && fetched.count * 2 < parts.count, "\(fetched.count) of \(parts.count) parts fetched")

            // The same through -drive, read-only.
            let drive = try bootQEMU(["-drive", "file=\(image),format=raw,media=cdrom,readonly=on"])
            #expect(drive.status == 0 && drive.console.contains(BootRelease.marker),
                    "-drive media=cdrom: status \(drive.status): \(drive.console.suffix(2000))")

            let cmp = try Harness.run(["cmp", image, release.iso])
            #expect(cmp.status == 0, "\(cmp.stdout)\(cmp.stderr)")
        }
    }
}
