// StateStore's private parts, shared by its files (state_store*.cpp): the
// connection and the statements prepared once and reused.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "kpay/storage/audit_log.hpp"
#include "kpay/storage/reconciliation_store.hpp"
#include "kpay/storage/sqlite.hpp"
#include "kpay/storage/state_store.hpp"

namespace kpay::storage {

// A status or operation read back (status.hpp's parse_*): a string this
// build does not know is a corrupt or foreign row, not a transient fault.
template <class E>
E stored(std::optional<E> value, std::string_view what, const std::string& text) {
  if (!value) {
    throw StoreError("unknown " + std::string(what) + " '" + text + "' in the state database",
                     false);
  }
  return *value;
}

// The first of two values that is not empty (a row's own trace field, then
// the store's trace context), or NULL.
inline std::optional<std::string_view> non_empty(std::string_view a, std::string_view b) {
  if (!a.empty()) return a;
  if (!b.empty()) return b;
  return std::nullopt;
}

// Resets a statement kept for reuse when its use ends, also by an exception
// (a statement left mid-result cannot be bound again).
class ResetAfter {
 public:
  explicit ResetAfter(Statement& s) : s_(s) {}
  ~ResetAfter() { s_.reset(); }
  ResetAfter(const ResetAfter&) = delete;
  ResetAfter& operator=(const ResetAfter&) = delete;

 private:
  Statement& s_;
};

// The link column of the entity row last read or written in the current
// transaction of the connection (state_store.cpp, save_request and
// save_transaction): whether the row exists and its link.
struct StoredLink {
  std::string id;
  bool exists = false;
  std::optional<std::string> link;
};
struct StoredLinks {
  std::optional<StoredLink> request, transaction;
};

struct StateStore::Impl {
  explicit Impl(Database d) : db(std::move(d)) {}
  Database db;
  std::unique_ptr<SettlementLedger> ledger;  // made on first use
  // The inbox's (state_store_inbox.cpp): topic name → inbox_topics.id, as
  // read or written in this connection (forgotten on a rollback).
  std::unordered_map<std::string, std::int64_t> inbox_topic_ids;
  std::optional<Statement> find_inbox, find_inbox_topic, insert_inbox_topic;
  std::optional<Statement> insert_inbox, find_request, save_request, find_transaction,
      save_transaction, request_for_transaction, transaction_for_request, insert_sub_record,
      find_dispute, save_dispute, find_record, save_record, append_history, insert_outbox,
      enqueue_publish, delete_published, insert_poison, save_offset, stored_offset,
      history_unindexed, index_history, mark_history_indexed, save_request_same_link,
      save_transaction_same_link, outbox_of_entity, insert_dispute_deadline,
      insert_settlement_event;
  // The dispute deadline watcher's, per due deadline (state_store_disputes.cpp).
  std::optional<Statement> deadline_warning_marked, mark_deadline_warning;
  // Forgotten whenever a transaction of this connection commits or rolls
  // back (commit and rollback hooks), and used only inside one: within a
  // transaction no other connection changes a row this one read and then
  // writes (WAL snapshot), so they are exact.
  StoredLinks links;
  // The command inbox's (state_store_commands.cpp), on every command.
  std::optional<Statement> insert_command, find_command, finish_command, pending_outbox_amount,
      save_payment_context, find_payment_context, attach_payment_context, find_sub_record;
  // The audit trail with its statements kept (audit_log.hpp); declared after
  // the statements above so all are finalized before the connection closes.
  std::optional<AuditLog> audit_log;

  Statement& prep(std::optional<Statement>& s, std::string_view sql) {
    if (!s) s.emplace(db.prepare(sql));
    return *s;
  }
  AuditLog& audit() {
    if (!audit_log) audit_log.emplace(db);
    return *audit_log;
  }
};

}  // namespace kpay::storage
