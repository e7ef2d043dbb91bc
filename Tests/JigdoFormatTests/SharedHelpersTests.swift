import JigdoFormat
import Testing

/// The one copy of small helpers several layers use.
@Suite struct SharedHelpersTests {
    @Test func iso9660SignatureIsTypeByteThenCD001AtSector16() {
        var head = [UInt8](repeating: 0, count: 32768 + 6)
        #expect(!ISO9660Signature.matches(head: head))
        head.replaceSubrange(32769..<32774, with: Array("CD001".utf8))
        #expect(ISO9660Signature.matches(head: head))
        #expect(!ISO9660Signature.matches(head: Array(head.dropLast())), "a head too short to hold it")
        #expect(ISO9660Signature.matches([1] + Array("CD001".utf8)))
        #expect(!ISO9660Signature.matches(Array("CD001".utf8) + [1]), "CD001 starts at the second byte")

        let descriptor = Array(head[32768...])
        let read = { (offset: Int64, count: Int) -> [UInt8] in
            #expect(offset == ISO9660Signature.offset && count == ISO9660Signature.length)
            return descriptor
        }
        #expect(ISO9660Signature.probe(size: 32768 + 2048, read: read))
        #expect(!ISO9660Signature.probe(size: 32768 + 2047, read: read), "the first descriptor must fit")
    }

    @Test func trimming() {
        #expect(" \t a b \t".trimmingBlanks() == "a b")
        #expect(Substring("\t\t").trimmingBlanks().isEmpty)
        #expect(" NAME \0\0 ".trimming(leading: { $0 == " " }, trailing: { $0 == " " || $0 == "\0" }) == "NAME")
        #expect("line\n\n".trimming(trailing: { $0 == "\n" }) == "line")
        #expect("\nline".trimming(trailing: { $0 == "\n" }) == "\nline", "only what is asked for, only where")
    }
}

/// `RawNames.printable`/`printableName`: the one escaping of names shown or logged.
@Suite struct PrintableNameTests {
    @Test func controlCharactersAndRawBytesBecomeHexEscapes() {
        let raw = RawNames.decode([0x63, 0x61, 0x66, 0xE9]).text // "caf" + a Latin-1 byte
        #expect(RawNames.printable("a\nb\u{1B}[2J\u{0}\u{7F}\u{9B}\tc") == "a\\x0Ab\\x1B[2J\\x00\\x7F\\xC2\\x9B\\x09c")
        #expect(RawNames.printable(raw) == "caf\\xE9")
        // Printable text, backslashes and other Unicode are left alone; a second pass changes nothing.
        for text in ["plain name.iso", "dir\\x41", "é ü 日本 \u{A0}", ""] { #expect(RawNames.printable(text) == text) }
        let once = RawNames.printable("x\n\u{85}y")
        #expect(RawNames.printable(once) == once)
    }

    @Test func printableNameAlsoEscapesTheBackslash() {
        #expect(RawNames.printableName("a\\x0Ab") == "a\\\\x0Ab")
        #expect(RawNames.printableName("a\nb") == "a\\x0Ab")
        #expect(RawNames.printableName("a\\x0Ab") != RawNames.printableName("a\nb"), "two names, two forms")
        #expect(RawNames.printableName("plain") == "plain")
    }
}
