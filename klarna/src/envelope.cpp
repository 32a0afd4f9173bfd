#include "kpay/klarna/envelope.hpp"

#include <simdjson.h>

namespace kpay::klarna {

std::string_view family_name(EventFamily f) {
  switch (f) {
    case EventFamily::payment_request:
      return "payment_request";
    case EventFamily::payment_transaction:
      return "payment_transaction";
    case EventFamily::dispute:
      return "dispute";
    case EventFamily::settlement:
      return "settlement";
    case EventFamily::account:
      return "account";
    case EventFamily::unrouted:
      return "unrouted";
  }
  return "unrouted";
}

EventFamily classify_event_type(std::string_view t) {
  auto starts = [&](std::string_view p) { return t.substr(0, p.size()) == p; };
  if (starts("payment.request.")) return EventFamily::payment_request;
  if (starts("payment.transaction.") || starts("payment.funding.")) {
    return EventFamily::payment_transaction;
  }
  if (starts("payment.dispute.")) return EventFamily::dispute;
  if (starts("settlement.")) return EventFamily::settlement;
  if (starts("partner.account.")) return EventFamily::account;
  return EventFamily::unrouted;
}

const std::string& Topics::for_family(EventFamily f) const {
  switch (f) {
    case EventFamily::payment_request:
      return payment_requests;
    case EventFamily::payment_transaction:
      return payment_transactions;
    case EventFamily::dispute:
      return disputes;
    case EventFamily::settlement:
      return settlements;
    case EventFamily::account:
      return accounts;
    case EventFamily::unrouted:
      return unrouted;
  }
  return unrouted;
}

void Topics::apply_prefix(std::string_view prefix) {
  for (std::string* t : {&payment_requests, &payment_transactions, &disputes, &settlements,
                         &accounts, &unrouted, &dead_letter, &payment_states,
                         &processor_dead_letter, &commands, &command_results, &reconciliation}) {
    t->insert(0, prefix);
  }
}

namespace {

using simdjson::dom::element;

std::optional<std::string> string_field(element obj, std::string_view key) {
  std::string_view v;
  if (obj[key].get_string().get(v) == simdjson::SUCCESS && !v.empty()) return std::string(v);
  return std::nullopt;
}

// The entity id key candidates per family, most specific first, read from the
// payload's top level (where every documented example has them).
std::optional<std::string> entity_id(EventFamily family, element payload, element metadata) {
  auto first_of = [&](std::initializer_list<std::string_view> keys) -> std::optional<std::string> {
    for (auto k : keys) {
      if (auto v = string_field(payload, k)) return v;
    }
    return std::nullopt;
  };
  switch (family) {
    case EventFamily::payment_request:
      return first_of({"payment_request_id"});
    case EventFamily::payment_transaction:
      return first_of({"payment_transaction_id"});
    case EventFamily::dispute:
      return first_of({"payment_dispute_id", "dispute_id"});
    case EventFamily::settlement:
      // Only settlement_id is documented; the others are assumed names. None:
      // the event_id keys it (entity_id_is_fallback), and it is still routed.
      return first_of({"settlement_id", "payout_id", "settlement_payout_id", "report_id",
                       "settlement_report_id"});
    case EventFamily::account:
      if (auto v = first_of({"account_id", "partner_account_id"})) return v;
      return string_field(metadata, "subject_account_id");
    case EventFamily::unrouted:
      return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace

EnvelopeResult parse_envelope(std::string_view body) {
  thread_local simdjson::dom::parser parser;
  EnvelopeResult r;
  if (body.empty()) {
    r.error = {"empty_body", "the body is empty"};
    return r;
  }
  element root;
  // parse() copies into its own padded buffer when `body` lacks padding.
  if (parser.parse(body.data(), body.size(), true).get(root) != simdjson::SUCCESS) {
    r.error = {"not_json", "the body is not valid JSON"};
    return r;
  }
  if (!root.is_object()) {
    r.error = {"not_object", "the body is not a JSON object"};
    return r;
  }
  element metadata;
  if (root["metadata"].get(metadata) != simdjson::SUCCESS || !metadata.is_object()) {
    r.error = {"missing_metadata", "metadata object is missing"};
    return r;
  }
  Envelope e;
  auto id = string_field(metadata, "event_id");
  auto type = string_field(metadata, "event_type");
  auto version = string_field(metadata, "event_version");
  if (!id) {
    r.error = {"missing_event_id", "metadata.event_id is missing or not a string"};
    return r;
  }
  if (!type) {
    r.error = {"missing_event_type", "metadata.event_type is missing or not a string"};
    return r;
  }
  if (!version) {
    r.error = {"missing_event_version", "metadata.event_version is missing or not a string"};
    return r;
  }
  e.event_id = std::move(*id);
  e.event_type = std::move(*type);
  e.event_version = std::move(*version);
  e.occurred_at = string_field(metadata, "occurred_at").value_or("");
  bool live = false;
  if (metadata["live"].get_bool().get(live) == simdjson::SUCCESS) e.live = live;
  e.subject_account_id = string_field(metadata, "subject_account_id");
  e.family = classify_event_type(e.event_type);

  element payload;
  std::optional<std::string> entity;
  if (root["payload"].get(payload) == simdjson::SUCCESS && payload.is_object()) {
    entity = entity_id(e.family, payload, metadata);
  } else if (e.family == EventFamily::account) {
    entity = string_field(metadata, "subject_account_id");
  }
  if (entity) {
    e.entity_id = std::move(*entity);
  } else {
    e.entity_id = e.event_id;
    e.entity_id_is_fallback = true;
  }
  r.envelope = std::move(e);
  return r;
}

}  // namespace kpay::klarna
