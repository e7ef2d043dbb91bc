import Foundation

extension FixtureVariant {
    /// Copies the .jigdo (as plain text) and the template into `dir` and writes
    /// `dir/merged.jigdo`: the .jigdo with `sections` `[Image]` sections, all naming the same
    /// template (as `jigdo-file --merge` writes them for images that share one), each with its
    /// own Filename (`copy2.iso`...) and the original's template checksum lines. Returns its path.
    public func mergedJigdo(sections: Int, into dir: String) throws -> String {
        try FileManager.default.copyItem(atPath: template, toPath: dir + "/release.template")
        let r = try Subprocess.check(["gzip", "-dcf", jigdo])
        let text = r.stdout
        let sums = text.split(separator: "\n").filter { $0.hasPrefix("Template-MD5Sum=") || $0.hasPrefix("Template-SHA256Sum=") }
        var merged = text
        for i in stride(from: 2, through: sections, by: 1) {
            merged += "\n[Image]\nFilename=copy\(i).iso\nTemplate=release.template\n" + sums.joined(separator: "\n") + "\n"
        }
        let path = dir + "/merged.jigdo"
        try writeBytes(Array(merged.utf8), to: path)
        return path
    }
}
