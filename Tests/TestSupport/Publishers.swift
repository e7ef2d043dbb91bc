import Foundation
import JigdoFormat

/// Small releases made the way real publishers make theirs (issue 8), with the real generators
/// (xorriso/libjte, jigdo-file) and the publishers' post-processing, rebuilt from their
/// scripts. Each builder writes into `dir` and names the servers with `serverURL` (the test's
/// nginx, whose root is `dir/www`).
public enum Publishers {
    /// `Tests/Fixtures/make-tree.py`: files of the given sizes with seeded random content
    /// (`\xNN` in a path: that raw byte).
    public static func makeTree(_ root: String, seed: Int, _ files: [(String, Int)]) throws {
        try Subprocess.check(["python3", Fixtures.testsDirectory + "/Fixtures/make-tree.py", root, String(seed)]
            + files.map { "\($0.0):\($0.1)" })
    }

    /// A Debian-like tree: packages under pool/, plus files the jigdo leaves in the template.
    static let debianFiles: [(String, Int)] = [
        ("pool/main/a/alpha/alpha_1.0-1_amd64.deb", 40_000),
        ("pool/main/b/beta/beta_2.3_all.deb", 3_000),
        ("pool/main/g/gamma/gamma_0.9_amd64.deb", 150_000),
        ("pool/main/d/delta/delta_1_amd64.deb", 12_000),
        ("pool/contrib/e/eps/eps_1_all.deb", 800),
        ("pool/main/z/zeta/zeta_5_amd64.deb", 70_000),
        ("pool/main/o/omega/omega_3_amd64.deb", 25_000),
        ("dists/bookworm/Release", 2_000),
        ("README.txt", 5_000),
        ("doc/FAQ.html", 9_000),
    ]

    /// The packages `debianToday` leaves out of the primary mirror (only the snapshot has them).
    public static let onlyOnSnapshot = ["pool/main/g/gamma/gamma_0.9_amd64.deb", "pool/main/z/zeta/zeta_5_amd64.deb"]

    public static let snapshotPath = "snapshot/archive/debian/20240210T000000Z/"

    /// debian-cd today: xorriso's JTE (`-jigdo-map Debian=MIRROR/`, `-jigdo-exclude`,
    /// `-jigdo-force-md5 /pool/` or sha256 with `-jigdo-force-checksum`, `-jigdo-min-file-size
    /// 1024`, bzip2 template), then `jigdo_cleanup`: Filename/Template rewritten, ShortInfo and
    /// Info added, the primary server and a snapshot server with `--try-last`, gzip'd.
    /// nginx serves `www/debian/` (the mirror without `onlyOnSnapshot`) and
    /// `www/snapshot/...` (everything). Returns the published .jigdo (in `dir/pub/`) and the ISO.
    public static func debianToday(in dir: String, serverURL: String, sha256: Bool) throws -> (jigdo: String, iso: String, tree: String) {
        let tree = dir + "/mirror"
        try makeTree(tree, seed: sha256 ? 12 : 11, debianFiles)
        let list = try checksumList(tree, algorithm: sha256 ? "sha256sum" : "md5sum")
        try list.write(toFile: dir + "/checksums.list", atomically: true, encoding: .utf8)
        let algorithmOptions = sha256
            ? ["-checksum-list", "checksums.list", "-jigdo-checksum-algorithm", "sha256", "-jigdo-force-checksum", "/pool/"]
            : ["-md5-list", "checksums.list", "-jigdo-force-md5", "/pool/"]
        try Subprocess.check(["xorriso", "-as", "mkisofs", "-quiet", "-R", "-J", "-V", "Debian 12.5.0 amd64 1", "-o", "out.iso",
                              "-jigdo-jigdo", "out.jigdo", "-jigdo-template", "out.template",
                              "-jigdo-map", "Debian=\(tree)/"] + algorithmOptions + [
                              "-jigdo-min-file-size", "1024", "-jigdo-exclude", "README", "-jigdo-exclude", "/doc/",
                              "-jigdo-template-compress", "bzip2", tree], cwd: dir)
        // jigdo_cleanup
        let name = "debian-12.5.0-amd64-DVD-1"
        var lines: [String] = []
        for line in try String(contentsOfFile: dir + "/out.jigdo", encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("Filename=") {
                lines.append("Filename=\(name).iso")
            } else if line.hasPrefix("Template=") {
                lines.append("Template=\(name).template")
                lines.append("ShortInfo='Debian GNU/Linux 12.5.0 \"Bookworm\" - Official amd64 DVD Binary-1 20240210-11:28 (20240210)'")
                lines.append("Info='Generated on Sat, 10 Feb 2024 11:28:39 +0000'")
            } else {
                lines.append(String(line))
            }
        }
        lines += ["", "[Servers]", "Debian=\(serverURL)debian/", "Debian=\(serverURL)\(snapshotPath) --try-last", ""]
        try FileManager.default.createDirectory(atPath: dir + "/pub", withIntermediateDirectories: true)
        try lines.joined(separator: "\n").write(toFile: dir + "/pub/\(name).jigdo.plain", atomically: true, encoding: .utf8)
        try Subprocess.check(["sh", "-c", "gzip -9 -n -c \(shellQuote(dir + "/pub/\(name).jigdo.plain")) > \(shellQuote(dir + "/pub/\(name).jigdo")) && rm \(shellQuote(dir + "/pub/\(name).jigdo.plain"))"])
        try FileManager.default.moveItem(atPath: dir + "/out.template", toPath: dir + "/pub/\(name).template")
        try serveMirror(tree, www: dir + "/www", primary: "debian", without: onlyOnSnapshot)
        return (dir + "/pub/\(name).jigdo", dir + "/out.iso", tree)
    }

    /// Ubuntu's cdimage: `jigdo-file make-template --uri Debian=<archive mirror>` with its
    /// `[Servers]` section, then a `Debian=... --try-last` line for the full archive.
    /// nginx serves `www/ubuntu/` (without `onlyOnSnapshot`) and `www/snapshot/...`.
    public static func ubuntu(in dir: String, serverURL: String) throws -> (jigdo: String, iso: String, tree: String) {
        let tree = dir + "/mirror"
        try makeTree(tree, seed: 13, debianFiles)
        try Subprocess.check(["xorriso", "-as", "mkisofs", "-quiet", "-R", "-J", "-V", "Ubuntu 24.04", "-o", dir + "/out.iso", tree])
        try FileManager.default.createDirectory(atPath: dir + "/pub", withIntermediateDirectories: true)
        try Subprocess.check(["jigdo-file", "make-template", "-r", "quiet", "--force", "-i", dir + "/out.iso",
                              "-j", dir + "/pub/ubuntu-24.04-server-amd64.jigdo", "-t", dir + "/pub/ubuntu-24.04-server-amd64.template",
                              "--label", "Debian=\(tree)", "--uri", "Debian=\(serverURL)ubuntu/", "--servers-section", tree + "//"])
        let jigdo = dir + "/pub/ubuntu-24.04-server-amd64.jigdo"
        // cdimage adds the archive as the last resort, after the release mirror ([Parts] is
        // the last section jigdo-file writes, so the line goes into [Servers]).
        let text = try String(contentsOfFile: jigdo, encoding: .utf8)
        let primary = "Debian=\(serverURL)ubuntu/\n"
        guard text.contains(primary) else { throw FixtureError("jigdo-file wrote no \(primary) line") }
        try text.replacingOccurrences(of: primary, with: primary + "Debian=\(serverURL)\(snapshotPath) --try-last\n")
            .write(toFile: jigdo, atomically: true, encoding: .utf8)
        try serveMirror(tree, www: dir + "/www", primary: "ubuntu", without: onlyOnSnapshot)
        return (jigdo, dir + "/out.iso", tree)
    }

    /// debian-cd 2003-2005: the image piped into `jigdo-file make-template --image=-`, with
    /// `--merge=HEADER` (an `[Image]` with an empty `Template-MD5Sum=` for jigdo-file to fill
    /// in, and `[Include <serverURL>debian-cd/debian-servers.jigdo]`) and
    /// `--no-servers-section`. nginx serves the servers file and `www/debian/`.
    public static func debianOld(in dir: String, serverURL: String) throws -> (jigdo: String, iso: String, tree: String) {
        let tree = dir + "/mirror"
        try makeTree(tree, seed: 14, debianFiles)
        let name = "debian-30r4-i386-binary-1"
        try """
            [Jigdo]
            Version=1.1
            Generator=debian-cd/2.2 (jigdo-file)

            [Image]
            Filename=\(name).iso
            Template=\(name).template
            Template-MD5Sum=
            ShortInfo='Debian GNU/Linux 3.0 r4 "Woody" - Official i386 Binary-1 CD'
            Info='Generated on Sat, 01 Jan 2005 12:00:00 +0000'

            [Include \(serverURL)debian-cd/debian-servers.jigdo]

            """.write(toFile: dir + "/header.jigdo", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: dir + "/pub", withIntermediateDirectories: true)
        try Subprocess.shell("""
            xorriso -as mkisofs -quiet -R -J -o - \(shellQuote(tree)) 2>/dev/null | tee \(shellQuote(dir + "/out.iso")) | \
              jigdo-file make-template -r quiet --force --image=- --jigdo=\(shellQuote(dir + "/pub/\(name).jigdo")) \
                --template=\(shellQuote(dir + "/pub/\(name).template")) --merge=\(shellQuote(dir + "/header.jigdo")) \
                --no-servers-section --label Debian=\(shellQuote(tree)) \(shellQuote(tree + "//"))
            """)
        try FileManager.default.createDirectory(atPath: dir + "/www/debian-cd", withIntermediateDirectories: true)
        try "[Servers]\nDebian=\(serverURL)debian/\n".write(toFile: dir + "/www/debian-cd/debian-servers.jigdo", atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: dir + "/www/debian", withDestinationPath: tree)
        return (dir + "/pub/\(name).jigdo", dir + "/out.iso", tree)
    }

    /// The SME wiki's workflow: only the .jigdo is local (`wget`), its `Template=` an absolute
    /// URL on the test's nginx, its server too. nginx serves `www/sme/` (template and tree).
    public static func sme(in dir: String, serverURL: String, variant v: FixtureVariant) throws -> String {
        try FileManager.default.createDirectory(atPath: dir + "/www/sme", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: v.template, toPath: dir + "/www/sme/smeserver.template")
        try FileManager.default.createSymbolicLink(atPath: dir + "/www/sme/tree", withDestinationPath: directoryOf(v.directory) + "tree")
        let text = String(decoding: try Decompression.gunzipConcatenated(try readBytes(v.jigdo), limit: 1 << 26), as: UTF8.self)
        var lines: [String] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("Template=") {
                lines.append("Template=\(serverURL)sme/smeserver.template")
            } else if line.hasPrefix("Base=") {
                lines.append("Base=\(serverURL)sme/tree/")
            } else {
                lines.append(String(line))
            }
        }
        try FileManager.default.createDirectory(atPath: dir + "/wget", withIntermediateDirectories: true)
        try lines.joined(separator: "\n").write(toFile: dir + "/wget/smeserver.jigdo", atomically: true, encoding: .utf8)
        return dir + "/wget/smeserver.jigdo"
    }

    /// Fedora's jigdofy: a CD and a DVD of one tree, each `jigdo-file make-template` with a
    /// mirrorlist-style `--uri Fedora=<serverURL>mirrorlist?path=`, the CD's .jigdo merged into
    /// the DVD's with `--merge` (one .jigdo, two `[Image]` sections), `+` written as `%2b` in
    /// the part paths, the templates as mirrorlist URLs (`Template=<serverURL>mirrorlist?…&path=X.template`,
    /// with a copy next to the .jigdo too). nginx needs `fedoraNginxConfig` and serves `www/pub/fedora/`.
    public static func fedora(in dir: String, serverURL: String) throws -> (jigdo: String, isos: [String: String], tree: String) {
        let tree = dir + "/tree"
        try makeTree(tree, seed: 15, [
            ("Packages/a/alpha-1.0-1.fc40.x86_64.rpm", 30_000),
            ("Packages/g/gtk+-2.24.33-1.fc40.x86_64.rpm", 50_000),
            ("Packages/l/libstdc++-14.0-1.fc40.x86_64.rpm", 20_000),
            ("Packages/b/beta-2.0-1.fc40.noarch.rpm", 60_000),
            ("Packages/z/zeta-0.1-1.fc40.noarch.rpm", 9_000),
            ("repodata/repomd.xml", 900),
        ])
        let cd = "Fedora-40-x86_64-disc1.iso", dvd = "Fedora-40-x86_64-DVD.iso"
        try Subprocess.check(["xorriso", "-as", "mkisofs", "-quiet", "-R", "-J", "-V", "Fedora 40 disc1", "-m", "beta-*", "-o", dir + "/" + cd, tree])
        try Subprocess.check(["xorriso", "-as", "mkisofs", "-quiet", "-R", "-J", "-V", "Fedora 40 DVD", "-o", dir + "/" + dvd, tree])
        try FileManager.default.createDirectory(atPath: dir + "/pub", withIntermediateDirectories: true)
        let common = ["--label", "Fedora=\(tree)", "--uri", "Fedora=\(serverURL)mirrorlist?path="]
        try Subprocess.check(["jigdo-file", "make-template", "-r", "quiet", "--force", "-i", dir + "/" + cd,
                              "-j", dir + "/pub/cd.jigdo", "-t", dir + "/pub/Fedora-40-x86_64-disc1.template"] + common + [tree + "//"])
        try escapePlus(dir + "/pub/cd.jigdo")
        try Subprocess.check(["jigdo-file", "make-template", "-r", "quiet", "--force", "-i", dir + "/" + dvd,
                              "-j", dir + "/pub/Fedora-40-x86_64.jigdo", "-t", dir + "/pub/Fedora-40-x86_64-DVD.template",
                              "--merge", dir + "/pub/cd.jigdo"] + common + [tree + "//"])
        try escapePlus(dir + "/pub/Fedora-40-x86_64.jigdo")
        try FileManager.default.removeItem(atPath: dir + "/pub/cd.jigdo")
        // The templates by mirrorlist URL too.
        let jigdo = dir + "/pub/Fedora-40-x86_64.jigdo"
        var text = try String(contentsOfFile: jigdo, encoding: .utf8)
        for t in ["Fedora-40-x86_64-disc1.template", "Fedora-40-x86_64-DVD.template"] {
            guard text.contains("Template=\(t)\n") else { throw FixtureError("jigdo-file wrote no Template=\(t)") }
            text = text.replacingOccurrences(of: "Template=\(t)\n", with: "Template=\(serverURL)mirrorlist?repo=fedora-40&path=\(t)\n")
        }
        try text.write(toFile: jigdo, atomically: true, encoding: .utf8)
        let served = dir + "/www/pub/fedora"
        try FileManager.default.createDirectory(atPath: served, withIntermediateDirectories: true)
        for sub in ["Packages", "repodata"] {
            try FileManager.default.createSymbolicLink(atPath: served + "/" + sub, withDestinationPath: tree + "/" + sub)
        }
        for t in ["Fedora-40-x86_64-disc1.template", "Fedora-40-x86_64-DVD.template"] {
            try FileManager.default.copyItem(atPath: dir + "/pub/" + t, toPath: served + "/" + t)
        }
        return (dir + "/pub/Fedora-40-x86_64.jigdo", [cd: dir + "/" + cd, dvd: dir + "/" + dvd], tree)
    }

    /// A mirrorlist: `/mirrorlist?path=P` redirects to `/pub/fedora/P`.
    public static let fedoraNginxConfig = "location = /mirrorlist { return 302 /pub/fedora/$arg_path; }"

    /// `+` as `%2b` in the `[Parts]` lines (jigdofy does).
    static func escapePlus(_ jigdo: String) throws {
        let text = try String(contentsOfFile: jigdo, encoding: .utf8)
        var inParts = false
        var out: [String] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("[") { inParts = line == "[Parts]" }
            out.append(inParts && !line.hasPrefix("[") ? line.replacingOccurrences(of: "+", with: "%2b") : String(line))
        }
        guard out.contains(where: { $0.contains("%2b") }) else { throw FixtureError("no + in \(jigdo)'s [Parts]") }
        try out.joined(separator: "\n").write(toFile: jigdo, atomically: true, encoding: .utf8)
    }

    /// Old media: file names that are Latin-1 bytes, not UTF-8. xorriso (Rock Ridge) and
    /// jigdo-file keep the bytes, so the .jigdo is not valid UTF-8. The servers' `Base` is
    /// `<serverURL>tree/`; nginx serves `www/tree`.
    public static func latin1(in dir: String, serverURL: String) throws -> (jigdo: String, iso: String, tree: String) {
        let tree = dir + "/tree"
        try makeTree(tree, seed: 16, [
            ("Fotos/caf\\xe9 cr\\xe8me.jpg", 30_000),
            ("Dokumente/Gr\\xfc\\xdfe.doc", 20_000),
            ("Programme/\\xc4nderungen.txt", 3_000),
            ("plain.bin", 5_000),
        ])
        try Subprocess.check(["xorriso", "-as", "mkisofs", "-quiet", "-R", "-J", "-o", dir + "/latin1.iso", tree])
        try FileManager.default.createDirectory(atPath: dir + "/pub", withIntermediateDirectories: true)
        try Subprocess.check(["jigdo-file", "make-template", "-r", "quiet", "--force", "-i", dir + "/latin1.iso",
                              "-j", dir + "/pub/latin1.jigdo", "-t", dir + "/pub/latin1.template",
                              "--label", "Base=\(tree)", "--uri", "Base=\(serverURL)tree/", tree + "//"])
        try FileManager.default.createSymbolicLink(atPath: dir + "/www/tree", withDestinationPath: tree)
        return (dir + "/pub/latin1.jigdo", dir + "/latin1.iso", tree)
    }

    /// `www/<primary>/`: a copy of the tree without `without`; `www/<snapshotPath>`: all of it.
    static func serveMirror(_ tree: String, www: String, primary: String, without: [String]) throws {
        let snapshot = www + "/" + snapshotPath
        try FileManager.default.createDirectory(atPath: directoryOf(snapshot.dropLastSlash), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: snapshot.dropLastSlash, withDestinationPath: tree)
        try Subprocess.check(["cp", "-a", tree, www + "/" + primary])
        for f in without { try FileManager.default.removeItem(atPath: www + "/" + primary + "/" + f) }
    }

    /// libjte's checksum list: `<hex>  <size>  <path>` of every file under `tree`.
    static func checksumList(_ tree: String, algorithm: String) throws -> String {
        let r = try Subprocess.check(["/bin/bash", "-c", """
            find \(shellQuote(tree)) -type f -size +0 -print0 | sort -z | while IFS= read -r -d '' f; do
              printf '%s  %12s  %s\\n' "$(\(algorithm) < "$f" | cut -d' ' -f1)" "$(stat -c %s "$f")" "$f"
            done
            """])
        return r.stdout
    }
}

