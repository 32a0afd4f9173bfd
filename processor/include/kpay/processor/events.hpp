// Decoding one Kafka message (the receiver's raw webhook body) into a typed
// event: the envelope, the fields of the payload we rely on, and the Action the
// (event_type, event_version) pair asks for. Anything we cannot read with
// confidence becomes a Poison with a machine-readable reason; decoding never
// throws.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "kpay/klarna/envelope.hpp"
#include "kpay/processor/state_machines.hpp"

namespace kpay::processor {

// ---- what an event asks for ---------------------------------------------------
struct RequestTransition {
  RequestGeneration generation;
  RequestState target;
};
struct RequestUpdated {};  // payment.request.updated: attributes only
struct TransactionTransition {
  TransactionState target;
};
enum class SubRecordKind { capture, refund, chargeback };
struct SubRecordAdded {
  SubRecordKind kind;
};
struct FundingTransition {
  FundingState target;
};
// Which dispute framework an event belongs to; `either` for the event types
// both frameworks send (pre-arbitration, closed), resolved per dispute.
enum class FrameworkHint { current, legacy, either };
struct DisputeTransition {
  FrameworkHint framework;
  DisputeState current_target;  // meaning in the current framework
  DisputeState legacy_target;   // meaning in the legacy framework
};
// A dispute's deadlines: respond with evidence (current framework,
// representment.expires_at), appeal a preliminary decision
// (arbitration_expires_at), respond with evidence in the legacy framework
// (evidence_response_deadline_at). Missing one loses the dispute.
enum class Deadline { representment, arbitration, evidence_response };
std::string_view deadline_name(Deadline d);  // "representment", "arbitration", "evidence_response"
struct DisputeDeadlineExtended {
  Deadline deadline;  // representment or arbitration (the event type names it)
};
struct SettlementReportTransition {
  SettlementReportState target;
};
struct PayoutTransition {
  PayoutState target;
};
struct AccountTransition {
  AccountState target;
};
struct PaymentProductTransition {
  PaymentProductState target;
};
struct Unrouted {};  // klarna.unrouted: recorded and counted only

using Action = std::variant<RequestTransition, RequestUpdated, TransactionTransition,
                            SubRecordAdded, FundingTransition, DisputeTransition,
                            DisputeDeadlineExtended, SettlementReportTransition, PayoutTransition,
                            AccountTransition, PaymentProductTransition, Unrouted>;

// The entity kind an action is about: "payment_request", "payment_transaction",
// "dispute", "settlement_report", "payout", "partner_account", "unrouted".
std::string_view entity_kind(const Action& a);

// Looks (event_type, event_version) up in the dispatch table.
enum class RouteError { unknown_event_type, unknown_event_version };
std::variant<Action, RouteError> route(std::string_view event_type, std::string_view version);

// ---- the payload fields we read (all optional: Klarna's shapes are partly unconfirmed)
// What a settlement.* event carries (settlement_fields.cpp). Klarna documents
// the events and that report.created links the JSON and CSV reports; every
// name but settlement_id is assumed, so each is read under several names.
struct SettlementFacts {
  std::string routed_by;  // settlement_id | payout_id | report_id | event_id
  std::optional<std::string> settlement_id;
  std::optional<std::string> payout_id;
  std::optional<std::string> report_id;
  std::optional<std::string> report_json_url;
  std::optional<std::string> report_csv_url;
  std::optional<std::string> payout_date;
  std::optional<std::string> period_start;
  std::optional<std::string> period_end;
  std::string links_json = "{}";  // every https URL in the payload, by its path
};

// A payout Klarna reports FAILED (settlement.payout.failed applied): what the
// log names. The entity is the payout's key (settlement, payout or report id).
struct FailedPayout {
  std::string entity_id;
  std::optional<std::string> settlement_id;
  std::optional<std::string> payout_id;
  std::optional<std::int64_t> amount;
  std::optional<std::string> currency;
};

struct Payload {
  std::optional<std::string> reference;
  // The entity's amount; for captures, refunds and chargebacks the
  // operation's own amount (capture_amount, refund_amount, …), never the
  // transaction's authorized amount a whole-transaction payload also carries.
  std::optional<std::int64_t> amount;
  // A capture / refund whose payload looks like the whole transaction and
  // names only `amount` (the transaction's, or the operation's?): not booked;
  // the capture / refund is read from Klarna instead.
  bool amount_ambiguous = false;
  std::optional<std::string> currency;
  std::optional<std::string> payment_request_id;
  std::optional<std::string> payment_transaction_id;
  std::optional<std::string> capture_id;
  std::optional<std::string> refund_id;
  std::optional<std::string> chargeback_id;
  std::optional<std::int64_t> expires_at_ms;
  std::optional<std::string> confirmation_token;  // Gen 1: sensitive
  std::optional<std::string> session_token;       // Gen 2/3: sensitive
  bool legacy_payment_token = false;              // session_token came as the legacy payment_token
  // Disputes
  std::optional<std::string> dispute_reason;
  std::optional<std::string> dispute_outcome;  // top level or state_context
  std::optional<std::string> dispute_outcome_detailed;
  std::optional<std::int64_t> representment_expires_at_ms;
  std::optional<std::int64_t> arbitration_expires_at_ms;
  std::optional<std::int64_t> evidence_response_deadline_ms;  // legacy framework
  std::optional<std::int64_t> closed_at_ms;
  std::optional<std::int64_t> withheld_amount;
  std::optional<std::int64_t> returned_amount;
  std::optional<std::int64_t> fee_amount;
  bool has_representment = false;  // a current-framework marker
  // Every deadline the payload names, in the order of the field table in
  // events.cpp (updated_fields last): what the deadline history records.
  struct DeadlineReading {
    Deadline kind;
    std::int64_t at_ms;
    // Where it was read, e.g. "updated_fields.evidence_response_deadline_at".
    std::string_view field;
  };
  std::vector<DeadlineReading> deadlines;
  // settlement.* events only; held apart (never changed once read) so that
  // the other events, most of those in hand, do not carry its 384 bytes
  // inline (docs/performance/processor.md, "Where the instructions go").
  std::shared_ptr<const SettlementFacts> settlement;
};

struct Event {
  klarna::Envelope envelope;
  std::int64_t occurred_at_ms = 0;  // 0 when the envelope has none
  Action action;
  Payload payload;
};

struct Poison {
  std::string reason;  // machine-readable: not_json, unknown_event_version, missing_field, …
  std::string detail;  // for people; names fields, never values
  std::optional<klarna::Envelope> envelope;  // when the envelope itself was readable
};

// `from_unrouted_topic`: messages of klarna.unrouted are recorded, never applied.
std::variant<Event, Poison> decode_event(std::string_view body, bool from_unrouted_topic);

// RFC 3339 ("2025-02-28T12:00:00Z", fractions and offsets allowed) → Unix ms.
std::optional<std::int64_t> parse_rfc3339_ms(std::string_view text);

}  // namespace kpay::processor
