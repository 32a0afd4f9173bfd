// RAII over libpq for the PostgreSQL state store (internal to storage/).
//
// Connection owns a PGconn; Result owns a PGresult; Params holds a statement's
// parameters; Transaction is BEGIN … COMMIT, rolled back unless committed;
// Pipeline sends many statements before reading any answer (libpq pipeline
// mode: one round trip for a batch's writes instead of one per statement).
//
// Conventions:
// - Statements go through Connection::query(), which prepares each distinct
//   SQL text once per connection (named "k1", "k2", …) and reuses it; a
//   reconnect forgets them and they are prepared again on next use.
// - Writes whose answer the caller does not read go through
//   Connection::write(): inside a transaction they are queued and sent in one
//   pipeline with the next statement that needs an answer (or before COMMIT),
//   so a batch pays one round trip per read, not one per statement.
//   write_late() keeps rows of tables the batch does not read back (history,
//   publish queue, offsets) until COMMIT or a statement naming their table;
//   then runs of one INSERT … VALUES (…) go as multi-row statements
//   (pg_writes.cpp).
// - Parameters are sent as text with their type (int8, text, bool), bytes as
//   binary bytea; results are read as text (integers parsed, bytea decoded).
// - Every failure throws PgError with the server's SQLSTATE and whether it is
//   transient (connection lost, serialization failure, deadlock, server
//   shutting down or starting: retrying the whole transaction, after a
//   reconnect when the connection is gone, can succeed). Its message is the
//   server's primary message and the SQLSTATE, never the DETAIL (which may
//   quote row values) and never the password.
#pragma once

#include <libpq-fe.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kpay/storage/store_error.hpp"

namespace kpay::storage::pg {

// A StoreError (store_error.hpp) with the server's SQLSTATE.
class PgError : public StoreError {
 public:
  PgError(const std::string& what, std::string sqlstate, bool transient)
      : StoreError(what, transient, fault_of(sqlstate, transient)),
        sqlstate_(std::move(sqlstate)) {}
  // SQLSTATE → the operators' kind of fault: 53100 disk full; 40001/40P01
  // conflict (a concurrent transaction); 55P03 busy; 25006 read-only; any
  // other transient one (connection lost, shutdown) unreachable.
  static StoreFault fault_of(const std::string& sqlstate, bool transient) noexcept {
    if (sqlstate == "53100") return StoreFault::disk_full;
    if (sqlstate == "40001" || sqlstate == "40P01") return StoreFault::conflict;
    if (sqlstate == "55P03") return StoreFault::busy;
    if (sqlstate == "25006") return StoreFault::read_only;
    return transient ? StoreFault::unreachable : StoreFault::other;
  }
  // Five characters, e.g. "23505"; empty when the connection failed before
  // the server could answer (then transient).
  const std::string& sqlstate() const noexcept { return sqlstate_; }
  bool transient() const noexcept { return is_transient(); }
  bool unique_violation() const noexcept { return sqlstate_ == "23505"; }

 private:
  std::string sqlstate_;
};

// Class 08 (connection exception), 40001 (serialization failure), 40P01
// (deadlock detected), 57P01/57P02/57P03 (admin shutdown, crash shutdown,
// cannot connect now: a restart or failover), 25P03 (the session ended by
// idle_in_transaction_session_timeout), 53300 (too many connections),
// 55P03 (lock not available), 25006 (read-only transaction: a standby that was
// just promoted is still read-only for a moment, or a primary demoted).
bool is_transient_sqlstate(std::string_view sqlstate);

// The error of a failed result (or, with none, of the connection): SQLSTATE,
// primary message, transient when the connection is gone or by its SQLSTATE.
// `sql` (shortened) says which statement failed.
PgError error_from(PGconn* conn, const PGresult* r, std::string_view sql);

class Result {
 public:
  Result() = default;
  explicit Result(PGresult* r) noexcept : r_(r) {}
  Result(Result&& o) noexcept : r_(std::exchange(o.r_, nullptr)) {}
  Result& operator=(Result&& o) noexcept;
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;
  ~Result();

  int rows() const;
  // Rows an INSERT / UPDATE / DELETE touched (0 for other commands).
  std::int64_t affected() const;
  bool is_null(int row, int col) const;
  std::string_view view(int row, int col) const;  // valid while this Result lives
  std::string text(int row, int col) const { return std::string(view(row, col)); }
  std::int64_t int64(int row, int col) const;
  bool boolean(int row, int col) const;
  std::string bytea(int row, int col) const;  // decoded bytes
  std::optional<std::string> optional_text(int row, int col) const;
  std::optional<std::int64_t> optional_int64(int row, int col) const;
  std::optional<std::string> optional_bytea(int row, int col) const;
  PGresult* get() const noexcept { return r_; }

 private:
  PGresult* r_ = nullptr;
};

class Params {
 public:
  Params() = default;
  Params& add(std::int64_t v);
  Params& add(int v) { return add(static_cast<std::int64_t>(v)); }
  Params& add(bool v);
  Params& add(std::string_view text);
  Params& add(const char* text) { return add(std::string_view(text)); }
  Params& add(const std::string& text) { return add(std::string_view(text)); }
  Params& add(std::nullopt_t);
  template <class T>
  Params& add(const std::optional<T>& v) {
    return v ? add(*v) : add(std::nullopt);
  }
  Params& add_bytes(std::string_view bytes);  // bytea, sent binary
  Params& add_optional_bytes(const std::optional<std::string>& bytes);
  Params& append(const Params& other);  // other's values after these

  int size() const { return static_cast<int>(values_.size()); }
  // libpq's arrays, valid until the next add().
  const char* const* values() const;
  const int* lengths() const { return lengths_.data(); }
  const int* formats() const { return formats_.data(); }
  const Oid* types() const { return types_.data(); }

 private:
  Params& push(std::string value, bool null, int format, Oid type);
  std::vector<std::string> values_;
  std::vector<bool> null_;
  std::vector<int> lengths_;
  std::vector<int> formats_;
  std::vector<Oid> types_;
  mutable std::vector<const char*> pointers_;
};

// NULL for an empty text (optional trace fields).
inline std::optional<std::string> null_if_empty(const std::string& text) {
  if (text.empty()) return std::nullopt;
  return text;
}

// params(a, b, c): one Params from its values in order.
template <class... A>
Params params(const A&... a) {
  Params p;
  (p.add(a), ...);
  return p;
}

struct ConnectOptions {
  // A libpq connection string or URI ("host=/run/postgresql dbname=kpay",
  // "postgresql://kpay@db1,db2/kpay?target_session_attrs=read-write").
  // A password in it is used like one given below and never logged.
  std::string dsn;
  // From postgresql.password_file; overrides one in the DSN.
  std::optional<std::string> password;
  std::string application_name = "kpay";
  std::chrono::seconds connect_timeout{5};
  // Set on the session at each connect (idle_in_transaction_session_timeout);
  // 0: left to the server. Also how long a session holding serialisation
  // keys may sit idle outside a transaction (pg_key_locks.hpp).
  std::chrono::milliseconds idle_in_transaction_timeout{0};
};

class Connection {
 public:
  // Throws PgError (transient: the server may come back) when it cannot connect.
  static Connection open(const ConnectOptions& options);
  Connection(Connection&& o) noexcept;
  Connection& operator=(Connection&& o) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  // Simple protocol: one or more statements without parameters (DDL, SET);
  // the last statement's result.
  Result exec(std::string_view sql);
  // One statement, prepared on first use on this connection. Writes queued
  // by write() go first, in one pipeline with it (one round trip); a failure
  // of one of them is thrown here.
  Result query(std::string_view sql, const Params& p = {});
  // A write whose result the caller does not read (no rows, no count).
  // Inside a transaction it is queued until the next query(), exec() or
  // flush(): it runs in order before them, and its failure is theirs (the
  // transaction is aborted then, as by any failed statement, and fails to
  // commit). Outside a transaction it runs now.
  void write(std::string_view sql, Params p);
  // Like write(), for a table (named in `sql`) whose rows the transaction
  // does not read back before it ends: queued until COMMIT (flush()) or the
  // first statement whose SQL names `table` (then sent before it, in order).
  // Consecutive rows of one INSERT … VALUES (…) go as one multi-row INSERT
  // (up to kRowsPerInsert rows), of one DELETE … WHERE c = $1 as one
  // DELETE … WHERE c IN (…); rows of several tables are sent table by
  // table. Only for tables no trigger or other late table's statement reads.
  void write_late(std::string_view table, std::string_view sql, Params p);
  static constexpr std::size_t kRowsPerInsert = 64;
  // Sends the queued writes (late ones too) now, in one round trip, throwing
  // the first failure.
  void flush();
  // Forgets the queued writes: their transaction rolled back or was lost.
  void discard_writes() noexcept {
    writes_.clear();
    late_.clear();
    late_tables_.clear();
  }
  std::size_t queued_writes() const noexcept { return writes_.size() + late_.size(); }
  // A transaction is open (BEGIN sent, not ended) and has not failed.
  bool in_transaction() const;
  // Round trips to the server so far (a statement, a pipeline's sync): for
  // tests and benchmarks of the batching.
  std::int64_t round_trips() const noexcept { return round_trips_; }
  void count_round_trip() noexcept { ++round_trips_; }
  // Counts the transactions begun on this connection (Transaction): a value
  // kept for "this transaction" is stale once it changes.
  std::int64_t transactions_begun() const noexcept { return transactions_begun_; }
  void count_transaction() noexcept { ++transactions_begun_; }

  // False once the connection is lost (a query failed with it).
  bool ok() const;
  // Connects again with the same options; prepared statements are forgotten.
  void reconnect();
  // host, port, database, user: for logs (never the password).
  std::string describe() const;
  const ConnectOptions& options() const noexcept { return options_; }
  // The server's process id of this session (pg_backend_pid()).
  int backend_pid() const;
  PGconn* handle() const noexcept { return conn_; }

  // The name of the statement prepared for `sql` (preparing it when new).
  // Not in pipeline mode (Pipeline prepares inside the pipeline).
  const std::string& prepared(std::string_view sql, const Params& p);
  const std::string* find_prepared(std::string_view sql) const;
  std::string next_statement_name();
  void remember_prepared(std::string_view sql, std::string name);
  // Throws PgError for a result that is not a success (clears it);
  // `sql`: the statement, quoted (shortened) in the message.
  Result check(PGresult* r, std::string_view sql);

 private:
  struct SqlHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct Write {
    std::string sql;
    Params params;
    std::string table;  // write_late(): its table; write(): empty
  };
  Connection(PGconn* conn, ConnectOptions options);
  // After each connect: the notice processor, the session's settings.
  void set_up_session();
  // The late writes of a table `sql` names join the queue (all of them, in
  // order: one table's rows may be written by another's statements).
  void release_late_for(std::string_view sql);
  void release_late();
  Result run_writes_then(std::string_view sql, const Params* p);
  PGconn* conn_ = nullptr;
  ConnectOptions options_;
  std::unordered_map<std::string, std::string, SqlHash, std::equal_to<>> prepared_;
  int next_name_ = 1;
  std::vector<Write> writes_;
  std::vector<Write> late_;
  std::vector<std::string> late_tables_;  // the distinct tables of late_
  std::int64_t round_trips_ = 0;
  std::int64_t transactions_begun_ = 0;
};

// `table` appears in `sql` as a word (pg_writes.cpp): the statement may
// read or write it.
bool names_table(std::string_view sql, std::string_view table);

enum class Isolation { read_committed, repeatable_read, serializable };

// BEGIN … COMMIT; ROLLBACK in the destructor unless committed (a lost
// connection has rolled back on the server already). commit() sends the
// queued writes first; when one fails, the transaction is rolled back and
// its error thrown. Writes still queued when it is rolled back are dropped.
class Transaction {
 public:
  explicit Transaction(Connection& c, Isolation isolation = Isolation::read_committed);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit();

 private:
  Connection& c_;
  bool done_ = false;
};

// Pipeline mode: send() queues statements (prepared like query()), results()
// sends a sync point, returns each statement's result in order and leaves
// pipeline mode (a Pipeline is used once; plain queries wait until then). The first
// failed statement throws its PgError from results(); the statements after it
// were not run. Inside a Transaction the failure aborts the transaction, as
// with query(). At most kMaxQueued statements wait for their results: more
// are synced in parts, so neither side's buffers fill up.
class Pipeline {
 public:
  explicit Pipeline(Connection& c);
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  void send(std::string_view sql, const Params& p = {});
  std::vector<Result> results();
  static constexpr std::size_t kMaxQueued = 512;

 private:
  struct Pending {
    bool prepare = false;  // the Parse of a statement new on this connection
    std::string sql;
    std::string name;
  };
  void sync_part();
  void read_one(const Pending& p);
  Connection& c_;
  bool active_ = true;
  std::vector<Pending> pending_;
  std::unordered_map<std::string, std::string> sent_prepares_;  // sql → name, this pipeline
  std::vector<Result> done_;
  std::optional<PgError> error_;
};

}  // namespace kpay::storage::pg
