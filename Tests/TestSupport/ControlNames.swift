import Foundation

/// A release whose ISO holds a file with a hostile Rock Ridge name: a newline, then the text of
/// a whole log line, then a terminal escape sequence (clear screen). Made by xorriso and
/// jigdo-file at test time; the part's file lies in `parts/` under a plain name (jigdo-file
/// would write the odd name into the .jigdo), so a mount without `--scan parts` cannot read it.
public struct ControlNameRelease: Sendable {
    /// What the name tries to pass off as a line of the `--log-file`.
    public static let forgedLine = "2026-01-01T00:00:00Z jigdofs[1] notice: FORGED LINE"
    /// The file's name in the image.
    public static let name = "x\n" + forgedLine + "\u{1B}[2J"
    /// How jigdofs shows the name (`RawNames.printable`: control characters as `\xHH`).
    public static let shown = "x\\x0A" + forgedLine + "\\x1B[2J"

    public let directory: String
    /// `release/rr.jigdo` (its template next to it).
    public var jigdo: String { directory + "/release/rr.jigdo" }
    /// The directory holding the one part under a plain name (for `--scan`).
    public var parts: String { directory + "/parts" }
    public var iso: String { directory + "/rr.iso" }

    /// Makes the release in `directory` (which must exist).
    public static func make(in directory: String) throws -> ControlNameRelease {
        let fm = FileManager.default
        for d in ["src", "parts", "release"] {
            try fm.createDirectory(atPath: directory + "/" + d, withIntermediateDirectories: true)
        }
        var generator = SystemRandomNumberGenerator()
        let data = Data((0..<70_000).map { _ in UInt8.random(in: 0...255, using: &generator) })
        guard fm.createFile(atPath: directory + "/src/" + name, contents: data),
              fm.createFile(atPath: directory + "/parts/plain.bin", contents: data),
              fm.createFile(atPath: directory + "/src/README.txt", contents: Data("hello\n".utf8)) else {
            throw FixtureError("cannot create the files of the control-name release in \(directory)")
        }
        let release = ControlNameRelease(directory: directory)
        try Subprocess.check(["xorriso", "-as", "mkisofs", "-quiet", "-R", "-J", "-o", release.iso, directory + "/src"])
        // Made from `made/`, then moved: the .jigdo's own `file:` server names a directory
        // that no longer exists, so only `--scan parts` finds the part.
        try fm.moveItem(atPath: release.parts, toPath: directory + "/made")
        try Subprocess.check(["jigdo-file", "make-template", "-r", "quiet", "--force", "-i", release.iso,
                              "-j", release.jigdo, "-t", directory + "/release/rr.template", directory + "/made//"])
        try fm.moveItem(atPath: directory + "/made", toPath: release.parts)
        return release
    }
}
