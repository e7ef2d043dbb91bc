import TestSupport

// Fixtures of this target, in the per-process temp dir (removed at exit).

let fixtureRoot: String = try! ProcessTemp.directory("partsources")

/// The release built by Tests/Fixtures/make-release.sh (ISO + jigdo-file and libjte variants):
/// its OUT directory. The same release as ISO9660Tests' (TestSupport builds it once).
let releaseFixture: Result<String, any Error> = Result { try Fixtures.release(files: 40, seed: 7).root }
