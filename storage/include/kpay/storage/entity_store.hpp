// Entities: payment requests, transactions and their captures / refunds /
// chargebacks, disputes and their deadlines, records (settlement reports,
// payouts, partner accounts), settlement events (storage/README.md).
// save_* are upserts by id: the row given replaces the stored one.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kpay/storage/rows.hpp"

namespace kpay::storage {

class EntityStore {
 public:
  virtual ~EntityStore() = default;

  virtual std::optional<PaymentRequestRow> find_request(const std::string& id) = 0;
  virtual void save_request(const PaymentRequestRow& r) = 0;
  virtual std::optional<PaymentTransactionRow> find_transaction(const std::string& id) = 0;
  virtual void save_transaction(const PaymentTransactionRow& t) = 0;
  // The request whose state_context named this transaction (lowest id), if any.
  virtual std::optional<std::string> request_for_transaction(const std::string& transaction_id) = 0;
  // The transaction whose events named this request (lowest id), if any.
  virtual std::optional<std::string> transaction_for_request(const std::string& request_id) = 0;

  // false when a sub-record with this kind and id exists already (idempotent
  // amount bookkeeping).
  virtual bool insert_sub_record(const SubRecordRow& r) = 0;
  // Ordered by occurred_at_ms, kind, id.
  virtual std::vector<SubRecordRow> sub_records(const std::string& transaction_id) = 0;
  virtual std::optional<SubRecordRow> find_sub_record(const std::string& kind,
                                                      const std::string& id) = 0;

  virtual std::optional<DisputeRow> find_dispute(const std::string& id) = 0;
  virtual void save_dispute(const DisputeRow& d) = 0;
  // false when this (dispute, kind, event) is recorded already.
  virtual bool insert_dispute_deadline(const DisputeDeadlineRow& d) = 0;
  // Ordered by as_of_ms, kind, event_id.
  virtual std::vector<DisputeDeadlineRow> dispute_deadlines(const std::string& dispute_id) = 0;
  // A page of the open disputes (not CLOSED, state unknown included): those after `after_id` (none:
  // from the first) in id order, at most `limit`. All of them: pass a page's last id to the next
  // call until a page comes back shorter than `limit`. Found through the index of open disputes
  // (v20), so a page costs what it returns, however many closed disputes the store holds. Outside a
  // transaction each page is read in a snapshot of its own and takes no write lock.
  virtual std::vector<DisputeRow> open_disputes_after(const std::optional<std::string>& after_id,
                                                      std::size_t limit) = 0;
  // The claim of one deadline warning: true for exactly one caller per
  // (dispute, kind, deadline value, stage) ever, false for every later one
  // (whichever processor asks). The warning is sent only by the one that got
  // true, in the same transaction.
  virtual bool mark_deadline_warning(const std::string& dispute_id, const std::string& kind,
                                     std::int64_t deadline_ms, const std::string& stage,
                                     std::int64_t now_ms) = 0;
  // Whether each claim was made already, in the order of `keys` (a read: the
  // watcher skips those before it opens a write transaction;
  // mark_deadline_warning decides). One statement on PostgreSQL, whatever
  // the number of keys.
  virtual std::vector<bool> deadline_warnings_marked(std::span<const DeadlineWarningKey> keys) = 0;
  bool deadline_warning_marked(const std::string& dispute_id, const std::string& kind,
                               std::int64_t deadline_ms, const std::string& stage) {
    const DeadlineWarningKey key{dispute_id, kind, deadline_ms, stage};
    return deadline_warnings_marked({&key, 1}).front();
  }

  virtual std::optional<RecordRow> find_record(const std::string& kind, const std::string& id) = 0;
  virtual void save_record(const RecordRow& r) = 0;

  // One row per event_id: false when it was recorded before.
  virtual bool insert_settlement_event(const SettlementEventRow& r) = 0;
  virtual std::vector<SettlementEventRow> settlement_events(std::size_t limit) = 0;  // newest
};

}  // namespace kpay::storage
