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
