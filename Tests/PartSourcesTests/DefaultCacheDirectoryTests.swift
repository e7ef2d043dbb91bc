import Foundation
import PartSources
import Testing

/// `PartCache.defaultDirectory`: the one rule for where the cache lives by default.
@Suite struct DefaultCacheDirectoryTests {
    @Test func absoluteXDGCacheHomeWins() {
        #expect(PartCache.defaultDirectory(environment: ["XDG_CACHE_HOME": "/var/c", "HOME": "/home/u"]) == "/var/c/jigdofs")
        #expect(PartCache.defaultDirectory(environment: ["XDG_CACHE_HOME": "/var/c/", "HOME": "/home/u"]) == "/var/c/jigdofs")
    }

    @Test func emptyOrRelativeXDGCacheHomeIsIgnored() {
        #expect(PartCache.defaultDirectory(environment: ["XDG_CACHE_HOME": "", "HOME": "/home/u"]) == "/home/u/.cache/jigdofs")
        #expect(PartCache.defaultDirectory(environment: ["XDG_CACHE_HOME": "cache", "HOME": "/home/u"]) == "/home/u/.cache/jigdofs")
        #expect(PartCache.defaultDirectory(environment: ["HOME": "/home/u/"]) == "/home/u/.cache/jigdofs")
    }

    @Test func withoutAbsoluteHomeTheResultIsStillAbsolute() {
        for env in [[:], ["HOME": ""], ["HOME": "relative"]] as [[String: String]] {
            let dir = PartCache.defaultDirectory(environment: env)
            #expect(dir.hasPrefix("/"), "\(env) -> \(dir)")
            #expect(dir.hasSuffix("/.cache/jigdofs") || dir.hasPrefix("/tmp/jigdofs-"), "\(env) -> \(dir)")
            #expect(!dir.hasPrefix("relative") && !dir.contains("//"))
        }
    }
}

/// The last fallback (no home at all) is under an absolute `$TMPDIR`, else `/tmp`.
@Suite struct TemporaryCacheFallbackTests {
    @Test func fallbackIsUnderTMPDIR() {
        #expect(PartCache.defaultDirectory(environment: ["TMPDIR": "/var/tmp/x/"], userDatabaseHome: nil) == "/var/tmp/x/jigdofs-\(geteuid())")
        #expect(PartCache.defaultDirectory(environment: ["TMPDIR": "rel"], userDatabaseHome: nil) == "/tmp/jigdofs-\(geteuid())")
        #expect(PartCache.defaultDirectory(environment: [:], userDatabaseHome: "") == "/tmp/jigdofs-\(geteuid())")
        #expect(PartCache.defaultDirectory(environment: [:], userDatabaseHome: "/home/u") == "/home/u/.cache/jigdofs")
    }
}
