// RAII over sqlite3 and sqlite3_stmt, with the settings every store here uses.
//
// Guarantees: Database::open() puts the file in WAL mode with synchronous=FULL
// (a committed transaction survives power loss), foreign keys on and a busy
// timeout, so a second process (klarnactl next to a daemon) waits instead of
// failing. Errors throw SqliteError (a StoreError): storage failures are
// environment errors that the caller turns into "not ready" / a retried batch,
// never a crash.
#pragma once

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "kpay/storage/store_error.hpp"

namespace kpay::storage {

// Transient (StoreError::is_transient) for busy, locked, I/O, full, cannot
// open, read-only, out of memory and protocol errors: the environment, not the
// work (sqlite_transient()).
class SqliteError : public StoreError {
 public:
  SqliteError(int code, const std::string& what)
      : StoreError(what, sqlite_transient(code), sqlite_fault(code)), code_(code) {}
  int code() const noexcept { return code_; }
  static bool sqlite_transient(int code) noexcept;
  static StoreFault sqlite_fault(int code) noexcept;

 private:
  int code_;
};

class Statement;

class Database {
 public:
  struct Options {
    bool read_only = false;
    bool create = true;
    std::chrono::milliseconds busy_timeout{5000};
  };
  static Database open(const std::string& path, Options options);
  static Database open(const std::string& path) { return open(path, Options{}); }

  Database(Database&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}
  Database& operator=(Database&& other) noexcept;
  ~Database();

  void exec(std::string_view sql);  // one or more statements, no results
  Statement prepare(std::string_view sql);
  std::int64_t last_insert_rowid() const;
  int changes() const;
  // Changes whenever another connection commits to this file (PRAGMA data_version).
  std::int64_t data_version();
  sqlite3* handle() const { return db_; }

 private:
  explicit Database(sqlite3* db) : db_(db) {}
  void close() noexcept;
  sqlite3* db_ = nullptr;
};

class Statement {
 public:
  Statement(Statement&& o) noexcept : db_(o.db_), stmt_(std::exchange(o.stmt_, nullptr)) {}
  Statement& operator=(Statement&& o) noexcept;
  ~Statement();

  // Parameters are 1-based, as in SQLite. Text and blobs are copied
  // (SQLITE_TRANSIENT) so callers may pass temporaries.
  Statement& bind(int i, std::int64_t v);
  Statement& bind(int i, int v) { return bind(i, static_cast<std::int64_t>(v)); }
  Statement& bind(int i, double v);
  Statement& bind(int i, std::string_view text);
  Statement& bind(int i, const char* text) { return bind(i, std::string_view(text)); }
  Statement& bind(int i, const std::string& text) { return bind(i, std::string_view(text)); }
  Statement& bind_blob(int i, std::string_view bytes);
  Statement& bind_null(int i);
  template <class T>
  Statement& bind(int i, const std::optional<T>& v) {
    return v ? bind(i, *v) : bind_null(i);
  }

  // Text bound in place (SQLITE_STATIC), not copied: for the rows written on
  // every event, whose strings outlive the statement's step. The bytes must
  // stay as they are until the statement is reset (run() and reset() do);
  // a temporary string does not compile. Other values as bind().
  Statement& bind_view(int i, std::string_view text);
  Statement& bind_view(int i, const std::string& text) {
    return bind_view(i, std::string_view(text));
  }
  Statement& bind_view(int i, const std::optional<std::string>& text) {
    return text ? bind_view(i, std::string_view(*text)) : bind_null(i);
  }
  Statement& bind_view(int i, const std::optional<std::string_view>& text) {
    return text ? bind_view(i, *text) : bind_null(i);
  }
  Statement& bind_view(int i, std::string&&) = delete;
  Statement& bind_view(int i, std::optional<std::string>&&) = delete;
  template <class T>
  Statement& bind_view(int i, const T& v) {
    return bind(i, v);
  }

  // True when a row is available, false when done. Throws on error (including
  // SQLITE_CONSTRAINT, with the code kept in SqliteError::code()).
  bool step();
  // step() on a statement that returns no rows; then reset() for reuse.
  void run();
  void reset();  // also clears bindings

  bool is_null(int col) const;
  std::int64_t int64(int col) const;
  double real(int col) const;
  std::string text(int col) const;
  std::optional<std::string> optional_text(int col) const;
  std::optional<std::int64_t> optional_int64(int col) const;
  std::string blob(int col) const;

 private:
  friend class Database;
  Statement(sqlite3* db, sqlite3_stmt* s) : db_(db), stmt_(s) {}
  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

// BEGIN IMMEDIATE … COMMIT; rolls back in the destructor unless committed.
// IMMEDIATE takes the write lock up front, so a busy database shows up at
// begin (honouring the busy timeout) rather than as a failed commit.
class Transaction {
 public:
  explicit Transaction(Database& db);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit();

 private:
  Database& db_;
  bool done_ = false;
};

}  // namespace kpay::storage
