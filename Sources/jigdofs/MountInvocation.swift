import ArgumentParser
import Foundation
import FUSEBridge
import JigdoFormat

/// The ways a mount reaches us, turned into one `jigdofs mount` command line:
///
/// - `jigdofs mount [OPTIONS] SOURCE... MOUNTPOINT [-o OPTS]`
/// - as a mount(8) helper (`/sbin/mount.jigdofs`, `/sbin/mount.fuse.jigdofs`, or the
///   `mount-helpers/mount.jigdofs` script, which runs `jigdofs --mount-helper ...`):
///   `SOURCE MOUNTPOINT [-sfnvrw] [-N NS] [-o OPTS] [-t TYPE]`
/// - from mount.fuse3 (`mount -t fuse.jigdofs` without our own helper, or an fstab line of that
///   type): `jigdofs SOURCE MOUNTPOINT -o OPTS`
///
/// Every `-o` item is one of: a jigdofs option (`scan=DIR` -> `--scan DIR`, `offline` ->
/// `--offline`, any long option `jigdofs mount` has, found through `OptionCatalog`), an fstab or
/// mount(8) bookkeeping word (dropped), or a FUSE/kernel mount option (passed on to libfuse).
/// A word close to a jigdofs option name that is neither is refused with "did you mean".
struct MountInvocation {
    /// The `jigdofs mount ...` arguments.
    var arguments: [String]
    /// mount -f: check everything, mount nothing.
    var fake = false

    /// fstab and mount(8) bookkeeping that means nothing to FUSE. `rw` and `ro` too: the
    /// filesystem is read-only whatever the line says (FUSEMount always adds `ro`).
    static let dropped: Set<String> = [
        "defaults", "auto", "noauto", "user", "users", "nouser", "owner", "group", "_netdev", "nofail",
        "rw", "ro", "loop",
    ]
    static let droppedPrefixes = ["x-", "comment=", "loop=", "user=", "helper=", "X-"]

    /// Options libfuse or the kernel take (fuse_new, fuse_mount, the generic mount flags): passed
    /// through as they are, never taken for a misspelt jigdofs option.
    static let fuseOptions: Set<String> = [
        "allow_other", "allow_root", "auto_unmount", "default_permissions", "fsname", "subtype",
        "max_read", "blkdev", "blksize", "kernel_cache", "auto_cache", "noforget", "remember", "umask",
        "uid", "gid", "entry_timeout", "negative_timeout", "attr_timeout", "ac_attr_timeout",
        "atime", "noatime", "relatime", "norelatime", "strictatime", "nodiratime", "diratime", "lazytime", "nolazytime",
        "nosuid", "suid", "nodev", "dev", "noexec", "exec", "dirsync", "sync", "async",
        "rootmode", "context", "fscontext", "defcontext", "rootcontext", "max_threads", "clone_fd",
        "max_idle_threads", "use_ino", "readdir_ino", "direct_io", "hard_remove", "intr", "intr_signal",
        "modules", "max_write", "max_readahead", "max_background", "congestion_threshold",
        "async_read", "sync_read", "atomic_o_trunc", "no_remote_lock", "no_remote_flock",
        "no_remote_posix_lock", "splice_write", "no_splice_write", "splice_move", "no_splice_move",
        "splice_read", "no_splice_read", "nonempty", "debug", "silent", "mand", "nomand",
    ]

    static let helperFlag = "--mount-helper"

    /// The arguments to parse, or nil when this is not a mount at all (another subcommand).
    /// `invokedAs` is the program's base name (`mount.fuse.jigdofs` when run as a symlink).
    static func normalize(_ args: [String], invokedAs: String, subcommands: Set<String>) throws -> MountInvocation? {
        if invokedAs.hasPrefix("mount.") {
            return try helper(args)
        }
        guard let first = args.first else { return nil }
        if first == helperFlag {
            return try helper(Array(args.dropFirst()))
        }
        if first == "mount" {
            return try mount(Array(args.dropFirst()))
        }
        // mount.fuse3 runs `jigdofs SOURCE MOUNTPOINT -o OPTS`.
        if !subcommands.contains(first), !first.hasPrefix("-"), args.count >= 2,
           isRemoteURL(first) || fileExists(first) {
            return try helper(args)
        }
        return nil
    }

    /// `SOURCE MOUNTPOINT [-sfnvrw] [-N NS] [-o OPTS] [-t TYPE]`, as mount(8) runs helpers.
    static func helper(_ args: [String]) throws -> MountInvocation {
        var positional: [String] = []
        var options: [String] = []
        var fake = false
        var verbose = false
        var i = 0
        while i < args.count {
            let a = args[i]
            if a == "-o" || a == "-t" || a == "-N" {
                guard i + 1 < args.count else { throw usage("\(a) needs a value") }
                if a == "-o" { options.append(args[i + 1]) }
                i += 2
                continue
            }
            if a.hasPrefix("-o") && a.count > 2 {
                options.append(String(a.dropFirst(2)))
            } else if a.hasPrefix("-"), a.count > 1, a.dropFirst().allSatisfy({ "sfnvrwi".contains($0) }) {
                if a.contains("f") { fake = true }
                if a.contains("v") { verbose = true }
            } else if a.hasPrefix("-") && a.count > 1 {
                throw usage("unknown mount helper option '\(a)'")
            } else {
                positional.append(a)
            }
            i += 1
        }
        guard positional.count == 2 else {
            throw usage("as a mount helper: SOURCE MOUNTPOINT [-o OPTIONS], got \(positional.count) arguments")
        }
        var translated = try translate(options)
        if verbose && !translated.contains(where: { $0.hasPrefix("--log-level") || $0 == "-v" }) {
            translated.append("-v")
        }
        return MountInvocation(arguments: ["mount"] + translated + positional, fake: fake)
    }

    /// `jigdofs mount ...`: the `-o` values are translated, everything else stays as it is.
    static func mount(_ args: [String]) throws -> MountInvocation {
        let catalog = OptionCatalog(Mount.self)
        var kept: [String] = []
        var options: [String] = []
        var i = 0
        while i < args.count {
            let a = args[i]
            if a == "--" {
                break
            }
            if a == "-o" {
                guard i + 1 < args.count else { throw usage("-o needs a value") }
                options.append(args[i + 1])
                i += 2
                continue
            }
            if a.hasPrefix("-o") && a.count > 2 && !a.hasPrefix("--") {
                options.append(String(a.dropFirst(2)))
                i += 1
                continue
            }
            kept.append(a)
            // A value that looks like an option (`--scan -o`) belongs to its option.
            if a.hasPrefix("--"), !a.contains("="), catalog[String(a.dropFirst(2))]?.kind == .option, i + 1 < args.count {
                kept.append(args[i + 1])
                i += 1
            } else if a.hasPrefix("-"), !a.hasPrefix("--"), a.count == 2, let c = a.last, catalog.shortTakesValue[c] == true, i + 1 < args.count {
                kept.append(args[i + 1])
                i += 1
            }
            i += 1
        }
        let rest = i < args.count ? Array(args[i...]) : []
        return MountInvocation(arguments: ["mount"] + kept + (try translate(options)) + rest)
    }

    /// `-o` values (each a comma-separated list, `\,` for a literal comma) -> jigdofs options,
    /// followed by one `-o` with the FUSE options, if any.
    static func translate(_ values: [String]) throws -> [String] {
        let catalog = OptionCatalog(Mount.self)
        var out: [String] = []
        var fuse: [String] = []
        for item in values.flatMap(splitOptionList) where !item.isEmpty {
            let eq = item.firstIndex(of: "=")
            let key = eq.map { String(item[..<$0]) } ?? item
            let value = eq.map { String(item[item.index(after: $0)...]) }
            if dropped.contains(item) || droppedPrefixes.contains(where: { item.hasPrefix($0) }) {
                continue
            }
            if fuseOptions.contains(key) {
                fuse.append(item)
                continue
            }
            let name = catalog[key] != nil ? key : key.replacingOccurrences(of: "_", with: "-")
            if let entry = catalog[name] {
                switch entry.kind {
                case .flag:
                    guard value == nil else { throw usage("-o \(key) is a flag and takes no value (got '\(item)')") }
                    out.append("--" + name)
                case .option:
                    guard let value, !value.isEmpty else { throw usage("-o \(key) needs a value: \(key)=...") }
                    out += ["--" + name, value]
                }
                continue
            }
            if let guess = closestName(to: key, in: catalog.names + Array(fuseOptions)) {
                throw usage("unknown mount option '\(key)'; did you mean '\(guess)'?")
            }
            // Anything else is libfuse's to judge (it names what it does not know).
            fuse.append(item)
        }
        if !fuse.isEmpty { out += ["-o", fuse.map(FUSEMount.escapeOption).joined(separator: ",")] }
        return out
    }

    /// Splits at commas not escaped with a backslash; removes the escapes.
    static func splitOptionList(_ list: String) -> [String] {
        var items: [String] = []
        var current = ""
        var escaped = false
        for c in list {
            if escaped {
                current.append(c)
                escaped = false
            } else if c == "\\" {
                escaped = true
            } else if c == "," {
                items.append(current)
                current = ""
            } else {
                current.append(c)
            }
        }
        if escaped { current.append("\\") }
        items.append(current)
        return items
    }

    static func usage(_ message: String) -> CommandFailure {
        CommandFailure(message: message, code: 64)
    }
}
