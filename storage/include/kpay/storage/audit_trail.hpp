// The audit trail and the command senders' record (docs/OPERATIONS.md,
// "Audit trail"; storage/README.md, "Audit trail"). Append-only: no update or
// delete of an audit event is possible through any backend.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

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
  // kind "operator": who acted (klarnactl --operator, else the OS user).
  std::optional<std::string> operator_name;
};

struct AuditQuery {
  std::int64_t since_ms = 0;
  std::string sender;         // empty: all
  std::string command_id;     // empty: all
  std::string operator_name;  // empty: all
  std::int64_t after_seq = 0;
  std::size_t limit = 1000;
};

class AuditTrail {
 public:
  virtual ~AuditTrail() = default;
  // Returns the event's seq (increasing).
  virtual std::int64_t append_audit(const AuditEvent& e) = 0;
  // By seq, oldest first.
  virtual std::vector<AuditEvent> list_audit(const AuditQuery& q) = 0;
  // Every event of one outbox call, oldest first (klarnactl payments trace).
  virtual std::vector<AuditEvent> audit_of_outbox(std::int64_t outbox_id) = 0;
  // Adds what an accepted command of `sender` moves to its total of UTC
  // `day` in `currency` (the per-day limits). Who sent a command is in the
  // command's own row (CommandRow::sender, written by insert_command).
  virtual void add_sender_day_total(const std::string& sender, const std::string& day,
                                    const std::string& currency, std::int64_t amount) = 0;
  // The sender of a command (nullopt: unsigned, or no such command).
  virtual std::optional<std::string> sender_of(const std::string& command_id) = 0;
  // The amounts of `sender`'s accepted commands in `currency` on UTC `day`.
  virtual std::int64_t spent(const std::string& sender, const std::string& currency,
                             const std::string& day) = 0;
  // The publication cursor of klarna.audit: rows after it are not queued yet.
  virtual std::int64_t audit_published_through() = 0;
  virtual void set_audit_published_through(std::int64_t seq) = 0;
};

}  // namespace kpay::storage
