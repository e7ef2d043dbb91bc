// Unit tests of FUSEBridge: JigdoFilesystem called directly, without mounting (routing,
// attributes, errno mapping). Tests through a real mount are in MountTests.
import FUSEBridge
import Testing
