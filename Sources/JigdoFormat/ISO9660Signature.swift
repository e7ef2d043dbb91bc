/// How an ISO 9660 image is recognised: its first volume descriptor, at sector 16, starts with a
/// type byte and "CD001". The one copy of that check: telling an ISO from a .jigdo or a template
/// (`jigdofs ls` on an ISO, a mistaken source), and whether an image gets a browse view.
public enum ISO9660Signature {
    /// Where the first volume descriptor starts (sector 16 of 2048 bytes).
    public static let offset: Int64 = 16 * 2048
    /// How many bytes at `offset` the signature takes (type byte + "CD001").
    public static let length = 6

    /// Whether `bytes`, read at `offset`, start with the signature.
    public static func matches(_ bytes: some Collection<UInt8>) -> Bool {
        bytes.count >= length && bytes.dropFirst().prefix(5).elementsEqual("CD001".utf8)
    }

    /// Whether the first bytes of a file (read from offset 0) hold the signature.
    public static func matches(head: [UInt8]) -> Bool {
        head.count >= Int(offset) + length && matches(head[Int(offset)...])
    }

    /// Whether an image of `size` bytes starts like an ISO 9660 volume; `read(offset, count)`
    /// reads its bytes (only the signature's). The whole first descriptor must lie in the image.
    public static func probe(size: Int64, read: (Int64, Int) throws -> [UInt8]) rethrows -> Bool {
        guard size >= offset + 2048 else { return false }
        return matches(try read(offset, length))
    }
}
