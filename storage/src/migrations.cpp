#include "kpay/storage/migrations.hpp"

#include <chrono>

namespace kpay::storage {

namespace {
void ensure_table(Database& db) {
  db.exec(
      "CREATE TABLE IF NOT EXISTS schema_migrations ("
      " schema TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL,"
      " applied_at INTEGER NOT NULL, PRIMARY KEY (schema, version))");
}
}  // namespace

int schema_version(Database& db, std::string_view schema) {
  ensure_table(db);
  auto s = db.prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE schema = ?");
  s.bind(1, schema);
  s.step();
  return static_cast<int>(s.int64(0));
}

int migrate(Database& db, std::string_view schema, std::span<const Migration> migrations) {
  Transaction tx(db);
  int current = schema_version(db, schema);
  int newest = migrations.empty() ? 0 : migrations.back().version;
  if (current > newest) {
    throw SchemaTooNewError("database schema '" + std::string(schema) + "' is at version " +
                            std::to_string(current) + ", newer than this binary supports (" +
                            std::to_string(newest) + "); upgrade the binary");
  }
  auto record = db.prepare(
      "INSERT INTO schema_migrations (schema, version, name, applied_at) VALUES (?, ?, ?, ?)");
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  // Every migration not recorded yet, not only those above the newest
  // recorded: numbers were handed out ahead of the merges (10 and 12 may be in
  // a database before 11 is), and each migration touches its own tables.
  auto applied = db.prepare("SELECT 1 FROM schema_migrations WHERE schema = ? AND version = ?");
  for (const auto& m : migrations) {
    applied.reset();
    applied.bind(1, schema).bind(2, m.version);
    if (applied.step()) continue;
    db.exec(m.sql);
    record.bind(1, schema).bind(2, m.version).bind(3, m.name).bind(4, std::int64_t{now});
    record.run();
  }
  tx.commit();
  return newest;
}

}  // namespace kpay::storage
