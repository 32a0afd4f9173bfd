// The unit of work: one write transaction around everything one batch does
// (storage/README.md, "Unit of work").
//
//   storage::WriteTransaction tx(store);   // begins (takes the write lock)
//   ... store.insert_inbox(...); store.save_request(...); store.save_offset(...);
//   tx.commit();                           // all of it durable, or (throw) none
//
// A WriteTransaction destroyed without commit() rolls everything back. One at
// a time per store object (no nesting); every method of the store's other
// interfaces called meanwhile on the same object is part of it.
#pragma once

#include <memory>
#include <span>
#include <string>

namespace kpay::storage {

// A backend's open transaction. Its destructor rolls back unless committed.
class TransactionScope {
 public:
  virtual ~TransactionScope() = default;
  // Makes every write since begin durable (SQLite: synchronous=FULL; a
  // PostgreSQL backend: synchronous_commit on). Throws StoreError; then
  // nothing of it is kept.
  virtual void commit() = 0;
};

class UnitOfWork {
 public:
  virtual ~UnitOfWork() = default;
  // Begins a write transaction. Throws StoreError (transient when the database
  // stayed busy past its timeout or cannot be reached).
  virtual std::unique_ptr<TransactionScope> begin_write() = 0;
  // The same, serialised on `keys` across every store object on the same
  // database: of two write transactions that name a common key, the later
  // one begins only after the earlier one ended, so it reads the earlier
  // one's commit (storage/README.md, "Unit of work"). A backend with one
  // writer at a time (SQLite) gives that already; this default begins as
  // begin_write() does.
  virtual std::unique_ptr<TransactionScope> begin_write_serialised(
      std::span<const std::string> keys) {
    (void)keys;
    return begin_write();
  }
};

// RAII over UnitOfWork::begin_write: what callers write.
class WriteTransaction {
 public:
  explicit WriteTransaction(UnitOfWork& work) : scope_(work.begin_write()) {}
  // Serialised on `keys` (UnitOfWork::begin_write_serialised); none: as above.
  WriteTransaction(UnitOfWork& work, std::span<const std::string> keys)
      : scope_(keys.empty() ? work.begin_write() : work.begin_write_serialised(keys)) {}
  WriteTransaction(const WriteTransaction&) = delete;
  WriteTransaction& operator=(const WriteTransaction&) = delete;
  void commit() { scope_->commit(); }

 private:
  std::unique_ptr<TransactionScope> scope_;
};

}  // namespace kpay::storage
