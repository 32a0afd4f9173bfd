// SQLite's StoreError: which failures are transient (the consumer retries
// the batch and reports not-ready) and which are not (the same work fails
// the same way), decided in storage/ so no caller sorts SQLite codes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "kpay/storage/open_store.hpp"
#include "kpay/storage/sqlite.hpp"
#include "kpay/storage/state_store.hpp"

namespace kpay::storage {
namespace {

TEST(SqliteErrors, EnvironmentFaultsAreTransientTheWorkItselfIsNot) {
  for (int code :
       {SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_IOERR_WRITE, SQLITE_FULL, SQLITE_CANTOPEN,
        SQLITE_READONLY, SQLITE_NOMEM, SQLITE_PROTOCOL, SQLITE_BUSY_SNAPSHOT}) {
    EXPECT_TRUE(SqliteError(code, "x").is_transient()) << code;
  }
  for (int code : {SQLITE_ERROR, SQLITE_CONSTRAINT, SQLITE_CONSTRAINT_UNIQUE, SQLITE_MISMATCH,
                   SQLITE_CORRUPT, SQLITE_TOOBIG, SQLITE_RANGE}) {
    EXPECT_FALSE(SqliteError(code, "x").is_transient()) << code;
  }
}

class SqliteStoreErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (std::filesystem::temp_directory_path() /
             ("kpay-errors-" + std::to_string(getpid()) + ".db"))
                .string();
    clean_up();
  }
  void TearDown() override { clean_up(); }
  void clean_up() {
    for (const char* s : {"", "-wal", "-shm"}) std::filesystem::remove(path_ + s);
  }
  std::string path_;
};

TEST_F(SqliteStoreErrors, AWriterHeldPastTheBusyTimeoutIsATransientError) {
  auto store = open_store(path_);
  auto other = Database::open(path_);
  other.exec("BEGIN IMMEDIATE");
  const auto start = std::chrono::steady_clock::now();
  try {
    WriteTransaction tx(*store);
    ADD_FAILURE() << "the write lock was taken twice";
  } catch (const StoreError& e) {
    EXPECT_TRUE(e.is_transient()) << e.what();
  }
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::seconds(4));  // waited
  other.exec("ROLLBACK");
  WriteTransaction tx(*store);  // free again
  tx.commit();
}

TEST_F(SqliteStoreErrors, AConstraintTheDatabaseEnforcesIsNotTransient) {
  StateStore store(path_);
  AuditEvent e;
  e.kind = "command";
  e.status = "accepted";
  store.append_audit(e);
  try {
    store.database().exec("DELETE FROM audit_events");  // append-only
    ADD_FAILURE() << "an audit event was deleted";
  } catch (const StoreError& err) {
    EXPECT_FALSE(err.is_transient()) << err.what();
  }
}

}  // namespace
}  // namespace kpay::storage
