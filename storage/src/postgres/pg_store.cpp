// storage::Store on PostgreSQL (pg_store.hpp): the transaction scope, the
// connection's upkeep, and each interface method on PgState.
#include "postgres/pg_store.hpp"

#include <chrono>

#include "postgres/pg_key_locks.hpp"
#include "postgres/pg_leases.hpp"
#include "postgres/pg_schema.hpp"

namespace kpay::storage::pg {

// The unit of work. The keys (begin_write_serialised) are taken before BEGIN
// and released after the transaction ended (pg_key_locks.hpp); BEGIN is sent
// with the first statement (live()), so the snapshot follows the keys.
class PgStore::Scope final : public TransactionScope {
 public:
  Scope(PgStore& s, std::span<const std::string> keys) : s_(s), keys_(s.conn_, keys) {
    s_.in_transaction_ = true;
  }
  ~Scope() override {
    s_.tx_.reset();  // rolled back unless committed; then keys_ lets go
    s_.in_transaction_ = false;
  }
  void commit() override {
    if (s_.tx_) s_.tx_->commit();  // else nothing ran: nothing to commit
  }

 private:
  PgStore& s_;
  KeyLocks keys_;
};

PgStore::PgStore(Connection c, std::string owner, std::chrono::milliseconds lease)
    : conn_(std::move(c)), state_(conn_), owner_(std::move(owner)), lease_(lease) {}

PgState& PgStore::live(Isolation first) {
  if (!conn_.ok()) {
    if (tx_) {
      throw PgError("postgresql: the connection was lost inside a transaction", "08006", true);
    }
    conn_.reconnect();
  }
  if (in_transaction_ && !tx_) tx_.emplace(conn_, first);
  return state_;
}

std::unique_ptr<TransactionScope> PgStore::begin_write() {
  if (in_transaction_) throw StoreError("a write transaction is open on this store already", false);
  live();  // reconnects if need be; no transaction yet
  return std::make_unique<Scope>(*this, std::span<const std::string>());
}

std::unique_ptr<TransactionScope> PgStore::begin_write_serialised(
    std::span<const std::string> keys) {
  if (in_transaction_) throw StoreError("a write transaction is open on this store already", false);
  live();
  return std::make_unique<Scope>(*this, keys);
}

// ---- InboxStore ----
bool PgStore::insert_inbox(const InboxEntry& e) {
  return live().insert_inbox(e);
}
std::optional<InboxEntry> PgStore::find_inbox(const std::string& event_id) {
  return live().find_inbox(event_id);
}
void PgStore::insert_conflict(const EventConflictRow& c) {
  live().insert_conflict(c);
}
std::vector<EventConflictRow> PgStore::list_conflicts(std::size_t limit) {
  return live().list_conflicts(limit);
}
// The trace context (Store::set_trace_context) fills what a row leaves
// empty, as StateStore does.
void PgStore::append_history(const HistoryRow& h) {
  const TraceContext& t = trace_context();
  HistoryRow row = h;
  if (row.traceparent.empty()) row.traceparent = t.traceparent;
  if (row.received_at.empty()) row.received_at = t.received_at;
  if (!row.kafka_timestamp_ms) row.kafka_timestamp_ms = t.kafka_timestamp_ms;
  if (row.recorded_at_ms == 0) {
    row.recorded_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  }
  live().append_history(row);
}
std::vector<HistoryRow> PgStore::history(const std::string& entity_id) {
  return live().history(entity_id);
}

// ---- EntityStore ----
std::optional<PaymentRequestRow> PgStore::find_request(const std::string& id) {
  return live().find_request(id);
}
void PgStore::save_request(const PaymentRequestRow& r) {
  live().save_request(r);
}
std::optional<PaymentTransactionRow> PgStore::find_transaction(const std::string& id) {
  return live().find_transaction(id);
}
void PgStore::save_transaction(const PaymentTransactionRow& t) {
  live().save_transaction(t);
}
std::optional<std::string> PgStore::request_for_transaction(const std::string& transaction_id) {
  return live().request_for_transaction(transaction_id);
}
std::optional<std::string> PgStore::transaction_for_request(const std::string& request_id) {
  return live().transaction_for_request(request_id);
}
bool PgStore::insert_sub_record(const SubRecordRow& r) {
  return live().insert_sub_record(r);
}
std::vector<SubRecordRow> PgStore::sub_records(const std::string& transaction_id) {
  return live().sub_records(transaction_id);
}
std::optional<SubRecordRow> PgStore::find_sub_record(const std::string& kind,
                                                     const std::string& id) {
  return live().find_sub_record(kind, id);
}
std::optional<DisputeRow> PgStore::find_dispute(const std::string& id) {
  return live().find_dispute(id);
}
void PgStore::save_dispute(const DisputeRow& d) {
  live().save_dispute(d);
}
bool PgStore::insert_dispute_deadline(const DisputeDeadlineRow& d) {
  return live().insert_dispute_deadline(d);
}
std::vector<DisputeDeadlineRow> PgStore::dispute_deadlines(const std::string& dispute_id) {
  return live().dispute_deadlines(dispute_id);
}
std::vector<DisputeRow> PgStore::open_disputes_after(const std::optional<std::string>& after_id,
                                                     std::size_t limit) {
  return live().open_disputes_after(after_id, limit);
}
bool PgStore::mark_deadline_warning(const std::string& dispute_id, const std::string& kind,
                                    std::int64_t deadline_ms, const std::string& stage,
                                    std::int64_t now_ms) {
  return live().mark_deadline_warning(dispute_id, kind, deadline_ms, stage, now_ms);
}
std::vector<bool> PgStore::deadline_warnings_marked(std::span<const DeadlineWarningKey> keys) {
  return live().deadline_warnings_marked(keys);
}
std::optional<RecordRow> PgStore::find_record(const std::string& kind, const std::string& id) {
  return live().find_record(kind, id);
}
void PgStore::save_record(const RecordRow& r) {
  live().save_record(r);
}
bool PgStore::insert_settlement_event(const SettlementEventRow& r) {
  return live().insert_settlement_event(r);
}
std::vector<SettlementEventRow> PgStore::settlement_events(std::size_t limit) {
  return live().settlement_events(limit);
}

// ---- OutboxStore ----
bool PgStore::insert_outbox(const OutboxRow& o) {
  if (!o.traceparent.empty() || trace_context().traceparent.empty()) {
    return live().insert_outbox(o);
  }
  OutboxRow row = o;
  row.traceparent = trace_context().traceparent;
  return live().insert_outbox(row);
}
std::vector<OutboxRow> PgStore::outbox(const std::string& entity_id) {
  return live().outbox(entity_id);
}
std::optional<OutboxRow> PgStore::find_outbox(std::int64_t id) {
  return live().find_outbox(id);
}
// A claim or answer without an owner is this store's (its instance name):
// release_in_flight_outbox then finds it. The claim runs at READ COMMITTED
// when it begins its unit of work (the outbox worker's: the claim alone) or
// has none (pg_store.hpp).
std::vector<OutboxRow> PgStore::claim_due_outbox(const OutboxClaim& claim) {
  OutboxClaim mine = claim;
  if (mine.owner.empty()) mine.owner = owner_;
  if (in_transaction_)
    return pg::claim_due_outbox(live(Isolation::read_committed).connection(), mine);
  Connection& c = live().connection();
  Transaction tx(c, Isolation::read_committed);
  auto rows = pg::claim_due_outbox(c, mine);
  tx.commit();
  return rows;
}
std::int64_t PgStore::release_in_flight_outbox(std::int64_t now_ms) {
  return pg::release_outbox_claims(live().connection(), owner_, now_ms);
}
bool PgStore::update_outbox(const OutboxUpdate& u) {
  OutboxUpdate mine = u;
  if (mine.owner.empty()) mine.owner = owner_;
  return pg::record_outbox_answer(live().connection(), mine);
}
bool PgStore::hold_outbox_claim(std::int64_t id) {
  return pg::hold_outbox_claim(live().connection(), id, owner_);
}
bool PgStore::retry_outbox(std::int64_t id, std::int64_t now_ms) {
  return live().retry_outbox(id, now_ms);
}
std::vector<OutboxRow> PgStore::list_outbox(std::optional<OutboxStatus> status, std::size_t limit) {
  return live().list_outbox(status, limit);
}
std::vector<OutboxRow> PgStore::outbox_due_within(std::int64_t now_ms, std::int64_t horizon_ms,
                                                  std::size_t limit) {
  return live().outbox_due_within(now_ms, horizon_ms, limit);
}
std::optional<std::int64_t> PgStore::next_outbox_attempt() {
  return live().next_outbox_attempt();
}
OutboxCounts PgStore::outbox_counts() {
  return live().outbox_counts();
}
std::int64_t PgStore::pending_outbox_amount(const std::string& transaction_id,
                                            OutboxOperation operation,
                                            const std::optional<std::string>& capture_id) {
  return live().pending_outbox_amount(transaction_id, operation, capture_id);
}
DeadlineSummary PgStore::deadlines(std::int64_t now_ms, std::int64_t horizon_ms,
                                   std::int64_t call_horizon_ms) {
  return live().deadlines(now_ms, horizon_ms, call_horizon_ms);
}

// ---- PublishQueue ----
// Claimed for this processor from the start (pg_state.hpp): no other
// processor's drain takes it while this one is alive to publish it.
std::int64_t PgStore::enqueue_publish(const PublishRow& p) {
  if (!p.traceparent.empty() || trace_context().traceparent.empty()) {
    return live().enqueue_publish(p, {owner_, lease_});
  }
  PublishRow row = p;
  row.traceparent = trace_context().traceparent;
  return live().enqueue_publish(row, {owner_, lease_});
}

// ---- CallAttempts ----
void PgStore::insert_call_attempt(const CallAttemptRow& a) {
  live().insert_call_attempt(a);
}
std::vector<CallAttemptRow> PgStore::call_attempts(std::int64_t outbox_id) {
  return live().call_attempts(outbox_id);
}
void PgStore::delete_published(std::int64_t seq) {
  live().delete_published(seq);
}
std::vector<PublishRow> PgStore::pending_publications() {
  PgState& s = live();
  if (in_transaction_) return s.claim_publications({owner_, lease_});
  Transaction tx(conn_);
  auto rows = s.claim_publications({owner_, lease_});
  tx.commit();
  return rows;
}
std::vector<PublishRow> PgStore::take_over_publications() {
  PgState& s = live();
  if (in_transaction_) return s.take_over_publications({owner_, lease_});
  Transaction tx(conn_);
  auto rows = s.take_over_publications({owner_, lease_});
  tx.commit();
  return rows;
}

// ---- JobLeases ----
bool PgStore::hold_job(const std::string& job) {
  return pg::hold_job(live().connection(), job, {owner_, lease_});
}

// ---- OffsetStore ----
std::map<TopicPartition, std::int64_t> PgStore::fence_offsets(
    std::span<const TopicPartition> partitions) {
  return live().fence_offsets(partitions);
}
std::map<TopicPartition, std::int64_t> PgStore::committed_offsets(
    std::span<const TopicPartition> partitions) {
  if (in_transaction_) {
    throw StoreError("committed_offsets: called inside a write transaction", false);
  }
  return live().committed_offsets(partitions);
}
void PgStore::save_offset(const std::string& topic, std::int32_t partition,
                          std::int64_t next_offset) {
  live().save_offset(topic, partition, next_offset);
}
std::optional<std::int64_t> PgStore::stored_offset(const std::string& topic,
                                                   std::int32_t partition) {
  return live().stored_offset(topic, partition);
}
void PgStore::reset_offset(const std::string& topic, std::int32_t partition,
                           std::int64_t next_offset) {
  live().reset_offset(topic, partition, next_offset);
}
std::pair<OffsetGapRow, bool> PgStore::record_gap(const OffsetGapRow& g) {
  return live().record_gap(g);
}
std::optional<OffsetGapRow> PgStore::find_gap(std::int64_t id) {
  return live().find_gap(id);
}
std::vector<OffsetGapRow> PgStore::list_gaps(std::optional<GapStatus> status, std::size_t limit) {
  return live().list_gaps(status, limit);
}
std::optional<OffsetGapRow> PgStore::open_gap(const std::string& topic, std::int32_t partition) {
  return live().open_gap(topic, partition);
}
std::int64_t PgStore::count_open_gaps() {
  return live().count_open_gaps();
}
bool PgStore::accept_gap(std::int64_t id, std::int64_t now_ms) {
  return live().accept_gap(id, now_ms, !in_transaction_);
}
void PgStore::mark_gap_repaired(std::int64_t id, std::int64_t reads, std::int64_t now_ms) {
  live().mark_gap_repaired(id, reads, now_ms);
}
std::vector<RepairTarget> PgStore::repair_targets(const std::string& topic, std::int32_t partition,
                                                  std::size_t limit) {
  return live().repair_targets(topic, partition, limit);
}

// ---- CommandLog ----
bool PgStore::insert_command(const CommandRow& c) {
  return live().insert_command(c);
}
std::optional<CommandRow> PgStore::find_command(const std::string& command_id) {
  return live().find_command(command_id);
}
void PgStore::finish_command(const std::string& command_id, CommandStatus status,
                             const std::optional<std::string>& reason, std::int64_t now_ms) {
  live().finish_command(command_id, status, reason, now_ms);
}
std::vector<CountRow> PgStore::command_counts() {
  return live().command_counts();
}
void PgStore::save_payment_context(const PaymentContextRow& c) {
  live().save_payment_context(c);
}
std::optional<PaymentContextRow> PgStore::find_payment_context(
    const std::string& payment_request_id, const std::optional<std::string>& reference) {
  return live().find_payment_context(payment_request_id, reference);
}
bool PgStore::attach_payment_context(const std::string& command_id,
                                     const std::string& payment_request_id) {
  return live().attach_payment_context(command_id, payment_request_id);
}

// ---- AuditTrail ----
std::int64_t PgStore::append_audit(const AuditEvent& e) {
  return live().append_audit(e);
}
std::vector<AuditEvent> PgStore::list_audit(const AuditQuery& q) {
  return live().list_audit(q);
}
std::vector<AuditEvent> PgStore::audit_of_outbox(std::int64_t outbox_id) {
  return live().audit_of_outbox(outbox_id);
}
void PgStore::add_sender_day_total(const std::string& sender, const std::string& day,
                                   const std::string& currency, std::int64_t amount) {
  live().add_sender_day_total(sender, day, currency, amount);
}
std::optional<std::string> PgStore::sender_of(const std::string& command_id) {
  return live().sender_of(command_id);
}

std::int64_t PgStore::spent(const std::string& sender, const std::string& currency,
                            const std::string& day) {
  return live().spent(sender, currency, day);
}
// Read in a unit of work (AuditPublisher::take, its first statement), the
// mark comes after every audit row that can still appear: the trail is locked
// against new rows (SHARE ROW EXCLUSIVE: waits for the transactions that
// wrote rows to end, and for another publisher), and the unit is READ
// COMMITTED, so the rows it then reads are all committed ones. Without it,
// with several processors, a row whose seq was taken before a higher one but
// committed after it was read would be passed over for good.
std::int64_t PgStore::audit_published_through() {
  if (!in_transaction_) return live().audit_published_through();
  PgState& s = live(Isolation::read_committed);
  s.lock_audit_trail();
  return s.audit_published_through();
}
void PgStore::set_audit_published_through(std::int64_t seq) {
  live().set_audit_published_through(seq);
}

// ---- DeadLetterStore ----
void PgStore::insert_poison(const PoisonRow& p) {
  live().insert_poison(p);
}
std::vector<DeadLetterRow> PgStore::list_poison(std::size_t limit) {
  return live().list_poison(limit);
}
std::optional<DeadLetterRow> PgStore::find_poison(const std::string& topic, std::int32_t partition,
                                                  std::int64_t offset) {
  return live().find_poison(topic, partition, offset);
}
std::optional<ReplayRow> PgStore::find_replay(const std::string& topic, std::int32_t partition,
                                              std::int64_t offset) {
  return live().find_replay(topic, partition, offset);
}
std::vector<ReplayRow> PgStore::replays() {
  return live().replays();
}
void PgStore::record_replay(const ReplayRow& r) {
  live().record_replay(r);
}
void PgStore::restore_replay(const std::optional<ReplayRow>& before, const std::string& topic,
                             std::int32_t partition, std::int64_t offset) {
  live().restore_replay(before, topic, partition, offset);
}
bool PgStore::release_poison_claim(const DeadLetterRow& p) {
  return live().release_poison_claim(p);
}

// ---- ReadModel ----
int PgStore::schema_version() {
  return pg::schema_version(live().connection());
}
Overview PgStore::overview() {
  return live().overview();
}
std::vector<PaymentSummary> PgStore::list_payments(const PaymentFilter& f) {
  return live().list_payments(f);
}
std::vector<DisputeRow> PgStore::list_disputes(std::size_t limit) {
  return live().list_disputes(limit);
}
std::vector<CommandRow> PgStore::commands_for_entity(const std::string& entity_id) {
  return live().commands_for_entity(entity_id);
}
std::vector<std::string> PgStore::disputes_of_transaction(const std::string& transaction_id) {
  return live().disputes_of_transaction(transaction_id);
}

}  // namespace kpay::storage::pg
