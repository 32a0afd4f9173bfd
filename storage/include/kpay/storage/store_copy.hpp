// Moving a processor's SQLite state to PostgreSQL (`klarnactl store copy`,
// docs/OPERATIONS.md "Moving a SQLite state to PostgreSQL").
//
// Every table of the SQLite state schema (payments and the other entities,
// inbox and history, outbox with its idempotency keys and statuses, publish
// queue, consumer offsets, offset gaps, commands, senders, the audit trail,
// dead letters, call attempts, settlement tables, dispute deadlines) is
// copied row for row into the PostgreSQL state database, in ONE PostgreSQL
// transaction: either all of it is there afterwards or none. SQLite-only
// tables (its bulk-filled history index, its migration record) are not
// copied. Identity sequences continue after the highest id SQLite ever handed
// out, so new outbox rows, history rows and queue entries never reuse an id.
//
// Refused (StoreCopyRefused, nothing written): a target holding any state
// (a processor already ran on it), a target where a processor holds a job
// lease now, a SQLite database that is not at this release's schema version
// (start this release's processor once on it: it migrates in place) or whose
// applied migrations differ from the target's. The target's schema is created
// (migrated) first when it is empty. The SQLite file is only read, inside one
// read transaction (a consistent snapshot even if a processor still wrote to
// it, but the processor must be stopped first: what it writes after the
// snapshot is not copied).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kpay/storage/postgres.hpp"
#include "kpay/storage/store_error.hpp"

namespace kpay::storage {

struct TableCopied {
  std::string table;
  std::int64_t rows = 0;
};

struct StoreCopyReport {
  int schema_version = 0;
  std::string target;               // host, port, database, user (never the password)
  std::vector<TableCopied> tables;  // in copy order (by name)
  std::int64_t total_rows() const;
};

// The copy would lose or mix state: nothing was written.
class StoreCopyRefused : public StoreError {
 public:
  explicit StoreCopyRefused(const std::string& what) : StoreError(what, false) {}
};

StoreCopyReport copy_sqlite_to_postgres(const std::string& sqlite_path,
                                        const PostgresSettings& target);

}  // namespace kpay::storage
