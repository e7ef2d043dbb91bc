import Foundation
import TestSupport
import Testing

// What a Debian admin does: mount(8) with both types, stock mount.fuse3, fstab lines with
// `mount -a` (twice), systemd's fstab generator, automount over a trigger, the configuration
// file, and the logs of a background mount (a syslog stand-in, SIGHUP, sd_notify).
@Suite(.serialized, .enabled(if: Harness.canMount, "needs root, /dev/fuse and fusermount3"))
struct AdminTests {
    let release: FixtureRelease

    init() throws {
        release = try Fixtures.release()
    }

    /// A directory holding a `jigdofs` that is the binary under test, for mount.fuse3 (it runs
    /// `jigdofs SOURCE MOUNTPOINT -o ...` from PATH).
    func pathWithJigdofs() throws -> (dir: String, environment: [String: String]) {
        let dir = try Harness.makeTempDir("bin")
        try FileManager.default.createSymbolicLink(atPath: dir + "/jigdofs", withDestinationPath: Harness.jigdofs)
        let path = dir + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin")
        return (dir, ["PATH": path])
    }

    /// The /proc/mounts line of `mountpoint`: (source, options).
    func mountEntry(_ mountpoint: String) -> (source: String, type: String, options: [String])? {
        guard let text = try? String(contentsOfFile: "/proc/mounts", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n").reversed() {
            let f = line.split(separator: " ").map(String.init)
            if f.count > 3, Harness.decodeOctal(f[1]) == mountpoint {
                return (Harness.decodeOctal(f[0]), f[2], f[3].split(separator: ",").map(String.init))
            }
        }
        return nil
    }

    /// A copy of a variant whose own file: server does not resolve (parts only from options).
    func lonelyCopy(_ variant: String = "jf-md5-gz") throws -> String {
        let dir = try Harness.makeTempDir("lonely")
        try release.variant(variant).copyJigdoAndTemplate(into: dir)
        return dir + "/release.jigdo"
    }

    @Test func stockMountFuse3RunsTheBinary() throws {
        // mount(8) runs /sbin/mount.fuse3 for type fuse.jigdofs when there is no
        // /sbin/mount.fuse.jigdofs; mount.fuse3 runs `jigdofs SOURCE MOUNTPOINT -o OPTS` from
        // PATH (mount(8) itself clears PATH, so it would find only an installed jigdofs:
        // the test calls mount.fuse3 the way mount(8) does, with its own PATH).
        let (bin, env) = try pathWithJigdofs()
        defer { removeTree(bin) }
        let jigdo = try lonelyCopy()
        let cache = try Harness.makeTempDir("cache")
        try Harness.withMount([], command: { mnt in
            ["/sbin/mount.fuse3", jigdo, mnt, "-t", "fuse.jigdofs",
             "-o", "rw,scan=\(self.release.tree),cache-size=1G,cache_dir=\(cache),nofail,_netdev,x-systemd.device-timeout=5"]
        }, environment: env) { mnt in
            let entry = try #require(mountEntry(mnt))
            #expect(entry.type == "fuse.jigdofs")
            #expect(entry.source == jigdo)
            #expect(entry.options.contains("ro") && !entry.options.contains("rw"), "-o rw still mounts read-only: \(entry.options)")
            let cmp = try Harness.run(["cmp", mnt + "/release.iso", release.variant("jf-md5-gz").iso])
            #expect(cmp.status == 0, "\(cmp)")
        }
    }

    /// Runs `body` with /sbin/mount.fuse.jigdofs being the binary under test (as the .deb
    /// installs it), for mount(8) and fstab lines of type fuse.jigdofs; removed afterwards.
    func withFuseJigdofsHelper(_ body: () throws -> Void) throws {
        let installed = "/sbin/mount.fuse.jigdofs"
        if let existing = try? FileManager.default.destinationOfSymbolicLink(atPath: installed) {
            try #require(existing == Harness.jigdofs, "\(installed) is installed (-> \(existing)); it would be tested instead of \(Harness.jigdofs)")
            return try body()
        }
        try FileManager.default.createSymbolicLink(atPath: installed, withDestinationPath: Harness.jigdofs)
        defer { try? FileManager.default.removeItem(atPath: installed) }
        try body()
    }

    @Test func helperSymlinksAndTypos() throws {
        // /sbin/mount.jigdofs and /sbin/mount.fuse.jigdofs are symlinks to the binary in the
        // .deb: the binary is a mount helper when called by those names.
        let bin = try Harness.makeTempDir("helpers")
        defer { removeTree(bin) }
        for name in ["mount.jigdofs", "mount.fuse.jigdofs"] {
            try FileManager.default.createSymbolicLink(atPath: "\(bin)/\(name)", withDestinationPath: Harness.jigdofs)
        }
        let jigdo = try lonelyCopy("jf-sha256-bz2")
        for name in ["mount.jigdofs", "mount.fuse.jigdofs"] {
            try Harness.withMount([], command: { mnt in
                ["\(bin)/\(name)", "release.jigdo", mnt, "-n", "-o", "rw,map=Base=\(self.release.tree),allow_other", "-t", "fuse.jigdofs"]
            }, cwd: (jigdo as NSString).deletingLastPathComponent) { mnt in
                let entry = try #require(mountEntry(mnt))
                #expect(entry.source == jigdo, "a relative SOURCE is shown absolute: \(entry.source)")
                #expect(entry.options.contains("ro") && entry.options.contains("allow_other"), "\(entry.options)")
                let cmp = try Harness.run(["cmp", mnt + "/release.iso", release.variant("jf-sha256-bz2").iso])
                #expect(cmp.status == 0, "\(cmp)")
            }
        }
        // A mistyped jigdofs option is refused with a suggestion, nothing mounted.
        let mnt = try Harness.makeTempDir("typo")
        defer { Harness.cleanUpMount(mnt) }
        for (typo, suggestion) in [("scna=/tmp", "scan"), ("cache-sise=1G", "cache-size"), ("oflline", "offline")] {
            let r = try Harness.run(["\(bin)/mount.jigdofs", jigdo, mnt, "-o", typo])
            #expect(r.status != 0 && r.stderr.contains("did you mean '\(suggestion)'"), "\(typo): \(r)")
            #expect(!Harness.isMounted(mnt))
        }
        let flagWithValue = try Harness.run([Harness.jigdofs, "mount", jigdo, mnt, "-o", "offline=1"])
        #expect(flagWithValue.status != 0 && flagWithValue.stderr.contains("offline"), "\(flagWithValue)")
        // mount -f (fake): checked, not mounted.
        let fake = try Harness.run(["\(bin)/mount.jigdofs", jigdo, mnt, "-f", "-o", "scan=\(release.tree)"])
        #expect(fake.status == 0, "\(fake)")
        #expect(!Harness.isMounted(mnt))
    }

    @Test func fstabLinesWithMountAllTwiceAndAURLSource() throws {
        let nginx = try Nginx(root: release.root)
        defer { nginx.stop() }
        try withFuseJigdofsHelper { try mountAllTwice(nginx) }
    }

    func mountAllTwice(_ nginx: Nginx) throws {
        let dir = try Harness.makeTempDir("fstab-all")
        defer { removeTree(dir) }
        let local = try lonelyCopy("jte-md5-gz")
        let url = "\(nginx.url)jf-sha256-gz/release.jigdo"
        let (m1, m2) = (dir + "/local", dir + "/remote")
        for m in [m1, m2] { try FileManager.default.createDirectory(atPath: m, withIntermediateDirectories: false) }
        defer { for m in [m1, m2] { Harness.cleanUpMount(m) } }
        let fstab = dir + "/fstab"
        try """
            # a local .jigdo, type fuse.jigdofs (as /proc/mounts shows it)
            \(local) \(m1) fuse.jigdofs scan=\(release.tree),nofail,noauto,x-systemd.automount 0 0
            \(url) \(m2) fuse.jigdofs server=Base=\(nginx.url)tree/,cache-dir=\(dir)/cache,_netdev,defaults 0 0

            """.write(toFile: fstab, atomically: true, encoding: .utf8)
        // noauto lines are not part of `mount -a`: mount the first one by its mount point.
        try Harness.check(["mount", "-T", fstab, m1])
        try Harness.check(["mount", "-a", "-T", fstab])
        #expect(Harness.isMounted(m1) && Harness.isMounted(m2))
        #expect(mountEntry(m2)?.source == url, "a URL is shown verbatim: \(String(describing: mountEntry(m2)))")
        #expect(mountEntry(m1)?.source == local)
        // The second `mount -a` finds both mounted and mounts nothing twice.
        let again = try Harness.run(["mount", "-a", "-v", "-T", fstab])
        #expect(again.status == 0, "\(again)")
        #expect(again.stdout.contains("already mounted") || again.stderr.contains("already mounted"), "\(again)")
        #expect(Harness.mountPoints().filter { $0 == m2 }.count == 1)
        let again1 = try Harness.run(["mount", "-T", fstab, m1])
        #expect(again1.status != 0 && Harness.mountPoints().filter { $0 == m1 }.count == 1, "\(again1)")
        let cmp = try Harness.run(["cmp", m2 + "/release.iso", release.variant("jf-sha256-gz").iso])
        #expect(cmp.status == 0, "\(cmp)")
    }

    @Test func mountsOverAnAutomountTrigger() throws {
        // x-systemd.automount: an autofs trigger is mounted at the mount point first and the
        // real mount goes on top. A tmpfs stands in for the trigger.
        let mnt = try Harness.makeTempDir("automount")
        defer { Harness.cleanUpMount(mnt) }
        try Harness.check(["mount", "-t", "tmpfs", "-o", "size=1m", "trigger", mnt])
        let r = try Harness.run([Harness.jigdofs, "mount", release.variant("jf-md5-gz").jigdo, mnt])
        #expect(r.status == 0, "\(r)")
        #expect(mountEntry(mnt)?.type == "fuse.jigdofs")
        let cmp = try Harness.run(["cmp", mnt + "/release.iso", release.variant("jf-md5-gz").iso])
        #expect(cmp.status == 0, "\(cmp)")
        // A second jigdofs mount on top of the first is still refused.
        let twice = try Harness.run([Harness.jigdofs, "mount", release.variant("jf-md5-gz").jigdo, mnt])
        #expect(twice.status != 0 && twice.stderr.contains("busy"), "\(twice)")
    }

    @Test func systemdFstabGeneratorMakesMountAndAutomountUnits() throws {
        let generator = "/lib/systemd/system-generators/systemd-fstab-generator"
        try #require(FileManager.default.isExecutableFile(atPath: generator), "systemd is not installed")
        let dir = try Harness.makeTempDir("generator")
        defer { removeTree(dir) }
        let jigdo = release.variant("jf-md5-gz").jigdo
        try "\(jigdo) /srv/jigdo/sme fuse.jigdofs scan=/srv/mirror,x-systemd.automount,nofail 0 0\n"
            .write(toFile: dir + "/fstab", atomically: true, encoding: .utf8)
        for d in ["normal", "early", "late"] { try FileManager.default.createDirectory(atPath: "\(dir)/\(d)", withIntermediateDirectories: true) }
        // Reads $SYSTEMD_FSTAB instead of /etc/fstab and only writes unit files into the three
        // directories it is given; nothing is started.
        let r = try Harness.run([generator, dir + "/normal", dir + "/early", dir + "/late"],
                                environment: ["SYSTEMD_FSTAB": dir + "/fstab", "SYSTEMD_PROC_CMDLINE": "", "SYSTEMD_LOG_LEVEL": "err"])
        #expect(r.status == 0, "\(r)")
        let unit = try String(contentsOfFile: dir + "/normal/srv-jigdo-sme.mount", encoding: .utf8)
        #expect(unit.contains("What=\(jigdo)") && unit.contains("Type=fuse.jigdofs"), "\(unit)")
        #expect(unit.contains("Options=scan=/srv/mirror"), "\(unit)")
        let automount = try String(contentsOfFile: dir + "/normal/srv-jigdo-sme.automount", encoding: .utf8)
        #expect(automount.contains("Where=/srv/jigdo/sme"), "\(automount)")
    }

    @Test func configurationServersDefaultsAndTheCommandLineWins() throws {
        let dir = try Harness.makeTempDir("config")
        defer { removeTree(dir) }
        let jigdo = try lonelyCopy("jf-sha256-gz")
        let system = dir + "/jigdofs.conf", user = dir + "/user.conf"
        // The system file names a wrong place for the parts, the user's file the right one.
        try """
            # system-wide
            [Servers]
            Base=/nonexistent/tree/
            [Defaults]
            cache-dir = \(dir)/system-cache
            jobs = 3

            """.write(toFile: system, atomically: true, encoding: .utf8)
        try """
            [Servers]
            Base = '\(release.tree)/'
            [Defaults]
            cache-dir = \(dir)/cache
            """.write(toFile: user, atomically: true, encoding: .utf8)
        let env = ["JIGDOFS_SYSTEM_CONFIG": system, "JIGDOFS_CONFIG": user]
        let shown = try CLI.run(["config"], environment: env)
        #expect(shown.status == 0, "\(shown)")
        #expect(shown.stdout.contains("Base=\(release.tree)/") && shown.stdout.contains("\(user):2"), "\(shown.stdout)")
        #expect(shown.stdout.contains("jobs = 3") && shown.stdout.contains("\(system):6"), "\(shown.stdout)")
        #expect(shown.stdout.contains("cache-dir = \(dir)/cache") && !shown.stdout.contains("system-cache"), "\(shown.stdout)")

        // A mount with no option finds the parts through the user's [Servers].
        try Harness.withMount([jigdo], options: ["--offline"], command: nil, environment: env) { mnt in
            let cmp = try Harness.run(["cmp", mnt + "/release.iso", release.variant("jf-sha256-gz").iso])
            #expect(cmp.status == 0, "\(cmp)")
        }
        // The command line wins: with --server Base=<wrong> the parts are missing.
        let verify = try CLI.run(["verify", jigdo, "--offline", "--server", "Base=/nonexistent/tree/"], environment: env)
        #expect(verify.status == 2, "\(verify)")
        let verifyConfig = try CLI.run(["verify", jigdo, "--offline"], environment: env)
        #expect(verifyConfig.status == 0, "\(verifyConfig)")

        // A bad line: one error naming the file and the line.
        try "[Defaults]\njobs = 2\ncahce-size = 1G\n".write(toFile: user, atomically: true, encoding: .utf8)
        let bad = try CLI.run(["verify", jigdo], environment: env)
        #expect(bad.status != 0 && bad.stderrLines.count == 1, "\(bad)")
        #expect(bad.stderr.contains("\(user): line 3") && bad.stderr.contains("did you mean 'cache-size'"), "\(bad)")
        try "[Servers]\nBase http://x/\n".write(toFile: user, atomically: true, encoding: .utf8)
        let bad2 = try CLI.run(["config"], environment: env)
        #expect(bad2.status != 0 && bad2.stderr.contains("\(user): line 2"), "\(bad2)")
    }

    @Test func backgroundMountLogsToSyslogWithoutALogFile() throws {
        let dir = try Harness.makeTempDir("syslog")
        defer { removeTree(dir) }
        let syslog = try DatagramListener(path: dir + "/log")
        let notify = try DatagramListener(path: dir + "/notify")
        let jigdo = try lonelyCopy("jf-md5-gz")
        // Every part's only location fails (nothing listens there): reads fail, and the mount
        // logs each failing location.
        let port = try freePort()
        let env = ["JIGDOFS_SYSLOG_SOCKET": syslog.path, "NOTIFY_SOCKET": notify.path]
        try Harness.withMount([jigdo], options: ["--server", "Base=http://127.0.0.1:\(port)/tree/", "--cache-dir", dir + "/cache"],
                              command: nil, environment: env) { mnt in
            var seen: [String] = []
            let mounted = syslog.receive(until: { $0.contains("mounted") }, seen: &seen)
            #expect(mounted != nil, "syslog got: \(seen)")
            if let mounted {
                #expect(mounted.hasPrefix("<29>"), "daemon.notice: \(mounted)")
                #expect(mounted.contains("jigdofs[") && mounted.contains("\(mnt): mounted"), "\(mounted)")
            }
            let ready = notify.receive()
            #expect(ready?.contains("READY=1") == true, "\(String(describing: ready))")
            let cmp = try Harness.run(["cmp", mnt + "/release.iso", release.variant("jf-md5-gz").iso])
            #expect(cmp.status != 0)
            let failed = syslog.receive(until: { $0.contains("127.0.0.1:\(port)") }, seen: &seen)
            #expect(failed?.contains(mnt) == true, "syslog got: \(seen)")
        }
    }

    @Test func sighupReopensTheLogFileAndKeepsTheMount() throws {
        let dir = try Harness.makeTempDir("sighup")
        defer { removeTree(dir) }
        let log = dir + "/jigdofs.log"
        try Harness.withMount([release.variant("jf-md5-gz").jigdo], options: ["--log-file", log, "-v"]) { mnt in
            // The daemon writes the line once the kernel has the mount: it may follow the mount
            // by a moment.
            try Harness.waitUntil("the 'mounted' line in the log file") {
                ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("\(mnt): mounted")
            }
            let daemons = Harness.pids(withArgument: mnt)
            try #require(daemons.count == 1)
            // logrotate: move the file away, then SIGHUP.
            try FileManager.default.moveItem(atPath: log, toPath: log + ".1")
            kill(daemons[0], SIGHUP)
            try Harness.waitUntil("a new log file") {
                ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("reopened")
            }
            #expect(Harness.isMounted(mnt))
            #expect(kill(daemons[0], 0) == 0)
            let cmp = try Harness.run(["cmp", mnt + "/release.iso", release.variant("jf-md5-gz").iso])
            #expect(cmp.status == 0, "\(cmp)")
        }
    }
}
