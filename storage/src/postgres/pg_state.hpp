// The state store's operations on PostgreSQL: the same rows and meanings as
// StateStore (state_store.hpp) over the schema of pg_schema.cpp, on one
// Connection. Transactions are the caller's (pg::Transaction), as with
// SQLite; every method throws PgError (transient() says whether a retry of the
// whole transaction can succeed). The store interfaces' PostgreSQL
// implementations are built on this.
//
// What differs from SQLite, for several processors on one database:
// - outbox claims carry the claimer's name and a lease (pg_leases.hpp);
// - the publish queue is drained under claims too (claim_publications);
// - save_offset never moves an offset back (as SQLite), reset_offset does.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "kpay/storage/audit_trail.hpp"
#include "kpay/storage/publish_queue.hpp"
#include "kpay/storage/rows.hpp"
#include "kpay/storage/status.hpp"
#include "postgres/pg.hpp"
#include "postgres/pg_leases.hpp"

namespace kpay::storage::pg {

// The statement of PgState::open_disputes_after (after an id when `after`);
// for tests of its plan.
std::string open_disputes_sql(bool after);

class PgState {
 public:
  explicit PgState(Connection& c) : c_(c) {}
  Connection& connection() { return c_; }

  // ---- inbox, entities, history (pg_state_entities.cpp) ----
  bool insert_inbox(const InboxEntry& e);
  std::optional<InboxEntry> find_inbox(const std::string& event_id);
  std::optional<PaymentRequestRow> find_request(const std::string& id);
  void save_request(const PaymentRequestRow& r);
  std::optional<PaymentTransactionRow> find_transaction(const std::string& id);
  void save_transaction(const PaymentTransactionRow& t);
  std::optional<std::string> request_for_transaction(const std::string& transaction_id);
  std::optional<std::string> transaction_for_request(const std::string& request_id);
  bool insert_sub_record(const SubRecordRow& r);
  std::vector<SubRecordRow> sub_records(const std::string& transaction_id);
  std::optional<SubRecordRow> find_sub_record(const std::string& kind, const std::string& id);
  std::optional<RecordRow> find_record(const std::string& kind, const std::string& id);
  void save_record(const RecordRow& r);
  void append_history(const HistoryRow& h);
  std::vector<HistoryRow> history(const std::string& entity_id);
  bool insert_settlement_event(const SettlementEventRow& r);
  std::vector<SettlementEventRow> settlement_events(std::size_t limit);

  // ---- disputes (pg_state_disputes.cpp) ----
  std::optional<DisputeRow> find_dispute(const std::string& id);
  void save_dispute(const DisputeRow& d);
  bool insert_dispute_deadline(const DisputeDeadlineRow& d);
  std::vector<DisputeDeadlineRow> dispute_deadlines(const std::string& dispute_id);
  std::vector<DisputeRow> open_disputes_after(const std::optional<std::string>& after_id,
                                              std::size_t limit);
  std::vector<DisputeRow> list_disputes(std::size_t limit);
  bool mark_deadline_warning(const std::string& dispute_id, const std::string& kind,
                             std::int64_t deadline_ms, const std::string& stage,
                             std::int64_t now_ms);
  std::vector<bool> deadline_warnings_marked(std::span<const DeadlineWarningKey> keys);

  // ---- outbox (pg_state_outbox.cpp; claims in pg_leases.cpp) ----
  bool insert_outbox(const OutboxRow& o);
  std::vector<OutboxRow> outbox(const std::string& entity_id);
  std::optional<OutboxRow> find_outbox(std::int64_t id);
  bool retry_outbox(std::int64_t id, std::int64_t now_ms);
  std::vector<OutboxRow> list_outbox(std::optional<OutboxStatus> status, std::size_t limit);
  std::optional<std::int64_t> next_outbox_attempt();
  std::vector<OutboxRow> outbox_due_within(std::int64_t now_ms, std::int64_t horizon_ms,
                                           std::size_t limit);
  OutboxCounts outbox_counts();
  std::int64_t pending_outbox_amount(const std::string& transaction_id, OutboxOperation operation,
                                     const std::optional<std::string>& capture_id = std::nullopt);
  DeadlineSummary deadlines(std::int64_t now_ms, std::int64_t horizon_ms,
                            std::int64_t call_horizon_ms = 10 * 60 * 1000);

  // ---- publish queue, offsets, poison messages (pg_state_queue.cpp) ----
  // Unclaimed (a copy, a tool), or claimed for `who` from the start: the
  // processor that enqueues a row publishes it, and no other takes it while
  // its lease holds.
  std::int64_t enqueue_publish(const PublishRow& p);
  std::int64_t enqueue_publish(const PublishRow& p, const Claimant& who);
  void delete_published(std::int64_t seq);
  std::vector<PublishRow> pending_publications();
  // The rows `who` may publish now, by seq, claimed for it: unclaimed ones,
  // its own, and those whose claimer's lease ended (a starting processor's
  // drain). In the caller's transaction (it takes a transaction-scoped lock,
  // so two claimers never interleave).
  std::vector<PublishRow> claim_publications(const Claimant& who);
  // Renews the lease of `who`'s own rows, then claims (returns) the
  // unclaimed rows and those of another claimer whose lease ended. In the
  // caller's transaction, under the same lock.
  std::vector<PublishRow> take_over_publications(const Claimant& who);
  void insert_poison(const PoisonRow& p);
  void save_offset(const std::string& topic, std::int32_t partition, std::int64_t next_offset);
  void reset_offset(const std::string& topic, std::int32_t partition, std::int64_t next_offset);
  std::optional<std::int64_t> stored_offset(const std::string& topic, std::int32_t partition);
  // The stored offsets of `partitions`, their rows locked until the
  // transaction ends (OffsetStore::fence_offsets): one statement.
  std::map<TopicPartition, std::int64_t> fence_offsets(std::span<const TopicPartition> partitions);
  // The same without the lock (OffsetStore::committed_offsets).
  std::map<TopicPartition, std::int64_t> committed_offsets(
      std::span<const TopicPartition> partitions);

  // ---- downstream commands (pg_state_commands.cpp) ----
  bool insert_command(const CommandRow& c);
  std::optional<CommandRow> find_command(const std::string& command_id);
  void finish_command(const std::string& command_id, CommandStatus status,
                      const std::optional<std::string>& reason, std::int64_t now_ms);
  void save_payment_context(const PaymentContextRow& c);
  std::optional<PaymentContextRow> find_payment_context(
      const std::string& payment_request_id, const std::optional<std::string>& reference);
  bool attach_payment_context(const std::string& command_id, const std::string& payment_request_id);
  Overview overview();
  std::vector<CountRow> command_counts();

  // ---- offset gaps and conflicts (pg_state_gaps.cpp) ----
  std::pair<OffsetGapRow, bool> record_gap(const OffsetGapRow& g);
  std::optional<OffsetGapRow> find_gap(std::int64_t id);
  std::vector<OffsetGapRow> list_gaps(std::optional<GapStatus> status, std::size_t limit);
  std::optional<OffsetGapRow> open_gap(const std::string& topic, std::int32_t partition);
  std::int64_t count_open_gaps();
  // In a transaction of its own, or (own_transaction false) the caller's.
  bool accept_gap(std::int64_t id, std::int64_t now_ms, bool own_transaction = true);
  void mark_gap_repaired(std::int64_t id, std::int64_t reads, std::int64_t now_ms);
  std::vector<RepairTarget> repair_targets(const std::string& topic, std::int32_t partition,
                                           std::size_t limit = 100000);
  void insert_conflict(const EventConflictRow& c);
  std::vector<EventConflictRow> list_conflicts(std::size_t limit);

  // ---- audit trail (pg_state_audit.cpp) ----
  std::int64_t append_audit(const AuditEvent& e);
  std::vector<AuditEvent> list_audit(const AuditQuery& q);
  std::vector<AuditEvent> audit_of_outbox(std::int64_t outbox_id);
  void add_sender_day_total(const std::string& sender, const std::string& day,
                            const std::string& currency, std::int64_t amount);
  std::optional<std::string> sender_of(const std::string& command_id);
  std::int64_t spent(const std::string& sender, const std::string& currency,
                     const std::string& day);
  std::int64_t audit_published_through();
  // Until the transaction ends: no new audit row, no other lock of the trail;
  // waits for the transactions that wrote rows to end.
  void lock_audit_trail();
  void set_audit_published_through(std::int64_t seq);

  // ---- dead letters, payments list (pg_state_dead_letters.cpp) ----
  std::vector<DeadLetterRow> list_poison(std::size_t limit);
  std::optional<DeadLetterRow> find_poison(const std::string& topic, std::int32_t partition,
                                           std::int64_t offset);
  std::optional<ReplayRow> find_replay(const std::string& topic, std::int32_t partition,
                                       std::int64_t offset);
  std::vector<ReplayRow> replays();
  void record_replay(const ReplayRow& r);
  void restore_replay(const std::optional<ReplayRow>& before, const std::string& topic,
                      std::int32_t partition, std::int64_t offset);
  bool release_poison_claim(const DeadLetterRow& p);
  std::vector<PaymentSummary> list_payments(const PaymentFilter& f);

  // ---- traces: call attempts, a payment's commands and disputes (v11,
  // pg_state_traces.cpp) ----
  void insert_call_attempt(const CallAttemptRow& a);
  std::vector<CallAttemptRow> call_attempts(std::int64_t outbox_id);
  std::vector<CommandRow> commands_for_entity(const std::string& entity_id);
  std::vector<std::string> disputes_of_transaction(const std::string& transaction_id);

 private:
  // A publish_queue seq for a row written with Connection::write(): taken
  // from a block reserved from the table's sequence (one round trip per
  // kSeqBlock rows). A block serves one transaction: what it leaves is
  // skipped, so seqs follow the order rows were written in, as nextval does.
  std::int64_t next_publish_seq();
  static constexpr int kSeqBlock = 64;
  Connection& c_;
  std::vector<std::int64_t> seqs_;  // reserved, descending: the next is last
  std::int64_t seqs_of_transaction_ = -1;
  std::string seq_name_;  // publish_queue's seq sequence
};

}  // namespace kpay::storage::pg
