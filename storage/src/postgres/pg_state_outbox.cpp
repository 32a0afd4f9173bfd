// The outbox (but its claims: pg_leases.cpp), the publish queue, offsets and
// poison messages on PostgreSQL (pg_state.hpp); the SQLite twins are in
// state_store.cpp and state_store_commands.cpp.
#include <algorithm>
#include <chrono>

#include "postgres/pg_rows.hpp"
#include "postgres/pg_schema.hpp"
#include "postgres/pg_state.hpp"

namespace kpay::storage::pg {

namespace {

std::string select_outbox(std::string_view rest) {
  std::string sql = "SELECT ";
  sql.append(kOutboxColumns).append(" FROM outbox ").append(rest);
  return sql;
}

std::int64_t count(std::size_t n) {
  return static_cast<std::int64_t>(n);
}

}  // namespace

bool PgState::insert_outbox(const OutboxRow& o) {
  Params p =
      params(to_string(o.operation), o.entity_id, o.idempotency_key, o.request_body, o.call_token);
  p.add(o.due_by_ms)
      .add(to_string(o.status))
      .add(o.created_by_event_id)
      .add(o.account_id)
      .add(o.method);
  p.add(o.path).add(o.token_header).add(o.next_attempt_at_ms).add(o.created_at_ms);
  p.add(o.command_id).add(o.amount).add(o.capture_id).add(null_if_empty(o.traceparent));
  return c_.query(
               "INSERT INTO outbox (operation, entity_id, idempotency_key, request_body, "
               "call_token, due_by_ms, status, created_by_event_id, account_id, method, path, "
               "token_header, next_attempt_at_ms, created_at_ms, updated_at_ms, command_id, "
               "amount, capture_id, traceparent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
               "$10, $11, $12, $13, $14, $14, $15, $16, $17, $18) "
               "ON CONFLICT (idempotency_key) DO NOTHING",
               p)
             .affected() == 1;
}

std::vector<OutboxRow> PgState::outbox(const std::string& entity_id) {
  return outbox_rows(c_.query(select_outbox("WHERE entity_id = $1 ORDER BY id"), params(entity_id)),
                     false);
}

std::optional<OutboxRow> PgState::find_outbox(std::int64_t id) {
  Result r = c_.query(select_outbox("WHERE id = $1"), params(id));
  if (r.rows() == 0) return std::nullopt;
  return outbox_row(r, 0, false);
}

bool PgState::retry_outbox(std::int64_t id, std::int64_t now_ms) {
  return c_.query(
               "UPDATE outbox SET status = 'pending', next_attempt_at_ms = $2, "
               "updated_at_ms = $2 WHERE id = $1 AND status = 'failed'",
               params(id, now_ms))
             .affected() == 1;
}

std::vector<OutboxRow> PgState::list_outbox(std::optional<OutboxStatus> status, std::size_t limit) {
  std::optional<std::string> name;
  if (status) name = std::string(to_string(*status));
  return outbox_rows(
      c_.query(select_outbox("WHERE $1::TEXT IS NULL OR status = $1 ORDER BY id DESC LIMIT $2"),
               params(name, count(limit))),
      false);
}

std::optional<std::int64_t> PgState::next_outbox_attempt() {
  return c_.query("SELECT MIN(next_attempt_at_ms) FROM outbox WHERE status = 'pending'")
      .optional_int64(0, 0);
}

std::vector<OutboxRow> PgState::outbox_due_within(std::int64_t now_ms, std::int64_t horizon_ms,
                                                  std::size_t limit) {
  return outbox_rows(c_.query(select_outbox("WHERE status IN ('pending', 'in_flight', 'failed') "
                                            "AND due_by_ms IS NOT NULL AND due_by_ms < $1 "
                                            "ORDER BY due_by_ms, id LIMIT $2"),
                              params(now_ms + horizon_ms, count(limit))),
                     false);
}

OutboxCounts PgState::outbox_counts() {
  Result r = c_.query("SELECT status, COUNT(*) FROM outbox GROUP BY status");
  OutboxCounts out;
  for (int i = 0; i < r.rows(); ++i) {
    const auto status = r.view(i, 0);
    const auto n = r.int64(i, 1);
    if (status == "pending") out.pending = n;
    if (status == "in_flight") out.in_flight = n;
    if (status == "succeeded") out.succeeded = n;
    if (status == "failed") out.failed = n;
  }
  return out;
}

std::int64_t PgState::pending_outbox_amount(const std::string& transaction_id,
                                            OutboxOperation operation,
                                            const std::optional<std::string>& capture_id) {
  return c_
      .query(
          "SELECT COALESCE(SUM(amount), 0) FROM outbox WHERE entity_id = $1 AND operation = $2 "
          "AND status IN ('pending', 'in_flight') AND ($3::TEXT IS NULL OR capture_id = $3)",
          params(transaction_id, to_string(operation), capture_id))
      .int64(0, 0);
}

DeadlineSummary PgState::deadlines(std::int64_t now_ms, std::int64_t horizon_ms,
                                   std::int64_t call_horizon_ms) {
  DeadlineSummary d;
  Result calls = c_.query(
      "SELECT COUNT(*) FILTER (WHERE status <> 'failed'), "
      "COUNT(*) FILTER (WHERE due_by_ms < $1), "
      "COUNT(*) FILTER (WHERE due_by_ms >= $1 AND due_by_ms < $2), "
      "COUNT(*) FILTER (WHERE status = 'failed'), MIN(due_by_ms) "
      "FROM outbox WHERE status IN ('pending', 'in_flight', 'failed')",
      params(now_ms, now_ms + call_horizon_ms));
  d.calls_pending = calls.int64(0, 0);
  d.calls_overdue = calls.int64(0, 1);
  d.calls_at_risk = calls.int64(0, 2);
  d.calls_failed = calls.int64(0, 3);
  d.nearest_call_due_ms = calls.optional_int64(0, 4);
  // The nearest deadline of each open dispute.
  Result disputes = c_.query(
      "SELECT COUNT(*) FILTER (WHERE due >= $1 AND due < $2), COUNT(*) FILTER (WHERE due < $1) "
      "FROM (SELECT LEAST(representment_expires_at_ms, arbitration_expires_at_ms) AS due "
      "FROM disputes WHERE COALESCE(state, '') <> 'CLOSED' AND "
      "(representment_expires_at_ms IS NOT NULL OR arbitration_expires_at_ms IS NOT NULL)) AS o",
      params(now_ms, now_ms + horizon_ms));
  d.dispute_deadlines_soon = disputes.int64(0, 0);
  d.dispute_deadlines_passed = disputes.int64(0, 1);
  return d;
}

// ---- publish queue ----

std::int64_t PgState::enqueue_publish(const PublishRow& q) {
  Params p = params(q.topic);
  p.add_bytes(q.key).add_bytes(q.value).add(q.reason).add(null_if_empty(q.traceparent));
  return c_
      .query(
          "INSERT INTO publish_queue (topic, key, value, reason, traceparent) "
          "VALUES ($1, $2, $3, $4, $5) RETURNING seq",
          p)
      .int64(0, 0);
}

std::int64_t PgState::next_publish_seq() {
  if (seqs_of_transaction_ != c_.transactions_begun()) {
    seqs_.clear();
    seqs_of_transaction_ = c_.transactions_begun();
  }
  if (seqs_.empty()) {
    // By the sequence's name: a statement naming publish_queue would send
    // the rows queued for it (Connection::write_late).
    if (seq_name_.empty()) {
      seq_name_ = c_.query("SELECT pg_get_serial_sequence('publish_queue', 'seq')").text(0, 0);
    }
    Result r = c_.query("SELECT nextval($1::regclass) FROM generate_series(1, $2)",
                        params(seq_name_, kSeqBlock));
    for (int i = 0; i < r.rows(); ++i) seqs_.push_back(r.int64(i, 0));
    std::sort(seqs_.rbegin(), seqs_.rend());
  }
  const std::int64_t seq = seqs_.back();
  seqs_.pop_back();
  return seq;
}

// In a transaction the row goes with the batch's other writes (its seq
// reserved before); outside one it is written now and returns its seq.
std::int64_t PgState::enqueue_publish(const PublishRow& q, const Claimant& who) {
  if (c_.in_transaction()) {
    const std::int64_t seq = next_publish_seq();
    Params p = params(seq, q.topic);
    p.add_bytes(q.key).add_bytes(q.value).add(q.reason).add(null_if_empty(q.traceparent));
    p.add(who.owner).add(static_cast<std::int64_t>(who.lease.count()));
    c_.write_late(
        "publish_queue",
        "INSERT INTO publish_queue (seq, topic, key, value, reason, traceparent, claimed_by, "
        "lease_expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, kpay_now_ms() + $8)",
        std::move(p));
    return seq;
  }
  Params p = params(q.topic);
  p.add_bytes(q.key).add_bytes(q.value).add(q.reason).add(null_if_empty(q.traceparent));
  p.add(who.owner).add(static_cast<std::int64_t>(who.lease.count()));
  return c_
      .query(
          "INSERT INTO publish_queue (topic, key, value, reason, traceparent, claimed_by, "
          "lease_expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6, kpay_now_ms() + $7) "
          "RETURNING seq",
          p)
      .int64(0, 0);
}

void PgState::delete_published(std::int64_t seq) {
  c_.write_late("publish_queue", "DELETE FROM publish_queue WHERE seq = $1", params(seq));
}

namespace {
std::vector<PublishRow> publish_rows(const Result& r) {
  std::vector<PublishRow> out;
  for (int i = 0; i < r.rows(); ++i) {
    out.push_back({r.int64(i, 0), r.text(i, 1), r.bytea(i, 2), r.bytea(i, 3), r.text(i, 4),
                   r.optional_text(i, 5).value_or("")});
  }
  return out;
}

// Claims the rows matching `which` ($1: the claimer) for `who`, by seq.
std::vector<PublishRow> claim_rows(Connection& c, const Claimant& who, std::string_view which) {
  std::string sql =
      "UPDATE publish_queue SET claimed_by = $1, lease_expires_at_ms = kpay_now_ms() + $2 "
      "WHERE seq IN (SELECT seq FROM publish_queue WHERE ";
  sql.append(which).append(
      " ORDER BY seq FOR UPDATE) RETURNING seq, topic, key, value, reason, traceparent");
  auto rows =
      publish_rows(c.query(sql, params(who.owner, static_cast<std::int64_t>(who.lease.count()))));
  std::sort(rows.begin(), rows.end(),
            [](const PublishRow& a, const PublishRow& b) { return a.seq < b.seq; });
  return rows;
}
}  // namespace

std::vector<PublishRow> PgState::pending_publications() {
  return publish_rows(
      c_.query("SELECT seq, topic, key, value, reason, traceparent FROM publish_queue "
               "ORDER BY seq"));
}

std::vector<PublishRow> PgState::claim_publications(const Claimant& who) {
  // One claimer at a time (until its transaction ends).
  c_.query("SELECT pg_advisory_xact_lock($1)", params(kPublishDrainLockKey));
  return claim_rows(c_, who,
                    "claimed_by IS NULL OR claimed_by = $1 OR "
                    "lease_expires_at_ms <= kpay_now_ms()");
}

std::vector<PublishRow> PgState::take_over_publications(const Claimant& who) {
  c_.query("SELECT pg_advisory_xact_lock($1)", params(kPublishDrainLockKey));
  // Only rows past half their lease: most are published and deleted long
  // before, and a renewal would contend with the batch that deletes them.
  c_.query(
      "UPDATE publish_queue SET lease_expires_at_ms = kpay_now_ms() + $2 "
      "WHERE claimed_by = $1 AND lease_expires_at_ms < kpay_now_ms() + $2 / 2",
      params(who.owner, static_cast<std::int64_t>(who.lease.count())));
  return claim_rows(c_, who,
                    "claimed_by IS NULL OR (claimed_by <> $1 AND "
                    "lease_expires_at_ms <= kpay_now_ms())");
}

void PgState::insert_poison(const PoisonRow& q) {
  const std::int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
  Params p = params(q.topic, q.partition, q.offset, q.event_id, q.reason);
  p.add_bytes(q.value).add_bytes(q.key).add(now);
  c_.write(
      "INSERT INTO poison_messages (topic, partition, \"offset\", event_id, reason, value, key, "
      "recorded_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
      "ON CONFLICT (topic, partition, \"offset\") DO NOTHING",
      std::move(p));
}

// ---- offsets ----

void PgState::save_offset(const std::string& topic, std::int32_t partition,
                          std::int64_t next_offset) {
  c_.write_late("consumer_offsets",
                "INSERT INTO consumer_offsets (topic, partition, next_offset) VALUES ($1, $2, $3) "
                "ON CONFLICT (topic, partition) DO UPDATE "
                "SET next_offset = GREATEST(consumer_offsets.next_offset, EXCLUDED.next_offset)",
                params(topic, partition, next_offset));
}

void PgState::reset_offset(const std::string& topic, std::int32_t partition,
                           std::int64_t next_offset) {
  c_.query(
      "INSERT INTO consumer_offsets (topic, partition, next_offset) VALUES ($1, $2, $3) "
      "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
      params(topic, partition, next_offset));
}

namespace {

// The stored offsets of `partitions` (one statement), their rows locked
// when the SQL ends with FOR UPDATE.
std::map<TopicPartition, std::int64_t> offsets_of(Connection& c, std::string_view sql,
                                                  std::span<const TopicPartition> partitions) {
  std::map<TopicPartition, std::int64_t> out;
  if (partitions.empty()) return out;
  Result r = c.query(
      sql, params(array_literal(partitions, [](const TopicPartition& tp) { return tp.first; }),
                  array_literal(partitions, [](const TopicPartition& tp) {
                    return std::to_string(tp.second);
                  })));
  for (int i = 0; i < r.rows(); ++i) {
    out[{r.text(i, 0), static_cast<std::int32_t>(r.int64(i, 1))}] = r.int64(i, 2);
  }
  return out;
}

}  // namespace

// Rows locked in (topic, partition) order (LockRows runs above the sort), so
// two transactions fencing the same partitions never deadlock. Under
// REPEATABLE READ a row another transaction updated after this one's
// snapshot fails here with 40001 (once that transaction committed): the
// batch is retried on a new snapshot, which sees the other's offsets.
std::map<TopicPartition, std::int64_t> PgState::fence_offsets(
    std::span<const TopicPartition> partitions) {
  return offsets_of(c_,
                    "SELECT topic, partition, next_offset FROM consumer_offsets "
                    "WHERE (topic, partition) IN (SELECT * FROM unnest($1::TEXT[], $2::INTEGER[])) "
                    "ORDER BY topic, partition FOR UPDATE",
                    partitions);
}

// A plain read, its own transaction (the caller is outside one): it takes no
// lock and waits on none.
std::map<TopicPartition, std::int64_t> PgState::committed_offsets(
    std::span<const TopicPartition> partitions) {
  return offsets_of(c_,
                    "SELECT topic, partition, next_offset FROM consumer_offsets "
                    "WHERE (topic, partition) IN (SELECT * FROM unnest($1::TEXT[], $2::INTEGER[]))",
                    partitions);
}

std::optional<std::int64_t> PgState::stored_offset(const std::string& topic,
                                                   std::int32_t partition) {
  Result r =
      c_.query("SELECT next_offset FROM consumer_offsets WHERE topic = $1 AND partition = $2",
               params(topic, partition));
  if (r.rows() == 0) return std::nullopt;
  return r.int64(0, 0);
}

}  // namespace kpay::storage::pg
