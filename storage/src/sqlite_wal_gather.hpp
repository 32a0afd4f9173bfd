// A SQLite VFS that gathers the WAL's appends: a transaction's frames are
// written to the -wal file in a few large writes instead of two system calls
// per page (a frame's 24-byte header, then its page).
//
// It wraps the default VFS ("unix"). Only files SQLite opens as a WAL are
// changed: consecutive writes are kept in a buffer (120 KiB) and written
// before anything that could read them or depends on them:
// - xSync (a commit under synchronous=FULL syncs the WAL before it publishes
//   the commit in the wal-index, so a commit is on disk exactly as before);
// - xRead of a range the buffer holds, xFileSize, xTruncate, xFileControl,
//   xClose, and a write that is not the next byte;
// - the database file's xShmBarrier, which SQLite calls before every update
//   of the wal-index header (walIndexWriteHdr): no other connection can be
//   told of a frame that is not in the file, whatever the synchronous level.
// A failed write is reported by the call that made it (SQLITE_FULL on ENOSPC,
// as the unix VFS reports it), and the buffer is dropped: the transaction
// fails and SQLite writes its frames again. SQLite's durability and crash
// recovery are unchanged: frames only count once a commit frame is synced,
// and recovery stops at the first frame whose checksum does not follow.
//
// docs/performance/processor.md, "The WAL's appends gathered".
#pragma once

namespace kpay::storage::wal_gather {

// The VFS's name, registered on first use (not the default VFS).
const char* vfs_name();

}  // namespace kpay::storage::wal_gather
