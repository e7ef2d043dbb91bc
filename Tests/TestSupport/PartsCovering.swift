import JigdoFormat

extension TemplateInfo {
    /// The parts of the layout entries covering `offset..<offset+count`, in image order: what a
    /// read of that range needs. Only tests ask this (which parts a file's extents touch), so
    /// it lives here rather than in ImageReader.
    public func partsCovering(offset: Int64, count: Int64) -> [Int] {
        guard count > 0, var index = layoutIndex(containing: offset) else { return [] }
        var out: [Int] = []
        let end = min(offset + count, imageLength)
        while index < layout.count, layout[index].imageOffset < end {
            if case .part(let p) = layout[index].source { out.append(p) }
            index += 1
        }
        return out
    }
}
