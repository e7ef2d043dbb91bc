// Unit tests of PartSources (local copies, scans, the part cache, the download pipeline)
// without servers; the tests against nginx and the fault server are in DownloadTests.
import PartSources
import Testing
