// The Klarna webhook envelope (docs/klarna/WEBHOOKS.md §3) and the routing of event types
// to Kafka topics (docs/klarna/DESIGN.md). Parsing happens only after the signature
// has been verified; unknown fields are ignored, unknown event types are
// routed to the "unrouted" family, never dropped.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "kpay/klarna/kafka_contract.hpp"

namespace kpay::klarna {

enum class EventFamily {
  payment_request,      // payment.request.*
  payment_transaction,  // payment.transaction.*, payment.funding.*
  dispute,              // payment.dispute.*
  settlement,           // settlement.*
  account,              // partner.account.*
  unrouted,             // anything else
};

std::string_view family_name(EventFamily f);
EventFamily classify_event_type(std::string_view event_type);

// Topic names per family (defaults: kafka_contract.hpp); `prefix` is
// prepended to each (e.g. "prod.").
struct Topics {
  std::string payment_requests = contract::topic::payment_requests;
  std::string payment_transactions = contract::topic::payment_transactions;
  std::string disputes = contract::topic::disputes;
  std::string settlements = contract::topic::settlements;
  std::string accounts = contract::topic::accounts;
  std::string unrouted = contract::topic::unrouted;
  std::string dead_letter = contract::topic::dead_letter;
  std::string payment_states = contract::topic::payment_states;
  std::string processor_dead_letter = contract::topic::processor_dead_letter;
  // Downstream commands in, their results out (docs/klarna/COMMANDS.md, "Downstream
  // contract"; schemas/KAFKA-CONTRACT.md, "Commands").
  std::string commands = contract::topic::commands;
  std::string command_results = contract::topic::command_results;
  // What reconciling Klarna's settlements found (docs/OPERATIONS.md, "Settlements").
  std::string reconciliation = contract::topic::reconciliation;

  const std::string& for_family(EventFamily f) const;
  void apply_prefix(std::string_view prefix);
};

struct Envelope {
  std::string event_id;
  std::string event_type;
  std::string event_version;
  std::string occurred_at;  // empty when absent
  // metadata.live: which environment (live / test) the event came from; a
  // follow-up call must never cross environments (docs/klarna/PAYMENTS-API.md).
  std::optional<bool> live;
  // metadata.subject_account_id: the partner account the event is about, the
  // account follow-up calls go to (/v2/accounts/{subject_account_id}/…).
  std::optional<std::string> subject_account_id;
  EventFamily family = EventFamily::unrouted;
  // The id of the entity this event is about (payment_request_id,
  // payment_transaction_id, payment_dispute_id, settlement id, account id);
  // event_id when the payload does not carry one. Used as the Kafka key.
  std::string entity_id;
  bool entity_id_is_fallback = false;
};

struct EnvelopeError {
  std::string reason;  // machine-readable: "not_json", "missing_event_id", …
  std::string detail;  // for people; never contains body bytes beyond field names
};

struct EnvelopeResult {
  std::optional<Envelope> envelope;
  EnvelopeError error;
  explicit operator bool() const { return envelope.has_value(); }
};

// Thread-safe (one parser per thread). `body` is the raw request body.
EnvelopeResult parse_envelope(std::string_view body);

}  // namespace kpay::klarna
