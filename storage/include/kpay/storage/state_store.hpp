// The processor's durable state: payment entities, the event inbox, the
// transition history, the outbox of follow-up calls, the queue of messages to
// publish, and the Kafka offsets consumed. One SQLite file (WAL,
// synchronous=FULL, see sqlite.hpp), schema "state" with versioned migrations.
//
// The interface is narrow on purpose: rows in, rows out, no SQL outside this
// file, so the store could move to another database (docs/klarna/DESIGN.md,
// "Scaling"). States are stored as Klarna's names (TEXT); the processor owns
// their meaning.
//
// Transactions are the caller's: the processor opens one `storage::Transaction`
// per batch around all the writes below. Methods throw SqliteError on storage
// failure; the caller rolls the whole batch back and retries it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kpay/storage/migrations.hpp"
#include "kpay/storage/sqlite.hpp"

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
  std::string policy;        // pause | continue (processor.on_offset_gap when detected)
  std::string status = "open";  // open | accepted
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
  std::int32_t generation = 2;        // payment requests
  std::string framework = "current";  // disputes
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

struct DisputeRow {
  std::string id;
  std::string framework;             // "current" | "legacy"
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
// (StateStore::set_trace_context).
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
  std::string operation;  // "final_authorization" | "confirm" | "capture" | "read_…" | …
  std::string entity_id;
  std::string idempotency_key;
  std::string request_body;  // JSON body of the call ("" for GET/DELETE)
  // Path/header parameter the call needs (confirmation token, network session
  // token). Sensitive: never logged, never published, never listed.
  std::string call_token;
  std::optional<std::int64_t> due_by_ms;  // deadline (final authorization: 60 min)
  std::string status = "pending";         // pending | in_flight | succeeded | failed
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

// v11: one attempt of a Klarna call, as the worker recorded its answer.
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
};

// What the worker records about one attempt.
struct OutboxUpdate {
  std::int64_t id = 0;
  std::string status;  // pending (retry later) | succeeded | failed
  std::int64_t next_attempt_at_ms = 0;
  std::int64_t now_ms = 0;
  std::optional<std::int64_t> last_status;
  std::optional<std::string> last_error;
  std::optional<std::string> result;
};

// A downstream command (klarna.commands), v4: the inbox entry (command_id is
// the key, body_hash tells a resend from a reuse of the id) and where it
// stands. `key` is the Kafka key its results are published under.
struct CommandRow {
  std::string command_id;
  std::string type;  // register | authorize | capture | refund | void | cancel
  std::string key;
  std::string body_hash;
  std::string status;  // accepted | rejected | succeeded | failed
  std::optional<std::string> reason;
  std::optional<std::string> entity_id;  // the transaction / request it acts on
  std::optional<std::int64_t> outbox_id;
  std::int64_t created_at_ms = 0;
  std::int64_t updated_at_ms = 0;

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

// The migrations of schema "state", oldest first (tests build older databases
// from a prefix of them).
std::span<const Migration> state_migrations();

class StateStore {
 public:
  // Opens (creating if needed) and migrates. Throws SchemaTooNewError for a
  // database written by a newer binary, SqliteError when it cannot be opened.
  // `cache_mib`: SQLite page cache for this connection (counts towards RSS).
  explicit StateStore(const std::string& path, bool read_only = false, int cache_mib = 32);
  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  Database& database();
  int schema_version();

  // false when event_id was seen before (the duplicate check).
  bool insert_inbox(const InboxEntry& e);
  // The first delivery of an event_id (digest empty when recorded before v8).
  std::optional<InboxEntry> find_inbox(const std::string& event_id);

  // ---- offset gaps and conflicts (v8, state_store_gaps.cpp) ----
  // Records a gap once per (topic, partition, expected): the row as stored
  // and whether this call inserted it (false: detected before).
  std::pair<OffsetGapRow, bool> record_gap(const OffsetGapRow& g);
  std::optional<OffsetGapRow> find_gap(std::int64_t id);
  // By status ("" = all), newest first.
  std::vector<OffsetGapRow> list_gaps(const std::string& status, std::size_t limit);
  // The open gap that holds a partition, if any (policy pause).
  std::optional<OffsetGapRow> open_gap(const std::string& topic, std::int32_t partition);
  std::int64_t count_open_gaps();
  // Operators: open → accepted, and the partition's stored offset set to the
  // gap's resume_at (unless consumption is already past it). false when not open.
  bool accept_gap(std::int64_t id, std::int64_t now_ms);
  void mark_gap_repaired(std::int64_t id, std::int64_t reads, std::int64_t now_ms);
  // Payment requests, transactions and disputes with a history row on this
  // partition, with their state (the processor judges which are final).
  std::vector<RepairTarget> repair_targets(const std::string& topic, std::int32_t partition,
                                           std::size_t limit = 100000);
  // Sets the next offset (even backwards: a recreated log starts again at 0).
  void reset_offset(const std::string& topic, std::int32_t partition, std::int64_t next_offset);
  void insert_conflict(const EventConflictRow& c);
  std::vector<EventConflictRow> list_conflicts(std::size_t limit);

  std::optional<PaymentRequestRow> find_request(const std::string& id);
  void save_request(const PaymentRequestRow& r);
  std::optional<PaymentTransactionRow> find_transaction(const std::string& id);
  void save_transaction(const PaymentTransactionRow& t);
  // The request whose state_context named this transaction, if any.
  std::optional<std::string> request_for_transaction(const std::string& transaction_id);
  // The transaction whose events named this request, if any.
  std::optional<std::string> transaction_for_request(const std::string& request_id);
  // false when a sub-record with this kind and id exists already.
  bool insert_sub_record(const SubRecordRow& r);
  std::vector<SubRecordRow> sub_records(const std::string& transaction_id);

  std::optional<DisputeRow> find_dispute(const std::string& id);
  void save_dispute(const DisputeRow& d);
  // v5: deadline history, and the warnings the deadline watcher sent.
  // false when this (dispute, kind, event) is recorded already.
  bool insert_dispute_deadline(const DisputeDeadlineRow& d);
  std::vector<DisputeDeadlineRow> dispute_deadlines(const std::string& dispute_id);  // oldest first
  // Disputes not CLOSED (state unknown included), by id; at most `limit`.
  std::vector<DisputeRow> open_disputes(std::size_t limit = 1000000);
  // Every dispute, newest state first (klarnactl disputes list).
  std::vector<DisputeRow> list_disputes(std::size_t limit);
  // Records that the warning `stage` ("window" | "passed") for this deadline
  // value was sent; false when it was before (one warning per value and stage).
  bool mark_deadline_warning(const std::string& dispute_id, const std::string& kind,
                             std::int64_t deadline_ms, const std::string& stage,
                             std::int64_t now_ms);
  std::optional<RecordRow> find_record(const std::string& kind, const std::string& id);
  void save_record(const RecordRow& r);

  // v11: the trace of what is being applied or recorded now. insert_outbox
  // and enqueue_publish give its traceparent to rows that carry none;
  // append_history gives all of it to history rows that carry none. Set by
  // the batch applier per message and by the outbox worker per answer, so
  // every row a message or an answer causes, wherever it is written, carries
  // its trace. Cleared by a default TraceContext.
  void set_trace_context(TraceContext c);
  const TraceContext& trace_context() const;

  void append_history(const HistoryRow& h);
  // Every history row of an entity, oldest first.
  std::vector<HistoryRow> history(const std::string& entity_id);
  // The per-entity history index is filled in bulk: when more than
  // `max_unindexed` rows were appended since the last fill, index them now
  // (in the caller's transaction). history() reads the unindexed tail by a
  // scan, so the bound is also what one lookup may scan. true when it filled.
  bool index_history_if_due(std::int64_t max_unindexed = kHistoryIndexEvery);
  static constexpr std::int64_t kHistoryIndexEvery = 50000;

  // false when a row with this idempotency key exists already.
  bool insert_outbox(const OutboxRow& o);
  std::vector<OutboxRow> outbox(const std::string& entity_id);  // call_token not read back
  std::optional<OutboxRow> find_outbox(std::int64_t id);        // call_token not read back
  // Due pending rows (next_attempt_at_ms <= now), oldest first, marked
  // in_flight with attempts+1, returned WITH call_token (for sending only).
  std::vector<OutboxRow> claim_due_outbox(std::int64_t now_ms, std::size_t limit);
  // At start-up: rows left in_flight by a process that died become pending
  // (due now). Returns how many.
  std::int64_t release_in_flight_outbox(std::int64_t now_ms);
  void update_outbox(const OutboxUpdate& u);
  // v11 (state_store_traces.cpp): one attempt's answer, in the transaction
  // that records it (a second record of the same attempt replaces it).
  void insert_call_attempt(const CallAttemptRow& a);
  std::vector<CallAttemptRow> call_attempts(std::int64_t outbox_id);
  // klarnactl payments trace: the commands that acted on an entity (oldest
  // first) and the disputes of a transaction.
  std::vector<CommandRow> commands_for_entity(const std::string& entity_id);
  std::vector<std::string> disputes_of_transaction(const std::string& transaction_id);
  // Operators: failed → pending, due now. false when the row is not failed.
  bool retry_outbox(std::int64_t id, std::int64_t now_ms);
  // Listing (klarnactl actions): by status ("" = all), newest first.
  std::vector<OutboxRow> list_outbox(const std::string& status, std::size_t limit);
  // Not done and past (or within `horizon_ms` of) their due_by, nearest first.
  std::vector<OutboxRow> outbox_due_within(std::int64_t now_ms, std::int64_t horizon_ms,
                                           std::size_t limit);
  // The earliest next_attempt_at_ms of a pending row (the worker sleeps until).
  std::optional<std::int64_t> next_outbox_attempt();
  struct OutboxCounts {
    std::int64_t pending = 0, in_flight = 0, succeeded = 0, failed = 0;
  };
  OutboxCounts outbox_counts();

  // ---- downstream commands (v4) ----
  // false when the command_id exists already (then find_command tells a
  // resend from a reused id).
  bool insert_command(const CommandRow& c);
  std::optional<CommandRow> find_command(const std::string& command_id);
  // The command's final status (succeeded | failed) and reason.
  void finish_command(const std::string& command_id, const std::string& status,
                      const std::optional<std::string>& reason, std::int64_t now_ms);
  // Money accepted but not executed: the sum of `amount` over pending and
  // in_flight outbox rows of `operation` for the transaction (and, when given,
  // for one capture).
  std::int64_t pending_outbox_amount(const std::string& transaction_id,
                                     const std::string& operation,
                                     const std::optional<std::string>& capture_id = std::nullopt);
  // One capture / refund / chargeback by its own id (a refund command names
  // only the capture).
  std::optional<SubRecordRow> find_sub_record(const std::string& kind, const std::string& id);
  // The newest context registered for a payment request, by its id or (when
  // Klarna had none yet) its reference.
  void save_payment_context(const PaymentContextRow& c);
  std::optional<PaymentContextRow> find_payment_context(
      const std::string& payment_request_id, const std::optional<std::string>& reference);
  // An authorize answered STEP_UP_REQUIRED: its context now belongs to the
  // payment request Klarna created. false when the command stored none.
  bool attach_payment_context(const std::string& command_id, const std::string& payment_request_id);

  std::int64_t enqueue_publish(const PublishRow& p);
  void delete_published(std::int64_t seq);
  std::vector<PublishRow> pending_publications();

  void insert_poison(const PoisonRow& p);

  // Next offset to consume per partition, written in the batch transaction:
  // on assignment the consumer resumes from here, so the store and its offsets
  // can never disagree (Kafka's committed offsets are kept in step for lag).
  void save_offset(const std::string& topic, std::int32_t partition, std::int64_t next_offset);
  std::optional<std::int64_t> stored_offset(const std::string& topic, std::int32_t partition);

  // Read side (klarnactl).
  // Counts for klarnactl status/top (state_store_overview.cpp): payments per
  // kind and state, outbox calls per operation and status, commands per type
  // and status, dead letters recorded.
  struct CountRow {
    std::string group;   // payments: kind; calls: operation; commands: type
    std::string status;  // state / status
    std::int64_t count = 0;
  };
  struct Overview {
    std::vector<CountRow> payments, calls, commands;
    std::int64_t dead_letters = 0;  // poison messages recorded
  };
  Overview overview();
  std::vector<CountRow> command_counts();  // commands per type and status
  std::vector<PaymentSummary> list_payments(const PaymentFilter& f);

  // Settlement webhooks (state_store_settlements.cpp): one row per event_id
  // (a second delivery changes nothing); newest first.
  bool insert_settlement_event(const SettlementEventRow& r);
  std::vector<SettlementEventRow> settlement_events(std::size_t limit);

  // Dead letters (state_store_dead_letters.cpp). Poison messages newest first
  // (values included only by find_poison).
  std::vector<DeadLetterRow> list_poison(std::size_t limit);
  std::optional<DeadLetterRow> find_poison(const std::string& topic, std::int32_t partition,
                                           std::int64_t offset);
  std::optional<ReplayRow> find_replay(const std::string& topic, std::int32_t partition,
                                       std::int64_t offset);
  std::vector<ReplayRow> replays();
  // Records one more replay (in the caller's transaction, if any).
  void record_replay(const ReplayRow& r);
  // Takes back a replay recorded just before its message could not be
  // produced: the row as it was before (`before`), or none.
  void restore_replay(const std::optional<ReplayRow>& before, const std::string& topic,
                      std::int32_t partition, std::int64_t offset);
  // A poison message with an envelope claimed its event_id in the inbox; a
  // replay must be judged as new, so that claim (and only that one: not an
  // event applied from another delivery) is released. True when released.
  bool release_poison_claim(const DeadLetterRow& p);

  // Deadlines are state (docs/klarna/DESIGN.md, principle 7): what is due and what
  // was missed, for metrics. `horizon_ms`: how far ahead counts as "due soon".
  struct DeadlineSummary {
    std::int64_t calls_pending = 0;                   // outbox rows not yet done
    std::int64_t calls_overdue = 0;                   // not done, past their due_by
    std::int64_t calls_at_risk = 0;                   // not done, due_by within the horizon
    std::int64_t calls_failed = 0;                    // failed: an operator must look
    std::optional<std::int64_t> nearest_call_due_ms;  // earliest due_by not done
    std::int64_t dispute_deadlines_soon = 0;    // open disputes, a deadline within the horizon
    std::int64_t dispute_deadlines_passed = 0;  // open disputes, a deadline already passed
  };
  // `call_horizon_ms`: how close to its due_by a call counts as at risk.
  DeadlineSummary deadlines(std::int64_t now_ms, std::int64_t horizon_ms,
                            std::int64_t call_horizon_ms = 10 * 60 * 1000);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kpay::storage
