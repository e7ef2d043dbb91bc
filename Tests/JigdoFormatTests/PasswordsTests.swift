import JigdoFormat
import Testing

/// The one masking of URL passwords that everything shown or logged goes through.
@Suite struct PasswordsTests {
    @Test("one URL: the password is ***, a user alone stays, no login is left as it is", arguments: [
        ("http://alice:s3cret@host/debian/", "http://alice:***@host/debian/"),
        ("https://alice:p%40ss@host:8443/x?y=1#z", "https://alice:***@host:8443/x?y=1#z"),
        ("http://alice:pa\"ss, w@host/", "http://alice:***@host/"),
        ("http://:only@host", "http://:***@host"),
        ("http://alice@host/", "http://alice@host/"),
        ("http://host/a:b@c/", "http://host/a:b@c/"),
        ("carol:pw@proxy:3128", "carol:***@proxy:3128"),
        ("/srv/a:b@c/x.jigdo", "/srv/a:b@c/x.jigdo"),
        ("http://alice:***@host/", "http://alice:***@host/"),
    ])
    func oneURL(_ url: String, _ shown: String) {
        #expect(Passwords.masked(url: url) == shown)
    }

    @Test("in free text every URL is masked and the text around it (JSON, sentences) stays", arguments: [
        ("fetching http://bob:pw1@h/x.jigdo and https://eve:pw2@k/y: HTTP status 401",
         "fetching http://bob:***@h/x.jigdo and https://eve:***@k/y: HTTP status 401"),
        (#"{"jigdo":"http://bob:pw@h","next":"x@y"}"#, #"{"jigdo":"http://bob:***@h","next":"x@y"}"#),
        ("--server=Base=http://alice:pw@h,scan=/x", "--server=Base=http://alice:***@h,scan=/x"),
        ("(from http://u:pw@proxy:3128)", "(from http://u:***@proxy:3128)"),
        ("mail me at a@b.c, see http://host/", "mail me at a@b.c, see http://host/"),
    ])
    func freeText(_ text: String, _ shown: String) {
        #expect(Passwords.masked(text: text) == shown)
        #expect(Passwords.containsPassword(text) == (text != shown))
    }
}
