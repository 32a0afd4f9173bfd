// The audit trail and the command senders' record, in the state database
// (migration 9; docs/OPERATIONS.md, "Audit trail"). Works on a connection of
// the caller (the batch transaction, the audit publisher, klarnactl).
//
// audit_events is append-only (the database refuses updates and deletes);
// the outbox's own triggers add the rows of each Klarna call (queued, every
// answered attempt, the outcome, an operator's requeue).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kpay/storage/sqlite.hpp"

namespace kpay::storage {

struct AuditEvent {
  std::int64_t seq = 0;  // assigned on append
  std::int64_t at_ms = 0;
  std::string kind;  // command | refused | call_queued | attempt | outcome | operator
  std::optional<std::string> sender;
  std::optional<std::string> command_id;
  std::optional<std::string> operation;  // command type or Klarna operation
  std::optional<std::string> entity_id;
  std::optional<std::int64_t> outbox_id;
  std::optional<std::int64_t> attempt;
  std::string status;
  std::optional<std::string> detail;
  std::optional<std::string> request;  // what went to Klarna; never a token
  std::optional<std::int64_t> klarna_status;
};

struct AuditQuery {
  std::int64_t since_ms = 0;
  std::string sender;      // empty: all
  std::string command_id;  // empty: all
  std::int64_t after_seq = 0;
  std::size_t limit = 1000;
};

class AuditLog {
 public:
  explicit AuditLog(Database& db) : db_(db) {}

  std::int64_t append(const AuditEvent& e);
  std::vector<AuditEvent> list(const AuditQuery& q);
  // Every row of one outbox call, oldest first (klarnactl payments trace).
  std::vector<AuditEvent> for_outbox(std::int64_t outbox_id);

  // Who sent an accepted command, and the money it moves (per-day limits).
  void record_sender(const std::string& command_id, const std::string& sender,
                     const std::string& key_id, const std::optional<std::string>& currency,
                     std::optional<std::int64_t> amount, const std::string& day,
                     std::int64_t now_ms);
  // The amounts of `sender`'s accepted commands in `currency` on UTC `day`.
  std::int64_t spent(const std::string& sender, const std::string& currency,
                     const std::string& day);

  // The publication cursor of klarna.audit: rows after it are not queued yet.
  std::int64_t published_through();
  void set_published_through(std::int64_t seq);

 private:
  Database& db_;
};

}  // namespace kpay::storage
