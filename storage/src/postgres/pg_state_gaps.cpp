// Offset gaps and event conflicts on PostgreSQL (pg_state.hpp); the SQLite
// twins are in state_store_gaps.cpp.
#include "postgres/pg_rows.hpp"
#include "postgres/pg_state.hpp"

namespace kpay::storage::pg {

namespace {

constexpr std::string_view kGapSelect =
    "SELECT id, topic, partition, expected, resume_at, kind, skipped, policy, status, "
    "detected_at_ms, decided_at_ms, repaired_at_ms, repair_reads FROM offset_gaps ";

std::vector<OffsetGapRow> gaps(const Result& r) {
  std::vector<OffsetGapRow> out;
  for (int i = 0; i < r.rows(); ++i) {
    OffsetGapRow g;
    g.id = r.int64(i, 0);
    g.topic = r.text(i, 1);
    g.partition = static_cast<std::int32_t>(r.int64(i, 2));
    g.expected = r.int64(i, 3);
    g.resume_at = r.int64(i, 4);
    g.kind = r.text(i, 5);
    g.skipped = r.int64(i, 6);
    g.policy = stored(parse_gap_policy(r.view(i, 7)), "gap policy", r.text(i, 7));
    g.status = stored(parse_gap_status(r.view(i, 8)), "gap status", r.text(i, 8));
    g.detected_at_ms = r.int64(i, 9);
    g.decided_at_ms = r.optional_int64(i, 10);
    g.repaired_at_ms = r.optional_int64(i, 11);
    g.repair_reads = r.int64(i, 12);
    out.push_back(std::move(g));
  }
  return out;
}

std::optional<OffsetGapRow> first(std::vector<OffsetGapRow> rows) {
  if (rows.empty()) return std::nullopt;
  return std::move(rows.front());
}

}  // namespace

std::pair<OffsetGapRow, bool> PgState::record_gap(const OffsetGapRow& g) {
  Params p = params(g.topic, g.partition, g.expected, g.resume_at, g.kind, g.skipped);
  p.add(to_string(g.policy)).add(g.detected_at_ms);
  const bool inserted =
      c_.query(
            "INSERT INTO offset_gaps (topic, partition, expected, resume_at, kind, skipped, "
            "policy, status, detected_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8) "
            "ON CONFLICT (topic, partition, expected) DO NOTHING",
            p)
          .affected() == 1;
  auto found = gaps(
      c_.query(std::string(kGapSelect) + "WHERE topic = $1 AND partition = $2 AND expected = $3",
               params(g.topic, g.partition, g.expected)));
  return {found.at(0), inserted};
}

std::optional<OffsetGapRow> PgState::find_gap(std::int64_t id) {
  return first(gaps(c_.query(std::string(kGapSelect) + "WHERE id = $1", params(id))));
}

std::vector<OffsetGapRow> PgState::list_gaps(std::optional<GapStatus> status, std::size_t limit) {
  std::optional<std::string> name;
  if (status) name = std::string(to_string(*status));
  return gaps(c_.query(
      std::string(kGapSelect) + "WHERE $1::TEXT IS NULL OR status = $1 ORDER BY id DESC LIMIT $2",
      params(name, static_cast<std::int64_t>(limit))));
}

std::optional<OffsetGapRow> PgState::open_gap(const std::string& topic, std::int32_t partition) {
  return first(gaps(c_.query(std::string(kGapSelect) +
                                 "WHERE topic = $1 AND partition = $2 AND status = 'open' "
                                 "ORDER BY id DESC LIMIT 1",
                             params(topic, partition))));
}

std::int64_t PgState::count_open_gaps() {
  return c_.query("SELECT COUNT(*) FROM offset_gaps WHERE status = 'open'").int64(0, 0);
}

bool PgState::accept_gap(std::int64_t id, std::int64_t now_ms, bool own_transaction) {
  std::optional<Transaction> tx;
  if (own_transaction) tx.emplace(c_);
  auto gap =
      first(gaps(c_.query(std::string(kGapSelect) + "WHERE id = $1 FOR UPDATE", params(id))));
  if (!gap || gap->status != GapStatus::open) return false;
  c_.query("UPDATE offset_gaps SET status = 'accepted', decided_at_ms = $1 WHERE id = $2",
           params(now_ms, id));
  // A paused partition goes on where the gap ends; one that went on
  // (policy continue) is past that point already.
  if (gap->policy == GapPolicy::pause) reset_offset(gap->topic, gap->partition, gap->resume_at);
  if (tx) tx->commit();
  return true;
}

void PgState::mark_gap_repaired(std::int64_t id, std::int64_t reads, std::int64_t now_ms) {
  c_.query(
      "UPDATE offset_gaps SET repaired_at_ms = $1, repair_reads = repair_reads + $2 WHERE id = $3",
      params(now_ms, reads, id));
}

std::vector<RepairTarget> PgState::repair_targets(const std::string& topic, std::int32_t partition,
                                                  std::size_t limit) {
  Result r = c_.query(
      "WITH seen AS (SELECT DISTINCT entity_kind, entity_id FROM history "
      "  WHERE topic = $1 AND partition = $2 "
      "  AND entity_kind IN ('payment_request', 'payment_transaction', 'dispute')) "
      "SELECT 'payment_request' AS kind, r.id, r.state, r.account_id, r.generation, '' "
      "  FROM seen JOIN payment_requests r ON seen.entity_kind = 'payment_request' "
      "  AND r.id = seen.entity_id "
      "UNION ALL SELECT 'payment_transaction', t.id, t.state, t.account_id, 0, '' "
      "  FROM seen JOIN payment_transactions t ON seen.entity_kind = 'payment_transaction' "
      "  AND t.id = seen.entity_id "
      "UNION ALL SELECT 'dispute', d.id, d.state, "
      "  (SELECT account_id FROM payment_transactions WHERE id = d.payment_transaction_id), "
      "  0, d.framework FROM seen JOIN disputes d ON seen.entity_kind = 'dispute' "
      "  AND d.id = seen.entity_id "
      "ORDER BY 1, 2 LIMIT $3",
      params(topic, partition, static_cast<std::int64_t>(limit)));
  std::vector<RepairTarget> out;
  for (int i = 0; i < r.rows(); ++i) {
    RepairTarget t;
    t.kind = r.text(i, 0);
    t.id = r.text(i, 1);
    t.state = r.optional_text(i, 2);
    t.account_id = r.optional_text(i, 3);
    t.generation = static_cast<std::int32_t>(r.int64(i, 4));
    if (t.kind == "dispute") {
      t.framework =
          stored(parse_dispute_framework(r.view(i, 5)), "dispute framework", r.text(i, 5));
    }
    out.push_back(std::move(t));
  }
  return out;
}

void PgState::insert_conflict(const EventConflictRow& c) {
  Params p = params(c.event_id, c.topic, c.partition, c.offset);
  p.add_bytes(c.digest).add_bytes(c.first_digest);
  p.add(c.first_topic).add(c.first_partition).add(c.first_offset).add(c.recorded_at_ms);
  c_.write(
      "INSERT INTO event_conflicts (event_id, topic, partition, \"offset\", digest, "
      "first_digest, first_topic, first_partition, first_offset, recorded_at_ms) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
      "ON CONFLICT (topic, partition, \"offset\") DO NOTHING",
      std::move(p));
}

std::vector<EventConflictRow> PgState::list_conflicts(std::size_t limit) {
  Result r = c_.query(
      "SELECT event_id, topic, partition, \"offset\", digest, first_digest, first_topic, "
      "first_partition, first_offset, recorded_at_ms FROM event_conflicts "
      "ORDER BY recorded_at_ms DESC, topic, partition, \"offset\" LIMIT $1",
      params(static_cast<std::int64_t>(limit)));
  std::vector<EventConflictRow> out;
  for (int i = 0; i < r.rows(); ++i) {
    out.push_back({r.text(i, 0), r.text(i, 1), static_cast<std::int32_t>(r.int64(i, 2)),
                   r.int64(i, 3), r.bytea(i, 4), r.bytea(i, 5), r.text(i, 6),
                   static_cast<std::int32_t>(r.int64(i, 7)), r.int64(i, 8), r.int64(i, 9)});
  }
  return out;
}

}  // namespace kpay::storage::pg
