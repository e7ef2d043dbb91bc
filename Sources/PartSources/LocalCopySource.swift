import ImageAssembly
import JigdoFormat

/// A part's verified copy in a plain file, handed over once by the local source that checked
/// it: the pipeline's table keeps it (`PartTable.State.localFile`) and reads it with one
/// `pread` and one `fstat`, without asking the source again.
public struct LocalCopy: Sendable {
    /// The open file (shared with the source; closed when the last holder lets it go).
    public let file: ReadOnlyFile
    /// Where the part starts in the file: 0 for a scanned or mapped file, the extent's start
    /// for a file inside an old ISO image.
    public let base: Int64
    /// The file as it was when the part's bytes were checked: a file whose identity differs
    /// after a read is not served (its bytes are checked again by the source).
    public let identity: FileIdentity
}

/// A local source that can hand over a part's checked copy (`LocalParts`, `ISOImageParts`,
/// a `PartSourceChain` of them).
public protocol LocalCopySource: PartSource {
    /// The part's verified copy in a plain file, checked as `readPart` checks it (a file changed
    /// since its check is checked again). nil: the source serves the part another way (an
    /// image assembled by another pipeline, a file of several extents, a block device), so it
    /// is read through `readPart`. Throws `JigdoError(.partUnavailable)` as `readPart` does
    /// when the candidates were refused.
    func checkedCopy(_ index: Int) throws -> LocalCopy?
}

extension PartSourceChain: LocalCopySource {
    /// The copy of the first source (in order) that has the part locally. nil when that source
    /// has no file-backed copy, and when no source gave one (`readPart` then tries them all,
    /// as before, and says why they failed).
    public func checkedCopy(_ index: Int) throws -> LocalCopy? {
        for source in sources where source.isLocallyAvailable(index) {
            guard let copies = source as? any LocalCopySource else { return nil }
            do {
                if let copy = try copies.checkedCopy(index) { return copy }
                return nil
            } catch {
                // Refused (or failed): the next source that has it, as `readPart` goes on.
                continue
            }
        }
        return nil
    }
}
