import JigdoFormat

// Local parts the table keeps: a local source's checked file (`PartTable.State.localFile`).

extension PartPipeline {
    /// Reads a local source's checked file (`base` + `offset`). A file whose identity is not
    /// the checked one after the read (or whose read failed: truncated) is not served: its
    /// entry goes, and the read goes round again, asking the source, which checks it again.
    func readLocalFile(_ index: Int, key: Int32, _ file: ReadOnlyFile, base: Int64, _ identity: FileIdentity, at offset: Int64,
                       into buffer: UnsafeMutableRawBufferPointer, round: Int, pinned: inout Checksum?) throws {
        var failure: Error?
        do {
            try file.read(at: base + offset, into: buffer)
        } catch {
            failure = error
        }
        let now = file.currentIdentity()
        if now == identity {
            if let failure { throw failure }
            return
        }
        _ = event { $0.localFileChanged(key, checked: identity) }
        logger.debug("\(RawNames.display(file.path)): changed since it was checked; its source checks it again")
        // After two rounds the local source reads it itself (and refuses it if it keeps changing).
        try readPart(index, key: key, found: nil, at: offset, into: buffer, round: round + 1, pinned: &pinned)
    }
}
