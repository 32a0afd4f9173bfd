#include "sqlite_census.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kpay::storage::census {

namespace {

using Clock = std::chrono::steady_clock;

struct Totals {
  std::uint64_t count = 0, ns = 0, pages = 0, misses = 0, written = 0, rows = 0, steps = 0,
                fullscan = 0;
};

struct Start {
  Clock::time_point at;
  std::int64_t hits = 0, misses = 0, written = 0, changes = 0;
};

std::int64_t db_counter(sqlite3* db, int op) {
  int cur = 0, high = 0;
  sqlite3_db_status(db, op, &cur, &high, 0);
  return cur;
}

// One traced connection: statements in flight (by handle) and the totals by
// SQL text.
struct Connection {
  sqlite3* db = nullptr;
  std::unordered_map<sqlite3_stmt*, Start> running;
  std::unordered_map<std::string, Totals> by_sql;

  void started(sqlite3_stmt* stmt) {
    // Also called for each trigger program of a running statement: the
    // statement's own start counts.
    auto [it, fresh] = running.try_emplace(stmt);
    if (!fresh) return;
    it->second = {Clock::now(), db_counter(db, SQLITE_DBSTATUS_CACHE_HIT),
                  db_counter(db, SQLITE_DBSTATUS_CACHE_MISS),
                  db_counter(db, SQLITE_DBSTATUS_CACHE_WRITE), sqlite3_total_changes64(db)};
  }
  void finished(sqlite3_stmt* stmt) {
    const auto now = Clock::now();
    auto it = running.find(stmt);
    if (it == running.end()) return;
    const Start s = it->second;
    running.erase(it);
    const char* sql = sqlite3_sql(stmt);
    auto& t = by_sql[sql != nullptr ? sql : "?"];
    ++t.count;
    t.ns += static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(now - s.at).count());
    const auto hits = db_counter(db, SQLITE_DBSTATUS_CACHE_HIT) - s.hits;
    const auto misses = db_counter(db, SQLITE_DBSTATUS_CACHE_MISS) - s.misses;
    t.pages += static_cast<std::uint64_t>(hits + misses);
    t.misses += static_cast<std::uint64_t>(misses);
    t.written +=
        static_cast<std::uint64_t>(db_counter(db, SQLITE_DBSTATUS_CACHE_WRITE) - s.written);
    t.rows += static_cast<std::uint64_t>(sqlite3_total_changes64(db) - s.changes);
    t.steps += static_cast<std::uint64_t>(sqlite3_stmt_status(stmt, SQLITE_STMTSTATUS_VM_STEP, 1));
    t.fullscan +=
        static_cast<std::uint64_t>(sqlite3_stmt_status(stmt, SQLITE_STMTSTATUS_FULLSCAN_STEP, 1));
  }
};

int on_trace(unsigned type, void* context, void* p, void*) {
  auto* c = static_cast<Connection*>(context);
  auto* stmt = static_cast<sqlite3_stmt*>(p);
  if (type == SQLITE_TRACE_STMT) c->started(stmt);
  if (type == SQLITE_TRACE_PROFILE) c->finished(stmt);
  return 0;
}

const char* target() {
  static const char* path = std::getenv("KPAY_SQLITE_CENSUS");
  return path != nullptr && *path != '\0' ? path : nullptr;
}

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::unordered_map<sqlite3*, std::unique_ptr<Connection>>& registry() {
  static std::unordered_map<sqlite3*, std::unique_ptr<Connection>> r;
  return r;
}

// B-tree writes and seeks in a statement's program (EXPLAIN): an upper bound
// per execution of one row (an upsert holds both its paths).
struct Program {
  int writes = 0, seeks = 0;
};
Program program_of(sqlite3* db, const std::string& sql) {
  Program p;
  sqlite3_stmt* explain = nullptr;
  const std::string text = "EXPLAIN " + sql;
  if (sqlite3_prepare_v2(db, text.c_str(), -1, &explain, nullptr) != SQLITE_OK) return p;
  static constexpr std::string_view kWrites[] = {"Insert", "IdxInsert", "Delete", "IdxDelete"};
  static constexpr std::string_view kSeeks[] = {"SeekGE",     "SeekGT",    "SeekLE",   "SeekLT",
                                                "SeekRowid",  "NotExists", "NotFound", "Found",
                                                "NoConflict", "IdxRowid"};
  while (sqlite3_step(explain) == SQLITE_ROW) {
    const auto* op = reinterpret_cast<const char*>(sqlite3_column_text(explain, 1));
    const std::string_view o = op != nullptr ? op : "";
    if (std::find(std::begin(kWrites), std::end(kWrites), o) != std::end(kWrites)) ++p.writes;
    if (std::find(std::begin(kSeeks), std::end(kSeeks), o) != std::end(kSeeks)) ++p.seeks;
  }
  sqlite3_finalize(explain);
  return p;
}

std::string one_line(std::string sql) {
  std::replace(sql.begin(), sql.end(), '\n', ' ');
  std::replace(sql.begin(), sql.end(), '\t', ' ');
  if (sql.size() > 200) sql = sql.substr(0, 200) + "…";
  return sql;
}

void write_table(const Connection& c, std::FILE* out) {
  std::vector<std::pair<std::string, Totals>> rows(c.by_sql.begin(), c.by_sql.end());
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.second.ns > b.second.ns; });
  std::uint64_t ns = 0, count = 0;
  for (const auto& r : rows) {
    ns += r.second.ns;
    count += r.second.count;
  }
  const char* file = sqlite3_db_filename(c.db, "main");
  std::fprintf(out, "# connection %p %s: %llu statements, %.1f ms\n", static_cast<void*>(c.db),
               file != nullptr ? file : "", static_cast<unsigned long long>(count), ns / 1e6);
  std::fprintf(
      out,
      "count\ttotal_ms\tus_each\tpages_each\tmisses_each\twritten_each\trows_each\tsteps_each\t"
      "fullscan\tprog_writes\tprog_seeks\tsql\n");
  for (const auto& [sql, t] : rows) {
    const double n = static_cast<double>(t.count);
    const Program p = program_of(c.db, sql);
    std::fprintf(out, "%llu\t%.1f\t%.2f\t%.2f\t%.3f\t%.1f\t%.2f\t%.1f\t%llu\t%d\t%d\t%s\n",
                 static_cast<unsigned long long>(t.count), t.ns / 1e6, t.ns / 1e3 / n, t.pages / n,
                 t.misses / n, t.written / n, t.rows / n, t.steps / n,
                 static_cast<unsigned long long>(t.fullscan), p.writes, p.seeks,
                 one_line(sql).c_str());
  }
}

}  // namespace

void attach(sqlite3* db) {
  if (target() == nullptr || db == nullptr) return;
  auto c = std::make_unique<Connection>();
  c->db = db;
  sqlite3_trace_v2(db, SQLITE_TRACE_STMT | SQLITE_TRACE_PROFILE, on_trace, c.get());
  std::lock_guard lock(registry_mutex());
  registry()[db] = std::move(c);
}

void report_and_detach(sqlite3* db) {
  if (target() == nullptr || db == nullptr) return;
  std::unique_ptr<Connection> c;
  {
    std::lock_guard lock(registry_mutex());
    auto it = registry().find(db);
    if (it == registry().end()) return;
    c = std::move(it->second);
    registry().erase(it);
  }
  sqlite3_trace_v2(db, 0, nullptr, nullptr);
  if (c->by_sql.empty()) return;
  std::lock_guard lock(registry_mutex());
  if (std::FILE* out = std::fopen(target(), "a")) {
    write_table(*c, out);
    std::fclose(out);
  }
}

}  // namespace kpay::storage::census
