import Foundation

/// Release N+1 of a fixture release N: about a tenth of the packages changed (new content), one
/// added, one removed; `new.iso` by xorriso, `new.jigdo`/`new.template` by jigdo-file (MD5,
/// gzip) with the parts under label `Base` (`[Servers] Base=file:newtree/`). `changed/` holds
/// hard links to the changed and added files.
public struct UpgradeRelease: Sendable {
    public let dir: String
    public var jigdo: String { dir + "/new.jigdo" }
    public var template: String { dir + "/new.template" }
    public var iso: String { dir + "/new.iso" }
    /// The N+1 tree (label Base); absent when made with `keepTree: false`.
    public var tree: String { dir + "/newtree" }
    /// The changed and added files of N+1 (names c000..., added).
    public var changed: String { dir + "/changed" }

    /// Makes N+1 of the release at `release` (make-release.sh's OUT) in the new directory `dir`.
    /// Without `keepTree` the new tree is deleted afterwards (except `changed/`), so the new
    /// release's parts can come only from there or from the old ISO.
    public static func make(from release: String, in dir: String, keepTree: Bool) throws -> UpgradeRelease {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Subprocess.shell("""
            cp -a \(shellQuote(release))/tree newtree
            mkdir changed
            python3 - <<'PY'
            import os, random
            rng = random.Random(11)
            files = sorted(os.path.join(d, f) for d, _, fs in os.walk("newtree") for f in fs if os.path.getsize(os.path.join(d, f)) >= 1024)
            for i, p in enumerate(rng.sample(files, max(3, len(files) // 10))):
                with open(p, "wb") as f: f.write(rng.randbytes(rng.randrange(2048, 40000)))
                os.link(p, os.path.join("changed", "c%03d" % i))
            os.remove(sorted(f for f in files if os.path.exists(f))[-1])
            with open("newtree/Packages/added-1.0.rpm", "wb") as f: f.write(rng.randbytes(12345))
            os.link("newtree/Packages/added-1.0.rpm", "changed/added")
            PY
            xorriso -as mkisofs -quiet -R -J -V JIGDOFS_TEST2 -o new.iso newtree 2>/dev/null
            jigdo-file make-template -r quiet --force -i new.iso -j new.jigdo -t new.template -C md5 --gzip \
              --label Base="$PWD/newtree" --uri Base=file:newtree/ "$PWD/newtree//"
            \(keepTree ? "" : "rm -rf newtree")
            """, cwd: dir)
        return UpgradeRelease(dir: dir)
    }
}
