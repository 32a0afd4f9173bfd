// storage::Store on PostgreSQL: one connection, the operations of PgState
// (pg_state.hpp), claims with leases (pg_leases.hpp). The contract is
// storage/README.md's; what is PostgreSQL's own:
//
// - A write transaction is REPEATABLE READ: two processors that change one
//   row (or insert one key) at once are serialised by the row lock, and the
//   second fails with a serialization failure (transient: its batch is rolled
//   back and retried, and then sees the first's commit) instead of
//   overwriting it with what it read before. BEGIN goes with the unit's first
//   statement: a unit that begins with the outbox claim (the outbox worker's,
//   the claim alone) is READ COMMITTED instead, the level FOR UPDATE SKIP
//   LOCKED is made for. There a due row another processor claimed and
//   committed after the claim's snapshot is checked again in its committed
//   state (now in_flight: passed over), where REPEATABLE READ fails the whole
//   claim with a serialization failure (40001).
// - A lost connection is re-established on the next call outside a
//   transaction (inside one, the call fails transiently: the transaction is
//   gone with the connection).
// - `owner` names this processor instance: its outbox claims and
//   publish-queue claims carry it; release_in_flight_outbox releases only its
//   own claims (another processor's are taken over after their lease).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "kpay/storage/postgres.hpp"
#include "kpay/storage/store.hpp"
#include "postgres/pg.hpp"
#include "postgres/pg_settlement_ledger.hpp"
#include "postgres/pg_state.hpp"

namespace kpay::storage::pg {

class PgStore final : public Store {
 public:
  PgStore(Connection c, std::string owner, std::chrono::milliseconds lease);

  // UnitOfWork
  std::unique_ptr<TransactionScope> begin_write() override;
  // Session-level advisory locks on the keys, taken before BEGIN
  // (pg_key_locks.hpp).
  std::unique_ptr<TransactionScope> begin_write_serialised(
      std::span<const std::string> keys) override;

  // InboxStore
  bool insert_inbox(const InboxEntry& e) override;
  std::optional<InboxEntry> find_inbox(const std::string& event_id) override;
  void insert_conflict(const EventConflictRow& c) override;
  std::vector<EventConflictRow> list_conflicts(std::size_t limit) override;
  void append_history(const HistoryRow& h) override;
  std::vector<HistoryRow> history(const std::string& entity_id) override;
  bool index_history_if_due(std::int64_t) override { return false; }

  // EntityStore
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
  bool insert_dispute_deadline(const DisputeDeadlineRow& d) override;
  std::vector<DisputeDeadlineRow> dispute_deadlines(const std::string& dispute_id) override;
  std::vector<DisputeRow> open_disputes_after(const std::optional<std::string>& after_id,
                                              std::size_t limit) override;
  bool mark_deadline_warning(const std::string& dispute_id, const std::string& kind,
                             std::int64_t deadline_ms, const std::string& stage,
                             std::int64_t now_ms) override;
  std::vector<bool> deadline_warnings_marked(std::span<const DeadlineWarningKey> keys) override;
  std::optional<RecordRow> find_record(const std::string& kind, const std::string& id) override;
  void save_record(const RecordRow& r) override;
  bool insert_settlement_event(const SettlementEventRow& r) override;
  std::vector<SettlementEventRow> settlement_events(std::size_t limit) override;

  // OutboxStore
  bool insert_outbox(const OutboxRow& o) override;
  std::vector<OutboxRow> outbox(const std::string& entity_id) override;
  std::optional<OutboxRow> find_outbox(std::int64_t id) override;
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
  OutboxCounts outbox_counts() override;
  std::int64_t pending_outbox_amount(const std::string& transaction_id, OutboxOperation operation,
                                     const std::optional<std::string>& capture_id) override;
  DeadlineSummary deadlines(std::int64_t now_ms, std::int64_t horizon_ms,
                            std::int64_t call_horizon_ms) override;

  // PublishQueue: pending_publications() claims what it returns for this
  // owner (rows of another owner are skipped while its lease holds).
  std::int64_t enqueue_publish(const PublishRow& p) override;

  // ---- CallAttempts (v11, pg_state_traces.cpp) ----
  void insert_call_attempt(const CallAttemptRow& a) override;
  std::vector<CallAttemptRow> call_attempts(std::int64_t outbox_id) override;
  void delete_published(std::int64_t seq) override;
  std::vector<PublishRow> pending_publications() override;
  std::vector<PublishRow> take_over_publications() override;

  // JobLeases: job_leases rows under this store's owner, for the lease
  // (pg_leases.hpp; the server's clock).
  bool hold_job(const std::string& job) override;

  // OffsetStore
  std::map<TopicPartition, std::int64_t> fence_offsets(
      std::span<const TopicPartition> partitions) override;
  // Its own statement (autocommit), outside the unit of work.
  std::map<TopicPartition, std::int64_t> committed_offsets(
      std::span<const TopicPartition> partitions) override;
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
                                           std::size_t limit) override;

  // CommandLog
  bool insert_command(const CommandRow& c) override;
  std::optional<CommandRow> find_command(const std::string& command_id) override;
  void finish_command(const std::string& command_id, CommandStatus status,
                      const std::optional<std::string>& reason, std::int64_t now_ms) override;
  std::vector<CountRow> command_counts() override;
  void save_payment_context(const PaymentContextRow& c) override;
  std::optional<PaymentContextRow> find_payment_context(
      const std::string& payment_request_id, const std::optional<std::string>& reference) override;
  bool attach_payment_context(const std::string& command_id,
                              const std::string& payment_request_id) override;

  // AuditTrail
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

  // DeadLetterStore
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

  // ReadModel
  int schema_version() override;
  Overview overview() override;
  std::vector<PaymentSummary> list_payments(const PaymentFilter& f) override;
  std::vector<DisputeRow> list_disputes(std::size_t limit) override;
  std::vector<CommandRow> commands_for_entity(const std::string& entity_id) override;
  std::vector<std::string> disputes_of_transaction(const std::string& transaction_id) override;

  // Settlements and findings (pg_settlement_ledger.hpp), on this connection.
  SettlementLedger* settlement_ledger() override { return &ledger_; }

 private:
  class Scope;
  // The state on a live connection: reconnects first when the connection
  // was lost and no transaction is open; inside a unit of work whose BEGIN
  // is not sent yet, sends it, at `first`.
  PgState& live(Isolation first = Isolation::repeatable_read);
  Connection conn_;
  PgState state_;
  PgSettlementLedger ledger_{[this]() -> Connection& { return live().connection(); }};
  std::string owner_;
  std::chrono::milliseconds lease_;
  bool in_transaction_ = false;    // a unit of work is open (begin_write)
  std::optional<Transaction> tx_;  // its transaction, from its first statement
};

}  // namespace kpay::storage::pg
