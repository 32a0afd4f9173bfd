// Commands refused for who sent them (command_auth.hpp), and the audit rows
// of command decisions: BatchApplier's part of signed commands, in the batch
// transaction.
#include <chrono>

#include "kpay/core/log.hpp"
#include "kpay/core/wall_clock.hpp"
#include "kpay/processor/batch_applier.hpp"

namespace kpay::processor {

namespace {

std::string refusal_text(const std::string& reason) {
  if (reason == "unsigned") return "unsigned: no kpay-sender and kpay-signature headers";
  if (reason == "malformed_signature") {
    return "malformed_signature: kpay-sender is not a sender id or kpay-signature is not "
           "kid=<key id>;v1=<64 lowercase hex>";
  }
  if (reason == "unknown_sender") return "unknown_sender: no keys are registered for this sender";
  if (reason == "unknown_key") return "unknown_key: the sender has no key of this id";
  if (reason == "retired_key") return "retired_key: the key was retired";
  if (reason == "bad_signature") return "bad_signature: the signature does not match the message";
  if (reason == "bad_issued_at") return "bad_issued_at: issued_at must be an RFC 3339 timestamp";
  return reason;
}

using core::now_ms;

std::optional<std::string> non_empty(const std::string& s) {
  return s.empty() ? std::nullopt : std::optional<std::string>(s);
}

}  // namespace

std::optional<CommandRefusal> BatchApplier::authenticate_command(InputMessage& m,
                                                                 CommandOrigin& origin) const {
  if (!security_) return std::nullopt;
  auto issued = command_issued_at(m.value);
  if (std::holds_alternative<std::string>(issued))
    return CommandRefusal{"bad_issued_at", "", std::nullopt, std::nullopt};
  origin.issued_at_ms = std::get<std::optional<std::int64_t>>(issued);
  if (!origin.issued_at_ms) origin.issued_at_ms = m.timestamp_ms;
  static const SenderKeyRing kNoKeys;
  const auto ring = security_->keys ? security_->keys() : nullptr;
  auto verdict =
      authenticate(ring ? *ring : kNoKeys, m.headers, m.value, security_->policy.allow_unsigned);
  if (auto* failure = std::get_if<AuthFailure>(&verdict)) {
    return CommandRefusal{failure->reason, failure->sender, std::nullopt, std::nullopt};
  }
  auto& who = std::get<Authenticated>(verdict);
  origin.sender = std::move(who.sender);
  origin.key_id = std::move(who.key_id);
  return std::nullopt;
}

void BatchApplier::record_command_refusal(const DecodedMessage& d, const CommandRefusal& r,
                                          BatchResult& out) {
  const InputMessage& m = d.message;
  const auto now = now_ms();
  const std::string coordinates =
      m.topic + "/" + std::to_string(m.partition) + "/" + std::to_string(m.offset);
  const std::string text = refusal_text(r.reason);
  storage::HistoryRow h;
  h.event_id = "command-refused:" + coordinates;
  h.entity_kind = "command";
  h.entity_id = m.key.empty() ? h.event_id : m.key;
  h.event_type = "command." + r.type.value_or("unknown");
  h.occurred_at = core::rfc3339_ms(now);
  h.outcome = "rejected";
  h.reason = "refused: " + text;
  h.topic = m.topic;
  h.partition = m.partition;
  h.offset = m.offset;
  store_.append_history(h);
  ++out.rejected;
  ++out.commands_refused[r.reason];
  // The raw message, for inspection (klarnactl dead-letters).
  const std::string dead_reason = "command_" + r.reason;
  store_.insert_poison({m.topic, m.partition, m.offset, "", dead_reason, m.value, m.key});
  storage::PublishRow dlq{0, topics_.processor_dead_letter, m.key, m.value, dead_reason};
  dlq.seq = store_.enqueue_publish(dlq);
  out.publications.push_back(std::move(dlq));

  CommandResult result;
  result.command_id = r.command_id;
  result.type = r.type;
  result.status = CommandStatus::rejected;
  result.reason = text;
  storage::AuditEvent a;
  a.at_ms = now;
  a.kind = "refused";
  a.sender = non_empty(r.sender);
  a.command_id = r.command_id;
  a.operation = r.type;
  a.status = "rejected";
  a.detail = text + " (" + coordinates + ")";
  store_.append_audit(a);
  storage::PublishRow row{0, topics_.command_results,
                          m.key.empty() ? r.command_id.value_or("") : m.key,
                          render_command_result(result, now), ""};
  row.seq = store_.enqueue_publish(row);
  out.publications.push_back(std::move(row));
}

void BatchApplier::audit_command(const DecodedMessage& d, const CommandResult& result,
                                 std::int64_t now) {
  storage::AuditEvent a;
  a.at_ms = now;
  a.kind = "command";
  a.sender = non_empty(d.origin.sender);
  a.command_id = result.command_id;
  a.operation = result.type;
  a.entity_id = non_empty(d.message.key);
  a.status = std::string(command_status_name(result.status));
  a.detail = result.reason;
  store_.append_audit(a);
}

}  // namespace kpay::processor
