// Connection and Transaction of the libpq layer (pg.hpp).
#include <cstring>

#include "postgres/pg.hpp"

namespace kpay::storage::pg {

namespace {

// Notices (e.g. "relation already exists, skipping") are not errors; libpq
// would print them on stderr, which is the daemons' JSON log.
void ignore_notice(void*, const char*) {}

bool success(ExecStatusType s) {
  return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK || s == PGRES_SINGLE_TUPLE;
}

}  // namespace

Connection Connection::open(const ConnectOptions& o) {
  std::string timeout = std::to_string(o.connect_timeout.count());
  // Defaults first: the DSN (expanded from "dbname") overrides them; the
  // password file, last, overrides a password in the DSN. Keepalives notice a
  // server gone without a FIN (failover, a cut network) within ~1 minute.
  std::vector<const char*> keys{
      "application_name",    "connect_timeout",  "keepalives", "keepalives_idle",
      "keepalives_interval", "keepalives_count", "dbname"};
  std::vector<const char*> values{
      o.application_name.c_str(), timeout.c_str(), "1", "30", "10", "3", o.dsn.c_str()};
  keys.push_back("client_encoding");
  values.push_back("UTF8");
  if (o.password) {
    keys.push_back("password");
    values.push_back(o.password->c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  PGconn* c = PQconnectdbParams(keys.data(), values.data(), 1);
  if (c == nullptr) throw PgError("postgresql: out of memory", "", true);
  if (PQstatus(c) != CONNECTION_OK) {
    PgError e = error_from(c, nullptr, "");
    PQfinish(c);
    throw e;
  }
  Connection out(c, o);
  out.set_up_session();
  return out;
}

void Connection::set_up_session() {
  PQsetNoticeProcessor(conn_, ignore_notice, nullptr);
  if (options_.idle_in_transaction_timeout.count() > 0) {
    exec("SET idle_in_transaction_session_timeout = " +
         std::to_string(options_.idle_in_transaction_timeout.count()));
  }
}

Connection::Connection(PGconn* conn, ConnectOptions options)
    : conn_(conn), options_(std::move(options)) {}

Connection::Connection(Connection&& o) noexcept
    : conn_(std::exchange(o.conn_, nullptr)),
      options_(std::move(o.options_)),
      prepared_(std::move(o.prepared_)),
      next_name_(o.next_name_),
      writes_(std::move(o.writes_)),
      late_(std::move(o.late_)),
      late_tables_(std::move(o.late_tables_)),
      round_trips_(o.round_trips_),
      transactions_begun_(o.transactions_begun_) {}

Connection& Connection::operator=(Connection&& o) noexcept {
  if (this != &o) {
    if (conn_) PQfinish(conn_);
    conn_ = std::exchange(o.conn_, nullptr);
    options_ = std::move(o.options_);
    prepared_ = std::move(o.prepared_);
    next_name_ = o.next_name_;
    writes_ = std::move(o.writes_);
    late_ = std::move(o.late_);
    late_tables_ = std::move(o.late_tables_);
    round_trips_ = o.round_trips_;
    transactions_begun_ = o.transactions_begun_;
  }
  return *this;
}

Connection::~Connection() {
  if (conn_) PQfinish(conn_);
}

Result Connection::check(PGresult* r, std::string_view sql) {
  if (r != nullptr && success(PQresultStatus(r))) return Result(r);
  PgError e = error_from(conn_, r, sql);
  if (r) PQclear(r);
  throw e;
}

Result Connection::exec(std::string_view sql) {
  flush();
  ++round_trips_;
  return check(PQexec(conn_, std::string(sql).c_str()), sql);
}

Result Connection::query(std::string_view sql, const Params& p) {
  if (!late_.empty()) release_late_for(sql);
  if (!writes_.empty()) return run_writes_then(sql, &p);
  const std::string& name = prepared(sql, p);
  ++round_trips_;
  return check(
      PQexecPrepared(conn_, name.c_str(), p.size(), p.values(), p.lengths(), p.formats(), 0), sql);
}

const std::string* Connection::find_prepared(std::string_view sql) const {
  auto it = prepared_.find(sql);
  return it == prepared_.end() ? nullptr : &it->second;
}

std::string Connection::next_statement_name() {
  return "k" + std::to_string(next_name_++);
}

void Connection::remember_prepared(std::string_view sql, std::string name) {
  prepared_.emplace(std::string(sql), std::move(name));
}

const std::string& Connection::prepared(std::string_view sql, const Params& p) {
  if (const std::string* name = find_prepared(sql)) return *name;
  std::string name = next_statement_name();
  ++round_trips_;
  check(PQprepare(conn_, name.c_str(), std::string(sql).c_str(), p.size(), p.types()), sql);
  return prepared_.emplace(std::string(sql), std::move(name)).first->second;
}

bool Connection::ok() const {
  return PQstatus(conn_) == CONNECTION_OK;
}

void Connection::reconnect() {
  prepared_.clear();
  discard_writes();
  if (conn_ == nullptr) {
    *this = open(options_);
    return;
  }
  PQreset(conn_);
  if (PQstatus(conn_) != CONNECTION_OK) throw error_from(conn_, nullptr, "");
  set_up_session();
}

std::string Connection::describe() const {
  if (!ok()) return "(not connected)";
  auto field = [](const char* v) { return std::string(v ? v : ""); };
  return "host=" + field(PQhost(conn_)) + " port=" + field(PQport(conn_)) +
         " dbname=" + field(PQdb(conn_)) + " user=" + field(PQuser(conn_));
}

int Connection::backend_pid() const {
  return PQbackendPID(conn_);
}

// ---- Transaction ----

Transaction::Transaction(Connection& c, Isolation isolation) : c_(c) {
  c_.count_transaction();
  switch (isolation) {
    case Isolation::read_committed:  // named: whatever the server's default_transaction_isolation
      c_.exec("BEGIN ISOLATION LEVEL READ COMMITTED");
      break;
    case Isolation::repeatable_read:
      c_.exec("BEGIN ISOLATION LEVEL REPEATABLE READ");
      break;
    case Isolation::serializable:
      c_.exec("BEGIN ISOLATION LEVEL SERIALIZABLE");
      break;
  }
}

Transaction::~Transaction() {
  c_.discard_writes();
  if (done_ || !c_.ok()) return;
  if (PQtransactionStatus(c_.handle()) == PQTRANS_IDLE) return;
  PQclear(PQexec(c_.handle(), "ROLLBACK"));
}

void Transaction::commit() {
  c_.flush();    // a failure: not done, rolled back by the destructor
  done_ = true;  // whatever COMMIT answers, the transaction is over
  Result r = c_.exec("COMMIT");
  // COMMIT of a transaction a failed statement aborted answers ROLLBACK, not
  // an error: a caller that caught that failure and went on must not believe
  // its writes were kept.
  if (std::strcmp(PQcmdStatus(r.get()), "ROLLBACK") == 0) {
    throw PgError("postgresql: the transaction was aborted by an earlier error and rolled back",
                  "25P02", false);
  }
}

}  // namespace kpay::storage::pg
