// The audit trail and the command senders' day totals, in the state database
// (migrations 9, 12, 13; docs/OPERATIONS.md, "Audit trail"): SQLite's implementation
// of AuditTrail (audit_trail.hpp), on a connection of the caller. Code outside
// storage/ reaches it through the store (StateStore's AuditTrail methods).
//
// audit_events is append-only (the database refuses updates and deletes);
// the outbox's own triggers add the rows of each Klarna call (queued, every
// answered attempt, the outcome); klarnactl appends an operator's actions
// (kind "operator", with `operator_name`) in the transaction that does them.
//
// The statements of the per-command path (append, add_sender_day_total,
// spent, sender_of) and the publication cursor's are prepared on first use and kept
// for the life of the AuditLog: the state store keeps one per connection
// (StateStore::Impl), so a command does not pay for SQLite compiling them
// (docs/performance/commands-and-settlements.md, "Signed commands"). An AuditLog must not outlive
// its Database.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kpay/storage/audit_trail.hpp"
#include "kpay/storage/sqlite.hpp"

namespace kpay::storage {

class AuditLog {
 public:
  explicit AuditLog(Database& db) : db_(db) {}
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  std::int64_t append(const AuditEvent& e);
  std::vector<AuditEvent> list(const AuditQuery& q);
  // Every row of one outbox call, oldest first (klarnactl payments trace).
  std::vector<AuditEvent> for_outbox(std::int64_t outbox_id);

  // Adds an accepted command's amount to its sender's total of the day.
  void add_sender_day_total(const std::string& sender, const std::string& day,
                            const std::string& currency, std::int64_t amount);
  // The sender recorded in a command's row (commands.sender), if any.
  std::optional<std::string> sender_of(const std::string& command_id);
  // The amounts of `sender`'s accepted commands in `currency` on UTC `day`.
  std::int64_t spent(const std::string& sender, const std::string& currency,
                     const std::string& day);

  // The publication cursor of klarna.audit: rows after it are not queued yet.
  std::int64_t published_through();
  void set_published_through(std::int64_t seq);

 private:
  Statement& prep(std::optional<Statement>& s, std::string_view sql);

  Database& db_;
  std::optional<Statement> append_, add_day_total_, sender_of_, spent_, published_through_,
      set_published_through_;
};

}  // namespace kpay::storage
