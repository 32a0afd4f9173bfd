// SQLite state → PostgreSQL state in one transaction (kpay/storage/store_copy.hpp).
//
// Driven by the SQLite file's own catalogue, so a table or column a later
// migration adds is copied without a change here; each value is written in
// PostgreSQL's COPY text format as the target column's type wants it (SQLite's
// 0/1 flags as booleans, blobs as hex bytea). A SQLite table or column the
// target does not have is refused by name rather than dropped.
#include <sqlite3.h>

#include <algorithm>
#include <map>
#include <set>

#include "kpay/storage/sqlite.hpp"
#include "kpay/storage/state_store.hpp"
#include "kpay/storage/store_copy.hpp"
#include "postgres/pg_schema.hpp"

namespace kpay::storage {

std::int64_t StoreCopyReport::total_rows() const {
  std::int64_t n = 0;
  for (const auto& t : tables) n += t.rows;
  return n;
}

namespace pg {
namespace {

// SQLite's own bookkeeping, not state: its migration record (PostgreSQL's is
// schema_version) and its bulk-filled history index (PostgreSQL indexes
// history directly), with the hash that index keys on.
// inbox_topics too: SQLite's inbox keeps its topic as a number from it (v14),
// PostgreSQL's by name; the inbox is read joined to it (inbox_source).
const std::set<std::string, std::less<>> kSqliteOnlyTables{"schema_migrations", "history_by_entity",
                                                           "history_indexed", "inbox_topics"};
bool sqlite_only_column(std::string_view table, std::string_view column) {
  return table == "history" && column == "entity_hash";
}
// Tables a migration seeds with a row (replaced by the source's rows) and
// tables of the running processors, not of the state (never copied, and
// empty-or-expired is required of job_leases).
const std::set<std::string, std::less<>> kSeededTables{"audit_published"};
const std::set<std::string, std::less<>> kNotStateTables{"schema_version", "job_leases"};

std::string quoted(std::string_view identifier) {
  std::string q = "\"";
  for (char c : identifier) {
    if (c == '"') q += '"';
    q += c;
  }
  return q + "\"";
}

// ---- the SQLite side ----

struct SourceTable {
  std::string name;
  std::vector<std::string> columns;
  std::string select;  // how its rows are read, when not straight from `name`
};

// SQLite's inbox names its topic by inbox_topics.id (v14): read with the
// topic's name, as PostgreSQL keeps it (its topic_id stays NULL).
void inbox_source(SourceTable& t) {
  if (std::find(t.columns.begin(), t.columns.end(), "topic_id") == t.columns.end()) return;
  t.columns = {"event_id", "topic", "partition", "offset", "digest"};
  t.select =
      "SELECT i.event_id, t.topic, i.partition, i.offset, i.digest "
      "FROM inbox i JOIN inbox_topics t ON t.id = i.topic_id";
}

std::vector<SourceTable> source_tables(Database& db) {
  std::vector<SourceTable> out;
  auto tables = db.prepare(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
      "ORDER BY name");
  while (tables.step()) {
    SourceTable t{tables.text(0), {}, {}};
    if (kSqliteOnlyTables.contains(t.name)) continue;
    auto cols = db.prepare("SELECT name FROM pragma_table_info(?) ORDER BY cid");
    cols.bind(1, t.name);
    while (cols.step()) {
      if (!sqlite_only_column(t.name, cols.text(0))) t.columns.push_back(cols.text(0));
    }
    if (t.name == "inbox") inbox_source(t);
    out.push_back(std::move(t));
  }
  return out;
}

std::set<int> sqlite_versions(Database& db) {
  auto has = db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations'");
  if (!has.step()) throw StoreCopyRefused("not a processor state database (no schema_migrations)");
  std::set<int> out;
  auto s = db.prepare("SELECT version FROM schema_migrations WHERE schema = 'state'");
  while (s.step()) out.insert(static_cast<int>(s.int64(0)));
  if (out.empty()) throw StoreCopyRefused("not a processor state database (no 'state' schema)");
  return out;
}

// The highest id SQLite's AUTOINCREMENT ever handed out per table (rows may
// have been deleted since: publish queue entries are).
std::map<std::string, std::int64_t> sqlite_sequences(Database& db) {
  std::map<std::string, std::int64_t> out;
  auto has = db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'");
  if (!has.step()) return out;
  auto s = db.prepare("SELECT name, seq FROM sqlite_sequence");
  while (s.step()) out[s.text(0)] = s.int64(1);
  return out;
}

std::string versions_text(const std::set<int>& v) {
  std::string out;
  for (int n : v) out += (out.empty() ? "" : ",") + std::to_string(n);
  return out;
}

void check_versions(const std::set<int>& source, const std::set<int>& target) {
  for (const Migration& m : storage::state_migrations()) {
    if (!source.contains(m.version)) {
      throw StoreCopyRefused(
          "the SQLite database lacks schema version " + std::to_string(m.version) +
          " of this release: start this release's klarna-processor on it once (it migrates in "
          "place), stop it, then copy");
    }
  }
  std::set<int> comparable;
  const int first_pg = pg::state_migrations().front().version;
  std::copy_if(source.begin(), source.end(), std::inserter(comparable, comparable.end()),
               [&](int v) { return v >= first_pg; });
  if (comparable != target) {
    throw StoreCopyRefused("schema versions differ: SQLite has " + versions_text(source) +
                           ", PostgreSQL has " + versions_text(target) +
                           " (copy with the klarnactl of the release that wrote the SQLite file)");
  }
}

// ---- the PostgreSQL side ----

std::set<int> target_versions(Connection& c) {
  std::set<int> out;
  Result r = c.query("SELECT version FROM schema_version WHERE schema = 'state'");
  for (int i = 0; i < r.rows(); ++i) out.insert(static_cast<int>(r.int64(i, 0)));
  return out;
}

using TargetColumns = std::map<std::string, std::map<std::string, std::string>>;  // type by name

TargetColumns target_columns(Connection& c) {
  TargetColumns out;
  Result r = c.query(
      "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c "
      "JOIN information_schema.tables t USING (table_schema, table_name) "
      "WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'");
  for (int i = 0; i < r.rows(); ++i) out[r.text(i, 0)][r.text(i, 1)] = r.text(i, 2);
  return out;
}

// Nothing else reads or writes the target until the copy commits; then it
// must hold no state and no processor may be running on it.
void lock_and_check_empty(Connection& c, const TargetColumns& tables) {
  std::string list;
  for (const auto& [table, columns] : tables) list += (list.empty() ? "" : ", ") + quoted(table);
  c.exec("LOCK TABLE " + list + " IN ACCESS EXCLUSIVE MODE");
  Result held = c.query("SELECT job, owner FROM job_leases WHERE expires_ms > kpay_now_ms()");
  if (held.rows() > 0) {
    throw StoreCopyRefused("a processor is running on the target (" + held.text(0, 1) +
                           " holds job " + held.text(0, 0) + "): stop every processor first");
  }
  std::string filled;
  for (const auto& [table, columns] : tables) {
    if (kNotStateTables.contains(table)) continue;
    const std::string where = kSeededTables.contains(table) ? " WHERE through_seq <> 0" : "";
    Result r = c.exec("SELECT EXISTS (SELECT 1 FROM " + quoted(table) + where + ")");
    if (r.boolean(0, 0)) filled += (filled.empty() ? "" : ", ") + table;
  }
  if (!filled.empty()) {
    throw StoreCopyRefused("the PostgreSQL database already holds state (" + filled +
                           "): copy only into a new, empty database");
  }
}

// The target's own triggers (the audit trail's, on outbox) would add rows
// for rows that are copied, not queued: off during the copy, in the
// transaction (ALTER TABLE is transactional; the table owner may do it).
std::vector<std::string> tables_with_triggers(Connection& c) {
  Result r = c.query(
      "SELECT DISTINCT cl.relname FROM pg_trigger t JOIN pg_class cl ON cl.oid = t.tgrelid "
      "WHERE NOT t.tgisinternal AND cl.relnamespace = current_schema()::regnamespace");
  std::vector<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(r.text(i, 0));
  return out;
}

void set_triggers(Connection& c, const std::vector<std::string>& tables, bool on) {
  for (const auto& t : tables) {
    c.exec("ALTER TABLE " + quoted(t) + (on ? " ENABLE" : " DISABLE") + " TRIGGER USER");
  }
}

// ---- one table ----

void append_escaped(std::string& out, const char* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    switch (p[i]) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out += p[i];
    }
  }
}

void append_hex(std::string& out, const unsigned char* p, std::size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += "\\\\x";  // COPY text format: the backslash of bytea's \x, escaped
  for (std::size_t i = 0; i < n; ++i) {
    out += kHex[p[i] >> 4];
    out += kHex[p[i] & 15];
  }
}

// Column `col` of the current row, as COPY's text format has it for `type`.
void append_value(std::string& out, sqlite3_stmt* s, int col, const std::string& type) {
  const int kind = sqlite3_column_type(s, col);
  if (kind == SQLITE_NULL) {
    out += "\\N";
  } else if (type == "boolean" && kind == SQLITE_INTEGER) {
    out += sqlite3_column_int64(s, col) != 0 ? 't' : 'f';
  } else if (type == "bytea") {
    const void* p = sqlite3_column_blob(s, col);
    append_hex(out, static_cast<const unsigned char*>(p),
               static_cast<std::size_t>(sqlite3_column_bytes(s, col)));
  } else if (kind == SQLITE_INTEGER) {
    out += std::to_string(sqlite3_column_int64(s, col));
  } else {
    const unsigned char* p = sqlite3_column_text(s, col);
    append_escaped(out, reinterpret_cast<const char*>(p),
                   static_cast<std::size_t>(sqlite3_column_bytes(s, col)));
  }
}

// COPY … FROM STDIN; ended (and its result read) whatever happens, so the
// connection is usable for the rollback when a row is refused.
class CopyIn {
 public:
  CopyIn(Connection& c, const std::string& sql) : c_(c), sql_(sql) {
    PGresult* r = PQexec(c_.handle(), sql.c_str());
    if (PQresultStatus(r) != PGRES_COPY_IN) {
      c_.check(r, sql);  // throws for an error; took r either way
      throw PgError("postgresql: COPY did not start", "", false);
    }
    PQclear(r);
    open_ = true;
  }
  ~CopyIn() {
    if (!open_) return;
    PQputCopyEnd(c_.handle(), "copy abandoned");
    while (PGresult* r = PQgetResult(c_.handle())) PQclear(r);
  }
  CopyIn(const CopyIn&) = delete;
  CopyIn& operator=(const CopyIn&) = delete;

  void put(std::string& data) {
    if (PQputCopyData(c_.handle(), data.data(), static_cast<int>(data.size())) != 1) {
      throw error_from(c_.handle(), nullptr, sql_);
    }
    data.clear();
  }
  // The rows the server took.
  std::int64_t finish() {
    open_ = false;
    if (PQputCopyEnd(c_.handle(), nullptr) != 1) throw error_from(c_.handle(), nullptr, sql_);
    Result r = c_.check(PQgetResult(c_.handle()), sql_);
    while (PGresult* extra = PQgetResult(c_.handle())) PQclear(extra);
    return r.affected();
  }

 private:
  Connection& c_;
  std::string sql_;
  bool open_ = false;
};

std::vector<std::string> target_types(const SourceTable& t, const TargetColumns& target) {
  auto table = target.find(t.name);
  if (table == target.end()) {
    throw StoreCopyRefused("the PostgreSQL schema has no table '" + t.name +
                           "' of the SQLite database: nothing copied");
  }
  std::vector<std::string> types;
  for (const auto& col : t.columns) {
    auto it = table->second.find(col);
    if (it == table->second.end()) {
      throw StoreCopyRefused("the PostgreSQL table '" + t.name + "' has no column '" + col +
                             "' of the SQLite database: nothing copied");
    }
    types.push_back(it->second);
  }
  return types;
}

std::int64_t copy_table(Database& db, Connection& c, const SourceTable& t,
                        const TargetColumns& target) {
  const std::vector<std::string> types = target_types(t, target);
  std::string cols;
  for (const auto& col : t.columns) cols += (cols.empty() ? "" : ", ") + quoted(col);
  if (kSeededTables.contains(t.name)) c.exec("DELETE FROM " + quoted(t.name));
  // Statement keeps its sqlite3_stmt private (and hides each value's storage
  // class): the rows are read with SQLite's C API.
  const std::string select =
      t.select.empty() ? "SELECT " + cols + " FROM " + quoted(t.name) : t.select;
  sqlite3_stmt* s = nullptr;
  if (int rc = sqlite3_prepare_v2(db.handle(), select.c_str(), -1, &s, nullptr); rc != SQLITE_OK) {
    throw SqliteError(rc, "reading " + t.name + ": " + sqlite3_errmsg(db.handle()));
  }
  struct Finalize {
    sqlite3_stmt* s;
    ~Finalize() { sqlite3_finalize(s); }
  } finalize{s};
  CopyIn copy(c, "COPY " + quoted(t.name) + " (" + cols + ") FROM STDIN");
  std::string buffer;
  std::int64_t read = 0;
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    for (int i = 0; i < static_cast<int>(types.size()); ++i) {
      if (i > 0) buffer += '\t';
      append_value(buffer, s, i, types[static_cast<std::size_t>(i)]);
    }
    buffer += '\n';
    ++read;
    if (buffer.size() >= (1u << 20)) copy.put(buffer);
  }
  if (rc != SQLITE_DONE)
    throw SqliteError(rc, "reading " + t.name + ": " + sqlite3_errmsg(db.handle()));
  if (!buffer.empty()) copy.put(buffer);
  const std::int64_t written = copy.finish();
  if (written != read) {
    throw StoreCopyRefused("table " + t.name + ": " + std::to_string(read) + " rows read but " +
                           std::to_string(written) + " written");
  }
  return written;
}

// Identity columns continue after the highest id in the table or ever
// handed out by SQLite's AUTOINCREMENT, whichever is higher.
void continue_sequences(Connection& c, const std::map<std::string, std::int64_t>& sqlite_seq) {
  Result r = c.query(
      "SELECT table_name, column_name FROM information_schema.columns "
      "WHERE table_schema = current_schema() AND is_identity = 'YES'");
  for (int i = 0; i < r.rows(); ++i) {
    const std::string table = r.text(i, 0), column = r.text(i, 1);
    Result max = c.exec("SELECT COALESCE(MAX(" + quoted(column) + "), 0) FROM " + quoted(table));
    std::int64_t high = max.int64(0, 0);
    if (auto it = sqlite_seq.find(table); it != sqlite_seq.end()) high = std::max(high, it->second);
    if (high <= 0) continue;
    c.query("SELECT setval(pg_get_serial_sequence($1, $2), $3)",
            params(quoted(table), column, high));
  }
}

// BEGIN … ROLLBACK on the SQLite file: one snapshot for every table.
class ReadSnapshot {
 public:
  explicit ReadSnapshot(Database& db) : db_(db) {
    db_.exec("BEGIN");
    db_.prepare("SELECT COUNT(*) FROM sqlite_master").step();  // the snapshot starts here
  }
  ~ReadSnapshot() {
    try {
      db_.exec("ROLLBACK");
    } catch (const StoreError&) {
    }
  }
  ReadSnapshot(const ReadSnapshot&) = delete;
  ReadSnapshot& operator=(const ReadSnapshot&) = delete;

 private:
  Database& db_;
};

Connection connect_target(const PostgresSettings& settings) {
  ConnectOptions options;
  options.dsn = settings.dsn;
  options.application_name = "klarnactl-store-copy";
  if (!settings.password_file.empty()) {
    try {
      options.password = read_password_file(settings.password_file);
    } catch (const std::runtime_error& e) {
      throw StoreError(e.what(), false);
    }
  }
  return Connection::open(options);
}

}  // namespace
}  // namespace pg

StoreCopyReport copy_sqlite_to_postgres(const std::string& sqlite_path,
                                        const PostgresSettings& target) {
  Database db = Database::open(sqlite_path, {.read_only = true, .create = false});
  pg::ReadSnapshot snapshot(db);
  const std::set<int> source_versions = pg::sqlite_versions(db);
  pg::Connection c = pg::connect_target(target);
  pg::migrate(c);  // an empty database gets this release's schema; a newer one is refused
  pg::check_versions(source_versions, pg::target_versions(c));

  StoreCopyReport report;
  report.schema_version = *source_versions.rbegin();
  report.target = c.describe();
  pg::Transaction tx(c);
  const pg::TargetColumns columns = pg::target_columns(c);
  pg::lock_and_check_empty(c, columns);
  const auto triggered = pg::tables_with_triggers(c);
  pg::set_triggers(c, triggered, false);
  for (const auto& table : pg::source_tables(db)) {
    report.tables.push_back({table.name, pg::copy_table(db, c, table, columns)});
  }
  pg::continue_sequences(c, pg::sqlite_sequences(db));
  pg::set_triggers(c, triggered, true);
  tx.commit();
  return report;
}

}  // namespace kpay::storage
