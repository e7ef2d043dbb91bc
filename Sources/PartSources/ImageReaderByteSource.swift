import ImageAssembly
import ISO9660

// Glue between two layers that do not know each other: ISO9660 (beside JigdoFormat) reads any
// `ImageByteSource`, ImageAssembly's `ImageReader` serves a jigdo image's bytes. PartSources is
// the lowest target that imports both (it reads old ISO images through ISO9660), so the
// conformance lives here and is seen by the bridge, the command line and the tests alike.
extension ImageReader: ImageByteSource {}
