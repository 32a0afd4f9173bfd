// The rows the state store takes and gives back: plain values, the same for
// every backend (SQLite today; storage/README.md says what each interface
// promises). States are Klarna's names (strings); the processor owns their
// meaning. Statuses and operations this product defines have enums in
// status.hpp, converted to and from these strings at the storage boundary.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kpay/storage/status.hpp"

namespace kpay::storage {

// The first delivery of an event_id; its details are in its history row.
struct InboxEntry {
  std::string event_id;
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  // v8: SHA-256 of the message body (32 bytes); empty = not known. A second
  // message with this event_id and another digest is a conflict.
  std::string digest{};
};

// A partition that moved past offsets the processor never applied (v8,
// state_store_gaps.cpp; docs/OPERATIONS.md, "Offset gaps").
struct OffsetGapRow {
  std::int64_t id = 0;  // assigned by the store
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t expected = 0;  // the next offset the store had applied up to
  std::int64_t resume_at =
      0;                     // where consumption goes on (the log's start, or the offset delivered)
  std::string kind;          // deleted | log_reset | jump
  std::int64_t skipped = 0;  // offsets known to be lost (0 when unknowable: log_reset)
  GapPolicy policy = GapPolicy::pause;  // processor.on_offset_gap when detected
  GapStatus status = GapStatus::open;
  std::int64_t detected_at_ms = 0;
  std::optional<std::int64_t> decided_at_ms;
  std::optional<std::int64_t> repaired_at_ms;
  std::int64_t repair_reads = 0;
};

// An open entity seen on a partition: what a gap repair reads again.
struct RepairTarget {
  std::string kind;  // payment_request | payment_transaction | dispute
  std::string id;
  std::optional<std::string> state;
  std::optional<std::string> account_id;
  std::int32_t generation = 2;                             // payment requests
  DisputeFramework framework = DisputeFramework::current;  // disputes
};

// A message whose event_id was applied before with another body (v8).
struct EventConflictRow {
  std::string event_id;
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::string digest;        // this message's body (32 bytes)
  std::string first_digest;  // the body applied first
  std::string first_topic;
  std::int32_t first_partition = 0;
  std::int64_t first_offset = 0;
  std::int64_t recorded_at_ms = 0;
};

struct PaymentRequestRow {
  std::string id;
  int generation = 2;                // 1 = webhooks v1, 2 = v2 (Gen 2/3)
  std::optional<std::string> state;  // unknown while only attribute updates were seen
  std::int64_t state_as_of_ms = 0;
  std::optional<std::string> reference;
  std::optional<std::int64_t> amount;
  std::optional<std::string> currency;
  std::optional<std::string> payment_transaction_id;
  std::optional<std::int64_t> expires_at_ms;
  // Gen 2/3: final authorization must happen before this (COMPLETED + 60 min).
  std::optional<std::int64_t> authorization_due_ms;
  std::string last_event_id;
  // metadata.subject_account_id: the account follow-up calls go to.
  std::optional<std::string> account_id;
  // The answer of the final authorization / confirm this product made:
  // APPROVED | DECLINED | STEP_UP_REQUIRED (DECLINED: the payment failed).
  std::optional<std::string> authorization_result;

  bool operator==(const PaymentRequestRow&) const = default;
};

struct PaymentTransactionRow {
  std::string id;
  std::optional<std::string> state;  // unknown while only sub-record events were seen
  std::int64_t state_as_of_ms = 0;
  std::optional<std::string> reference;
  std::optional<std::int64_t> amount;  // authorized amount, minor units
  std::optional<std::string> currency;
  std::optional<std::string> payment_request_id;
  std::optional<std::int64_t> expires_at_ms;
  std::int64_t captured_amount = 0;
  std::int64_t refunded_amount = 0;
  std::int64_t chargeback_amount = 0;
  std::optional<std::string> funding_state;
  std::int64_t funding_as_of_ms = 0;
  std::string last_event_id;
  std::optional<std::string> account_id;  // metadata.subject_account_id

  bool operator==(const PaymentTransactionRow&) const = default;
};

// One capture, refund or chargeback of a transaction; unique per its own id,
// which is what makes the amount bookkeeping idempotent.
struct SubRecordRow {
  std::string kind;  // "capture" | "refund" | "chargeback"
  std::string id;
  std::string transaction_id;
  std::int64_t amount = 0;
  std::optional<std::string> currency;
  std::optional<std::string> capture_id;  // refunds/chargebacks: the capture they relate to
  std::int64_t occurred_at_ms = 0;
  std::string event_id;
};

// One deadline warning's claim: a dispute's deadline of one kind and value,
// at one stage ("window", "passed").
struct DeadlineWarningKey {
  std::string dispute_id;
  std::string kind;
  std::int64_t deadline_ms = 0;
  std::string stage;
};

struct DisputeRow {
  std::string id;
  DisputeFramework framework = DisputeFramework::current;
  bool framework_inferred = false;   // guessed from an event both frameworks share
  std::optional<std::string> state;  // unknown while only deadline updates were seen
  std::int64_t state_as_of_ms = 0;
  std::optional<std::string> payment_transaction_id;
  std::optional<std::string> payment_capture_id;
  std::optional<std::string> reason;
  std::optional<std::int64_t> amount;
  std::optional<std::string> currency;
  std::optional<std::string> outcome;  // WON | LOST
  std::optional<std::int64_t> representment_expires_at_ms;
  std::int64_t representment_as_of_ms = 0;
  std::optional<std::int64_t> arbitration_expires_at_ms;
  std::int64_t arbitration_as_of_ms = 0;
  std::optional<std::int64_t> closed_at_ms;
  std::string last_event_id;
  // v5: the legacy framework's deadline (state_context.evidence_response_deadline_at),
  // last-writer-wins by occurred_at like the other two.
  std::optional<std::int64_t> evidence_response_deadline_ms;
  std::int64_t evidence_response_as_of_ms = 0;
  std::optional<std::string> outcome_detailed;  // dispute_outcome_detailed
  // Money Klarna reports for the dispute, minor units: withheld when it
  // opened, returned when it was won, the dispute fee (charged either way).
  std::optional<std::int64_t> withheld_amount;
  std::optional<std::int64_t> returned_amount;
  std::optional<std::int64_t> fee_amount;
  // v7: metadata.subject_account_id of its events (the account its operations
  // go to), so a dispute of a transaction never seen can still be answered.
  std::optional<std::string> account_id;

  bool operator==(const DisputeRow&) const = default;
};

// Every deadline value an event told us, kept (v5): which deadline, the value,
// the event and where in its payload it was read. Unique per (dispute, kind, event).
struct DisputeDeadlineRow {
  std::string dispute_id;
  std::string kind;  // "representment" | "arbitration" | "evidence_response"
  std::int64_t deadline_ms = 0;
  std::int64_t as_of_ms = 0;  // the event's occurred_at
  std::string event_id;
  std::string event_type;
  std::string field;  // e.g. "updated_fields.evidence_response_deadline_at"

  bool operator==(const DisputeDeadlineRow&) const = default;
};

// Settlement reports, payouts and partner accounts: a state and an optional
// second state (an account's payment product switch).
struct RecordRow {
  std::string kind;  // "settlement_report" | "payout" | "partner_account"
  std::string id;
  std::optional<std::string> state;
  std::int64_t state_as_of_ms = 0;
  std::optional<std::string> sub_state;
  std::int64_t sub_state_as_of_ms = 0;
  std::optional<std::int64_t> amount;
  std::optional<std::string> currency;
  std::string last_event_id;
};

// v7: what a settlement.* webhook carried, one row per event (a later
// settlements fetcher starts from these). Field names other than
// settlement_id are assumed (docs/klarna/WEBHOOKS.md leaves them unconfirmed); `routed_by`
// says which id keyed the event: settlement_id, payout_id, report_id, or
// event_id when it named none.
struct SettlementEventRow {
  std::string event_id;
  std::string event_type;
  std::string entity_id;
  std::string routed_by;
  std::optional<std::string> account_id;
  std::optional<std::string> settlement_id;
  std::optional<std::string> payout_id;
  std::optional<std::string> report_id;
  std::optional<std::string> report_json_url;
  std::optional<std::string> report_csv_url;
  std::optional<std::int64_t> amount;
  std::optional<std::string> currency;
  std::optional<std::string> payout_date;
  std::optional<std::string> period_start;
  std::optional<std::string> period_end;
  std::string links_json = "{}";  // every URL-valued field found, by its path
  std::int64_t occurred_at_ms = 0;

  bool operator==(const SettlementEventRow&) const = default;
};

struct HistoryRow {
  std::int64_t seq = 0;  // assigned by the store
  std::string event_id;  // may be synthetic ("poison:topic/partition/offset")
  std::string entity_kind;
  std::string entity_id;
  std::string event_type;
  std::string event_version;
  std::string occurred_at;
  std::string outcome;  // applied | duplicate | stale | rejected
  std::optional<std::string> from_state;
  std::optional<std::string> to_state;
  std::string reason;
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  // v11 (klarnactl payments trace): the message's W3C traceparent, when the
  // processor wrote this row (ms; 0 = not known: written before v11 or
  // unset, then the store fills in now), the receiver's received-at header
  // and the Kafka message timestamp.
  std::string traceparent{};
  std::int64_t recorded_at_ms = 0;
  std::string received_at{};
  std::optional<std::int64_t> kafka_timestamp_ms{};
};

// v11: what the store adds to the rows written while it is set
// (Store::set_trace_context).
struct TraceContext {
  std::string traceparent;  // W3C; empty: none
  std::string received_at;  // the receiver's received-at header
  std::optional<std::int64_t> kafka_timestamp_ms;
};

// A follow-up call to Klarna, written in the same transaction as the state
// change that makes it due. The idempotency key is fixed here and never
// changes: the outbox worker retries with exactly this key, and a process
// killed between sending and recording sends it again with the same key.
//
// Life: pending → in_flight (claimed, attempts+1) → succeeded | failed, or
// back to pending with next_attempt_at_ms after a retryable answer. An
// in_flight row found at start-up was interrupted: it becomes pending again.
// An operator may put a failed row back to pending (`klarnactl actions retry`).
struct OutboxRow {
  std::int64_t id = 0;
  OutboxOperation operation = OutboxOperation::final_authorization;
  std::string entity_id;
  std::string idempotency_key;
  std::string request_body;  // JSON body of the call ("" for GET/DELETE)
  // Path/header parameter the call needs (confirmation token, network session
  // token). Sensitive: never logged, never published, never listed.
  std::string call_token;
  std::optional<std::int64_t> due_by_ms;  // deadline (final authorization: 60 min)
  OutboxStatus status = OutboxStatus::pending;
  std::string created_by_event_id;
  std::string account_id;  // /v2/accounts/{account_id}/…
  std::string method = "POST";
  // Under /v2/accounts/{account}, percent-encoded; "{token}" stands for
  // call_token (percent-encoded when sent), so the stored path holds no secret.
  std::string path;
  std::string token_header;  // header carrying call_token; empty: none / in the path
  std::int64_t attempts = 0;
  std::int64_t next_attempt_at_ms = 0;
  std::int64_t created_at_ms = 0;
  std::int64_t updated_at_ms = 0;
  std::optional<std::int64_t> last_status;  // HTTP status of the last answer
  std::optional<std::string> last_error;    // Answer::summary(): no secrets
  std::optional<std::string> result;        // APPROVED, DECLINED, the id created, …
  std::optional<std::string> command_id;    // the downstream command that asked for it
  // v4: the money the call moves (captures, refunds), so amounts accepted but
  // not yet executed count against what state allows; for a refund of one
  // capture, that capture's id.
  std::optional<std::int64_t> amount;
  std::optional<std::string> capture_id;
  // v11: the trace of what caused the call (the event or command); each
  // attempt is sent as a child span of it. Empty: the store's trace context.
  std::string traceparent{};
};

// v11: one attempt of a Klarna call, as the worker recorded its answer
// (call_attempts.hpp).
struct CallAttemptRow {
  std::int64_t outbox_id = 0;
  std::int64_t attempt = 0;  // the outbox row's attempts when it was sent
  std::int64_t started_at_ms = 0;
  std::int64_t latency_us = 0;
  std::string outcome;  // succeeded | retry | failed | conflict
  std::optional<std::int64_t> http_status;
  std::optional<std::string> transport_error;
  std::optional<std::string> klarna_error_id;
  std::optional<std::string> klarna_error_code;
  std::optional<std::string> klarna_correlation_id;
  std::optional<std::string> summary;  // Answer::summary(): no secrets
  std::string traceparent;             // the header sent on this attempt
  std::int64_t recorded_at_ms = 0;

  bool operator==(const CallAttemptRow&) const = default;
};

// What the worker records about one attempt.
struct OutboxUpdate {
  std::int64_t id = 0;
  OutboxStatus status = OutboxStatus::pending;  // pending (retry later) | succeeded | failed
  std::int64_t next_attempt_at_ms = 0;
  std::int64_t now_ms = 0;
  std::optional<std::int64_t> last_status;
  std::optional<std::string> last_error;
  std::optional<std::string> result;
  // The claimer (OutboxClaim::owner). A backend shared by several processors
  // records the answer only while the row is still in_flight under this
  // owner; SQLite (one processor) records it unconditionally.
  std::string owner{};
};

// A request for due outbox rows (OutboxStore::claim_due_outbox).
struct OutboxClaim {
  std::int64_t now_ms = 0;
  std::size_t limit = 0;
  // Who claims: a stable name of the processor instance. Empty: the only one.
  std::string owner{};
  // How long the claim holds. 0: until answered, or until the start-up of a
  // processor (release_in_flight_outbox) — the single-processor life. > 0: an
  // in_flight row claimed at or before now_ms - lease_ms may be claimed again
  // (its claimer is presumed dead), and is sent again with the same key.
  std::int64_t lease_ms = 0;
};

// A downstream command (klarna.commands), v4: the inbox entry (command_id is
// the key, body_hash tells a resend from a reuse of the id) and where it
// stands. `key` is the Kafka key its results are published under. v13: the
// sender that signed it and the key it signed with (none when unsigned).
struct CommandRow {
  std::string command_id;
  std::string type;  // register | authorize | capture | refund | void | cancel
  std::string key;
  std::string body_hash;
  CommandStatus status = CommandStatus::accepted;
  std::optional<std::string> reason;
  std::optional<std::string> entity_id;  // the transaction / request it acts on
  std::optional<std::int64_t> outbox_id;
  std::int64_t created_at_ms = 0;
  std::int64_t updated_at_ms = 0;
  std::optional<std::string> sender{};
  std::optional<std::string> sender_key_id{};

  bool operator==(const CommandRow&) const = default;
};

// The context a `register` command (or an `authorize` answered
// STEP_UP_REQUIRED) gives a payment: the final authorization / confirm for the
// request uses it instead of the webhook's fields. v4.
struct PaymentContextRow {
  std::string command_id;  // the command that registered it
  std::optional<std::string> payment_request_id;
  std::optional<std::string> payment_request_reference;
  std::string account_id;
  std::int64_t amount = 0;
  std::string currency;
  bool capture_now = false;
  std::optional<std::string> payment_transaction_reference;
  std::optional<std::string> supplementary_purchase_data;  // JSON object, as sent
  // Sensitive: never logged, published or listed.
  std::optional<std::string> interoperability_token;
  std::optional<std::string> interoperability_data;  // forwarded byte for byte
  std::int64_t created_at_ms = 0;

  bool operator==(const PaymentContextRow&) const = default;
};

// A message that must reach Kafka (state change, dead-letter copy). Written in
// the batch transaction and deleted once the broker acknowledged it, so a crash
// after commit republishes instead of losing it (at-least-once downstream).
struct PublishRow {
  std::int64_t seq = 0;
  std::string topic;
  std::string key;
  std::string value;
  std::string reason;  // dead letters: why; empty for state changes
  // v11: sent as the message's traceparent header. Empty when enqueued: the
  // store's trace context.
  std::string traceparent{};
};

struct PoisonRow {
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::string event_id;  // empty when the envelope could not be read
  std::string reason;
  std::string value;
  std::string key;  // the Kafka key, so a replay is the original message
};

// A dead letter as klarnactl dead-letters shows it (state_store_dead_letters.cpp):
// a poison message of the processor, with its replays.
struct DeadLetterRow {
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::string event_id;  // empty when the envelope could not be read
  std::string reason;
  std::string value;               // find_poison only
  std::int64_t bytes = 0;          // the value's size
  std::optional<std::string> key;  // null: recorded before keys were kept and not recoverable
  std::optional<std::int64_t> recorded_at_ms;
};

// A dead letter's replays (either source), keyed by its coordinates.
struct ReplayRow {
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::string source;  // "receiver" | "processor"
  std::string target_topic;
  std::int64_t replays = 0;
  std::int64_t last_replayed_ms = 0;
};

// The state shown for a payment no event has told the state of yet: one
// first seen through an event that carries none (a capture or refund of a
// transaction, a request's non-state update). Shown, never stored.
inline constexpr std::string_view kNoStateYet = "(no state event yet)";

// `klarnactl payments list` filters; unset ones match everything.
struct PaymentFilter {
  std::optional<std::string> kind;       // payment_request | payment_transaction
  std::optional<std::string> state;      // e.g. AUTHORIZED
  std::optional<std::int64_t> since_ms;  // updated at or after
  std::size_t limit = 50;
};

// What `klarnactl payments list` shows: a payment request or transaction with
// its link and amounts.
struct PaymentSummary {
  std::string kind;  // "payment_request" | "payment_transaction"
  std::string id;
  std::string state;
  std::optional<std::int64_t> amount;
  std::optional<std::string> currency;
  std::int64_t captured_amount = 0;
  std::int64_t refunded_amount = 0;
  std::optional<std::string> linked_id;
  std::int64_t updated_as_of_ms = 0;
};

// Outbox rows per status (metrics, klarnactl status).
struct OutboxCounts {
  std::int64_t pending = 0, in_flight = 0, succeeded = 0, failed = 0;
};

// Counts for klarnactl status/top: payments per kind and state, outbox calls
// per operation and status, commands per type and status.
struct CountRow {
  std::string group;   // payments: kind; calls: operation; commands: type
  std::string status;  // state / status
  std::int64_t count = 0;
};
struct Overview {
  std::vector<CountRow> payments, calls, commands;
  std::int64_t dead_letters = 0;  // poison messages recorded
};

// Deadlines are state (docs/klarna/DESIGN.md, principle 7): what is due and
// what was missed, for metrics.
struct DeadlineSummary {
  std::int64_t calls_pending = 0;                   // outbox rows not yet done
  std::int64_t calls_overdue = 0;                   // not done, past their due_by
  std::int64_t calls_at_risk = 0;                   // not done, due_by within the horizon
  std::int64_t calls_failed = 0;                    // failed: an operator must look
  std::optional<std::int64_t> nearest_call_due_ms;  // earliest due_by not done
  std::int64_t dispute_deadlines_soon = 0;          // open disputes, a deadline within the horizon
  std::int64_t dispute_deadlines_passed = 0;        // open disputes, a deadline already passed
};

}  // namespace kpay::storage
