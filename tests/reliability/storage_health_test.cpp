// How the processor names a failing state store (processor/src/intake/
// storage_health.cpp): a full disk told apart from other faults, the gauge
// and the /readyz reason following the faults and the recovery.
#include "intake/storage_health.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include "kpay/storage/sqlite.hpp"

#include <string>

using kpay::processor::StorageHealth;

TEST(StorageHealth, ClassifiesAFullDiskApartFromOtherFaults) {
  constexpr std::int64_t kPlenty = std::int64_t{1} << 30;
  EXPECT_STREQ(
      StorageHealth::classify(kpay::storage::SqliteError::sqlite_fault(SQLITE_FULL), kPlenty),
      "disk_full");
  // An I/O error is a full disk only when the filesystem has no room left.
  EXPECT_STREQ(
      StorageHealth::classify(kpay::storage::SqliteError::sqlite_fault(SQLITE_IOERR_WRITE), 0),
      "disk_full");
  EXPECT_STREQ(
      StorageHealth::classify(kpay::storage::SqliteError::sqlite_fault(SQLITE_IOERR_SHMSIZE), 4096),
      "disk_full");
  EXPECT_STREQ(StorageHealth::classify(kpay::storage::SqliteError::sqlite_fault(SQLITE_IOERR_WRITE),
                                       kPlenty),
               "io_error");
  EXPECT_STREQ(
      StorageHealth::classify(kpay::storage::SqliteError::sqlite_fault(SQLITE_IOERR_FSYNC), -1),
      "io_error");  // unknown room
  EXPECT_STREQ(
      StorageHealth::classify(kpay::storage::SqliteError::sqlite_fault(SQLITE_CANTOPEN), 0),
      "disk_full");
  EXPECT_STREQ(
      StorageHealth::classify(kpay::storage::SqliteError::sqlite_fault(SQLITE_CANTOPEN), kPlenty),
      "cannot_open");
  EXPECT_STREQ(
      StorageHealth::classify(kpay::storage::SqliteError::sqlite_fault(SQLITE_BUSY_SNAPSHOT), 0),
      "busy");
  EXPECT_STREQ(
      StorageHealth::classify(kpay::storage::SqliteError::sqlite_fault(SQLITE_LOCKED), kPlenty),
      "busy");
  EXPECT_STREQ(StorageHealth::classify(
                   kpay::storage::SqliteError::sqlite_fault(SQLITE_READONLY_DBMOVED), kPlenty),
               "read_only");
  EXPECT_STREQ(
      StorageHealth::classify(kpay::storage::SqliteError::sqlite_fault(SQLITE_NOMEM), kPlenty),
      "other");
}

TEST(StorageHealth, ReasonAndGaugeFollowTheFaultsAndTheRecovery) {
  kpay::core::Registry registry;
  StorageHealth health("/tmp/state.db", registry);
  const std::string full = "kpay_processor_state_store_failing{reason=\"disk_full\"} ";
  const std::string busy = "kpay_processor_state_store_failing{reason=\"busy\"} ";
  EXPECT_TRUE(health.ok());
  EXPECT_EQ(health.reason(), "");
  EXPECT_NE(registry.render().find(full + "0"), std::string::npos) << registry.render();

  EXPECT_TRUE(
      health.failed(kpay::storage::SqliteError(SQLITE_FULL, "step: database or disk is full")));
  EXPECT_FALSE(health.ok());
  EXPECT_NE(health.reason().find("state store failing: disk full: the state database cannot grow "
                                 "(step: database or disk is full;"),
            std::string::npos)
      << health.reason();
  EXPECT_NE(registry.render().find(full + "1"), std::string::npos);

  EXPECT_FALSE(health.failed(kpay::storage::SqliteError(SQLITE_BUSY, "database is locked")));
  EXPECT_NE(health.reason().find("locked by another writer"), std::string::npos);
  EXPECT_NE(registry.render().find(full + "0"), std::string::npos);
  EXPECT_NE(registry.render().find(busy + "1"), std::string::npos);

  health.succeeded();
  EXPECT_TRUE(health.ok());
  EXPECT_EQ(health.reason(), "");
  EXPECT_NE(registry.render().find(busy + "0"), std::string::npos);
  EXPECT_GT(StorageHealth::free_bytes("/tmp/state.db"), 0);
}
