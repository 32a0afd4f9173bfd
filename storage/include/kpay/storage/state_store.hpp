// The processor's durable state in SQLite: payment entities, the event inbox,
// the transition history, the outbox of follow-up calls, the queue of messages
// to publish, and the Kafka offsets consumed. One SQLite file (WAL,
// synchronous=FULL, see sqlite.hpp), schema "state" with versioned migrations.
//
// StateStore implements the backend-neutral interfaces of store.hpp (their
// contract: storage/README.md); code outside storage/ uses those, never SQL.
// The rows are in rows.hpp. States are stored as Klarna's names (TEXT); the
// processor owns their meaning.
//
// Transactions are the caller's: the processor opens one WriteTransaction
// (unit_of_work.hpp) per batch around all the writes below. Methods throw
// StoreError (SqliteError) on storage failure; the caller rolls the whole
// batch back and retries it when is_transient().
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
#include "kpay/storage/store.hpp"

namespace kpay::storage {

// The migrations of schema "state", oldest first (tests build older databases
// from a prefix of them).
std::span<const Migration> state_migrations();

class StateStore final : public Store {
 public:
  // Opens (creating if needed) and migrates. Throws SchemaTooNewError for a
  // database written by a newer binary, SqliteError when it cannot be opened.
  // `cache_mib`: SQLite page cache for this connection (counts towards RSS).
  // `checkpoint_mib`: WAL size at which a commit checkpoints (disk, not RSS).
  explicit StateStore(const std::string& path, bool read_only = false, int cache_mib = 32,
                      int checkpoint_mib = 128);
  ~StateStore() override;
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  // The SQLite connection: for storage/ and tests only (no caller outside
  // storage/ runs SQL).
  Database& database();
  int schema_version() override;

  // ---- unit of work (unit_of_work.hpp) ----
  std::unique_ptr<TransactionScope> begin_write() override;

  // ---- inbox and history (inbox_store.hpp) ----
  bool insert_inbox(const InboxEntry& e) override;
  std::optional<InboxEntry> find_inbox(const std::string& event_id) override;
  void insert_conflict(const EventConflictRow& c) override;
  std::vector<EventConflictRow> list_conflicts(std::size_t limit) override;
  void append_history(const HistoryRow& h) override;
  std::vector<HistoryRow> history(const std::string& entity_id) override;
  // The per-entity history index is filled in bulk: when more than
  // `max_unindexed` rows were appended since the last fill, index them now
  // (in the caller's transaction). history() reads the unindexed tail by a
  // scan, so the bound is also what one lookup may scan. true when it filled.
  bool index_history_if_due(std::int64_t max_unindexed = kHistoryIndexEvery) override;

  // ---- offsets and offset gaps (publish_queue.hpp; v8, state_store_gaps.cpp) ----
  void save_offset(const std::string& topic, std::int32_t partition,
                   std::int64_t next_offset) override;
  std::optional<std::int64_t> stored_offset(const std::string& topic,
                                            std::int32_t partition) override;
  void reset_offset(const std::string& topic, std::int32_t partition,
                    std::int64_t next_offset) override;
  std::pair<OffsetGapRow, bool> record_gap(const OffsetGapRow& g) override;
  std::optional<OffsetGapRow> find_gap(std::int64_t id) override;
  std::vector<OffsetGapRow> list_gaps(std::optional<GapStatus> status, std::size_t limit) override;
  std::optional<OffsetGapRow> open_gap(const std::string& topic, std::int32_t partition) override;
  std::int64_t count_open_gaps() override;
  bool accept_gap(std::int64_t id, std::int64_t now_ms) override;
  void mark_gap_repaired(std::int64_t id, std::int64_t reads, std::int64_t now_ms) override;
  std::vector<RepairTarget> repair_targets(const std::string& topic, std::int32_t partition,
                                           std::size_t limit = 100000) override;

  // ---- entities (entity_store.hpp) ----
  std::optional<PaymentRequestRow> find_request(const std::string& id) override;
  void save_request(const PaymentRequestRow& r) override;
  std::optional<PaymentTransactionRow> find_transaction(const std::string& id) override;
  void save_transaction(const PaymentTransactionRow& t) override;
  std::optional<std::string> request_for_transaction(const std::string& transaction_id) override;
  std::optional<std::string> transaction_for_request(const std::string& request_id) override;
  bool insert_sub_record(const SubRecordRow& r) override;
  std::vector<SubRecordRow> sub_records(const std::string& transaction_id) override;
  std::optional<SubRecordRow> find_sub_record(const std::string& kind,
                                              const std::string& id) override;
  std::optional<DisputeRow> find_dispute(const std::string& id) override;
  void save_dispute(const DisputeRow& d) override;
  // v5: deadline history, and the warnings the deadline watcher sent.
  bool insert_dispute_deadline(const DisputeDeadlineRow& d) override;
  std::vector<DisputeDeadlineRow> dispute_deadlines(const std::string& dispute_id) override;
  std::vector<DisputeRow> open_disputes_after(const std::optional<std::string>& after_id,
                                              std::size_t limit) override;
  // For tests: SQLite's EXPLAIN QUERY PLAN of an open_disputes_after page
  // (after an id when `after`), its details joined by "; ".
  std::string open_disputes_plan(bool after);
  bool mark_deadline_warning(const std::string& dispute_id, const std::string& kind,
                             std::int64_t deadline_ms, const std::string& stage,
                             std::int64_t now_ms) override;
  std::vector<bool> deadline_warnings_marked(std::span<const DeadlineWarningKey> keys) override;
  std::optional<RecordRow> find_record(const std::string& kind, const std::string& id) override;
  void save_record(const RecordRow& r) override;
  // Settlement webhooks (state_store_settlements.cpp).
  bool insert_settlement_event(const SettlementEventRow& r) override;
  std::vector<SettlementEventRow> settlement_events(std::size_t limit) override;

  // ---- outbox (outbox_store.hpp) ----
  bool insert_outbox(const OutboxRow& o) override;
  std::vector<OutboxRow> outbox(const std::string& entity_id) override;
  std::optional<OutboxRow> find_outbox(std::int64_t id) override;
  using Store::claim_due_outbox;
  // One processor per SQLite file: `owner` is not stored; a lease (> 0) is
  // measured from the row's updated_at_ms (set when claimed).
  std::vector<OutboxRow> claim_due_outbox(const OutboxClaim& claim) override;
  std::int64_t release_in_flight_outbox(std::int64_t now_ms) override;
  bool update_outbox(const OutboxUpdate& u) override;
  bool hold_outbox_claim(std::int64_t id) override;
  bool retry_outbox(std::int64_t id, std::int64_t now_ms) override;
  std::vector<OutboxRow> list_outbox(std::optional<OutboxStatus> status,
                                     std::size_t limit) override;
  std::vector<OutboxRow> outbox_due_within(std::int64_t now_ms, std::int64_t horizon_ms,
                                           std::size_t limit) override;
  std::optional<std::int64_t> next_outbox_attempt() override;
  using OutboxCounts = storage::OutboxCounts;
  OutboxCounts outbox_counts() override;
  std::int64_t pending_outbox_amount(
      const std::string& transaction_id, OutboxOperation operation,
      const std::optional<std::string>& capture_id = std::nullopt) override;
  using DeadlineSummary = storage::DeadlineSummary;
  DeadlineSummary deadlines(std::int64_t now_ms, std::int64_t horizon_ms,
                            std::int64_t call_horizon_ms = 10 * 60 * 1000) override;

  // ---- call attempts (call_attempts.hpp; v11, state_store_traces.cpp) ----
  void insert_call_attempt(const CallAttemptRow& a) override;
  std::vector<CallAttemptRow> call_attempts(std::int64_t outbox_id) override;

  // ---- publish queue (publish_queue.hpp) ----
  std::int64_t enqueue_publish(const PublishRow& p) override;
  void delete_published(std::int64_t seq) override;
  std::vector<PublishRow> pending_publications() override;

  // ---- downstream commands (command_log.hpp; v4, state_store_commands.cpp) ----
  bool insert_command(const CommandRow& c) override;
  std::optional<CommandRow> find_command(const std::string& command_id) override;
  void finish_command(const std::string& command_id, CommandStatus status,
                      const std::optional<std::string>& reason, std::int64_t now_ms) override;
  using CountRow = storage::CountRow;
  std::vector<CountRow> command_counts() override;
  void save_payment_context(const PaymentContextRow& c) override;
  std::optional<PaymentContextRow> find_payment_context(
      const std::string& payment_request_id, const std::optional<std::string>& reference) override;
  bool attach_payment_context(const std::string& command_id,
                              const std::string& payment_request_id) override;

  // ---- audit trail (audit_trail.hpp; v9, audit_log.cpp) ----
  std::int64_t append_audit(const AuditEvent& e) override;
  std::vector<AuditEvent> list_audit(const AuditQuery& q) override;
  std::vector<AuditEvent> audit_of_outbox(std::int64_t outbox_id) override;
  void add_sender_day_total(const std::string& sender, const std::string& day,
                            const std::string& currency, std::int64_t amount) override;
  std::optional<std::string> sender_of(const std::string& command_id) override;
  std::int64_t spent(const std::string& sender, const std::string& currency,
                     const std::string& day) override;
  std::int64_t audit_published_through() override;
  void set_audit_published_through(std::int64_t seq) override;

  // ---- dead letters (dead_letter_store.hpp; state_store_dead_letters.cpp) ----
  void insert_poison(const PoisonRow& p) override;
  std::vector<DeadLetterRow> list_poison(std::size_t limit) override;
  std::optional<DeadLetterRow> find_poison(const std::string& topic, std::int32_t partition,
                                           std::int64_t offset) override;
  std::optional<ReplayRow> find_replay(const std::string& topic, std::int32_t partition,
                                       std::int64_t offset) override;
  std::vector<ReplayRow> replays() override;
  void record_replay(const ReplayRow& r) override;
  void restore_replay(const std::optional<ReplayRow>& before, const std::string& topic,
                      std::int32_t partition, std::int64_t offset) override;
  bool release_poison_claim(const DeadLetterRow& p) override;

  // ---- read model (read_model.hpp; state_store_overview.cpp) ----
  using Overview = storage::Overview;
  Overview overview() override;
  std::vector<PaymentSummary> list_payments(const PaymentFilter& f) override;
  std::vector<DisputeRow> list_disputes(std::size_t limit) override;
  std::vector<CommandRow> commands_for_entity(const std::string& entity_id) override;
  std::vector<std::string> disputes_of_transaction(const std::string& transaction_id) override;
  SettlementLedger* settlement_ledger() override;
  std::string database_file() override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kpay::storage
