import PartSources
import Testing

@Suite("encodeURLForCurl: what libcurl is given")
struct URLEncodingTests {
    @Test("a URL of safe characters is given as it is, percent signs included")
    func safeUnchanged() {
        for url in ["http://m/debian/pool/main/a/a_1.0-1+b2_amd64.deb", "https://h:8080/x%20y/~u/f.iso?q=1&r=2#f", ""] {
            #expect(encodeURLForCurl(url) == url)
        }
    }

    @Test("space, controls, the characters RFC 3986 never allows, and non-ASCII bytes are percent-encoded")
    func unsafeEncoded() {
        #expect(encodeURLForCurl("http://m/a b") == "http://m/a%20b")
        #expect(encodeURLForCurl("http://m/\"<>\\^`{|}") == "http://m/%22%3C%3E%5C%5E%60%7B%7C%7D")
        #expect(encodeURLForCurl("http://m/\u{7F}\t") == "http://m/%7F%09")
        #expect(encodeURLForCurl("http://m/é") == "http://m/%C3%A9")
        #expect(encodeURLForCurl("http://m/ok/é x") == "http://m/ok/%C3%A9%20x")
    }
}
