// The WAL's appends gathered (storage/src/sqlite_wal_gather.hpp): a
// transaction's frames reach the -wal file in a few large writes, and
// nothing SQLite promises changes: every commit is in the file when it
// returns (a SIGKILL loses none), another connection never learns of a frame
// that is not in the file (even without a sync per commit), and a failed
// write fails its transaction and nothing committed before it.
//
// The unix VFS's own system calls are swapped for counting or failing ones
// (sqlite3_vfs::xSetSystemCall): a binary of its own, so no other suite runs
// while they are swapped.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <filesystem>
#include <string>

#include "child_process.hpp"
#include "kpay/storage/sqlite.hpp"
#include "kpay/storage/store_error.hpp"

namespace kpay::storage {
namespace {

using Pwrite = ssize_t (*)(int, const void*, size_t, off_t);

std::atomic<int> g_pwrites{0};
std::atomic<int> g_fail_after{-1};  // pwrites allowed before ENOSPC; -1 never
Pwrite g_real_pwrite = nullptr;

ssize_t counting_pwrite(int fd, const void* buf, size_t n, off_t off) {
  const int before = g_pwrites.fetch_add(1);
  const int allowed = g_fail_after.load();
  if (allowed >= 0 && before >= allowed) {
    errno = ENOSPC;
    return -1;
  }
  return g_real_pwrite(fd, buf, n, off);
}

// Swaps the unix VFS's pwrite64 for the counting one while alive.
class SwappedPwrite {
 public:
  SwappedPwrite() {
    vfs_ = sqlite3_vfs_find("unix");
    g_real_pwrite = reinterpret_cast<Pwrite>(vfs_->xGetSystemCall(vfs_, "pwrite64"));
    EXPECT_NE(g_real_pwrite, nullptr);
    EXPECT_EQ(vfs_->xSetSystemCall(vfs_, "pwrite64",
                                   reinterpret_cast<sqlite3_syscall_ptr>(counting_pwrite)),
              SQLITE_OK);
    g_pwrites = 0;
    g_fail_after = -1;
  }
  ~SwappedPwrite() { vfs_->xSetSystemCall(vfs_, "pwrite64", nullptr); }

 private:
  sqlite3_vfs* vfs_;
};

Database open_table(const std::string& path) {
  auto db = Database::open(path);
  db.exec("PRAGMA wal_autocheckpoint=0");  // only the WAL is written
  db.exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)");
  return db;
}
// One transaction of `rows` rows of ~3 KB (one page each, 4 KiB pages).
void insert_rows(Database& db, int first, int rows) {
  db.exec("BEGIN IMMEDIATE");
  auto s = db.prepare("INSERT INTO t (id, body) VALUES (?, zeroblob(3000))");
  for (int i = first; i < first + rows; ++i) {
    s.bind(1, i);
    s.run();
  }
  db.exec("COMMIT");
}
std::int64_t count_rows(Database& db) {
  auto s = db.prepare("SELECT count(*) FROM t");
  s.step();
  return s.int64(0);
}
std::string integrity(Database& db) {
  auto s = db.prepare("PRAGMA integrity_check");
  s.step();
  return s.text(0);
}

class SqliteWalGather : public ::testing::Test {
 protected:
  void SetUp() override { path_ = test::make_temp_dir("kpay-wal-gather") + "/state.db"; }
  void TearDown() override {
    std::filesystem::remove_all(std::filesystem::path(path_).parent_path());
  }

  std::string path_;
};

TEST_F(SqliteWalGather, ATransactionsFramesReachTheWalInAFewWrites) {
  auto db = open_table(path_);
  insert_rows(db, 0, 10);  // the WAL's header and the table exist
  SwappedPwrite swapped;
  insert_rows(db, 10, 2000);  // ~2,000 frames of 4,120 bytes
  const int writes = g_pwrites.load();
  // Frame by frame this is two writes a frame (header, page): over 4,000.
  // Gathered in 120 KiB writes: ~70 (8.2 MB / 120 KiB), a few more where a
  // frame is written again.
  EXPECT_LT(writes, 200) << "pwrite64 calls for one transaction of ~2,000 pages";
  EXPECT_GT(writes, 0);
  auto reader = Database::open(path_);
  EXPECT_EQ(count_rows(reader), 2010);
  EXPECT_EQ(integrity(reader), "ok");
}

TEST_F(SqliteWalGather, AnotherConnectionSeesEveryCommitEvenWithoutASyncPerCommit) {
  // synchronous=NORMAL: a commit does not sync the WAL, so xSync never
  // writes the buffer; the wal-index header must still only name frames that
  // are in the file (the barrier before SQLite writes it).
  auto writer = open_table(path_);
  writer.exec("PRAGMA synchronous=NORMAL");
  auto reader = Database::open(path_);
  // And a reader on the plain unix VFS, as the sqlite3 shell or another
  // program opens the file.
  sqlite3* plain = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path_.c_str(), &plain, SQLITE_OPEN_READONLY, "unix"), SQLITE_OK);
  auto plain_count = [&] {
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(plain, "SELECT count(*) FROM t WHERE length(body) = 3000", -1, &s, nullptr);
    const std::int64_t n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_finalize(s);
    return n;
  };
  int next = 0;
  for (int round = 1; round <= 40; ++round) {
    const int rows = 1 + (round * 7) % 23;  // transactions that end mid-buffer
    insert_rows(writer, next, rows);
    next += rows;
    ASSERT_EQ(count_rows(reader), next) << "round " << round;
    auto s = reader.prepare("SELECT count(*) FROM t WHERE length(body) = 3000");
    s.step();
    ASSERT_EQ(s.int64(0), next) << "round " << round;
    ASSERT_EQ(plain_count(), next) << "round " << round << ", plain unix VFS";
  }
  sqlite3_close(plain);
  EXPECT_EQ(integrity(reader), "ok");
}

// The disk fills while a commit's frames are written: `rows` decides where
// the failing write is made (within the buffer: by the commit's sync; larger:
// by a write that finds the buffer full).
void expect_commit_fails_on_a_full_disk(Database& db, int first, int rows, int writes_allowed) {
  SwappedPwrite swapped;
  g_fail_after = writes_allowed;
  try {
    insert_rows(db, first, rows);
    ADD_FAILURE() << "a commit of " << rows << " rows succeeded though its frames were not written";
  } catch (const SqliteError& e) {
    EXPECT_EQ(e.code() & 0xff, SQLITE_FULL) << e.what();
    EXPECT_EQ(e.fault(), StoreFault::disk_full);
    EXPECT_TRUE(e.is_transient());
  }
  try {
    db.exec("ROLLBACK");  // SQLite may have rolled it back already
  } catch (const SqliteError&) {
  }
}

TEST_F(SqliteWalGather, AFailedWriteFailsItsTransactionAndNothingCommittedBefore) {
  auto db = open_table(path_);
  insert_rows(db, 0, 100);
  expect_commit_fails_on_a_full_disk(db, 100, 10, 0);  // ~41 KB: one write, at the sync
  EXPECT_EQ(count_rows(db), 100);
  expect_commit_fails_on_a_full_disk(db, 100, 500, 3);  // ~2 MB: a full buffer's write
  EXPECT_EQ(count_rows(db), 100);
  insert_rows(db, 100, 500);  // space again: the same work commits
  auto reader = Database::open(path_);
  EXPECT_EQ(count_rows(reader), 600);
  EXPECT_EQ(integrity(reader), "ok");
}

TEST_F(SqliteWalGather, EveryCommitSurvivesAKill) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(fds[0]);
    try {
      auto db = open_table(path_);
      db.exec("PRAGMA wal_autocheckpoint=200");  // checkpoints and WAL restarts too
      for (int n = 0;; ++n) {
        insert_rows(db, n * 100, 1 + (n * 37) % 97);
        if (write(fds[1], &n, sizeof n) != sizeof n) _exit(3);
      }
    } catch (...) {
      _exit(2);
    }
  }
  close(fds[1]);
  int last = -1;
  for (int n = 0; read(fds[0], &n, sizeof n) == sizeof n && n < 150;) last = n;
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  close(fds[0]);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the writer stopped on its own: " << status;
  ASSERT_GE(last, 100);
  auto db = Database::open(path_);
  EXPECT_EQ(integrity(db), "ok");
  for (int n = 0; n <= last; ++n) {
    auto s = db.prepare("SELECT count(*) FROM t WHERE id >= ? AND id < ?");
    s.bind(1, n * 100).bind(2, n * 100 + 100);
    s.step();
    ASSERT_EQ(s.int64(0), 1 + (n * 37) % 97) << "commit " << n << " of " << last;
  }
}

}  // namespace
}  // namespace kpay::storage
