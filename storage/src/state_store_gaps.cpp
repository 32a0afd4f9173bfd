// Offset gaps and event conflicts (migration v8): the partitions that moved
// past offsets the processor never applied, the operator's decision on each,
// the entities a repair reads again; and the messages whose event_id was
// applied before with another body.
#include <functional>

#include "kpay/storage/state_store.hpp"
#include "state_store_impl.hpp"

namespace kpay::storage {

namespace {

constexpr std::string_view kGapColumns =
    "id, topic, partition, expected, resume_at, kind, skipped, policy, status, detected_at_ms, "
    "decided_at_ms, repaired_at_ms, repair_reads";

OffsetGapRow read_gap(const Statement& s) {
  OffsetGapRow g;
  g.id = s.int64(0);
  g.topic = s.text(1);
  g.partition = static_cast<std::int32_t>(s.int64(2));
  g.expected = s.int64(3);
  g.resume_at = s.int64(4);
  g.kind = s.text(5);
  g.skipped = s.int64(6);
  g.policy = stored(parse_gap_policy(s.text(7)), "gap policy", s.text(7));
  g.status = stored(parse_gap_status(s.text(8)), "gap status", s.text(8));
  g.detected_at_ms = s.int64(9);
  g.decided_at_ms = s.optional_int64(10);
  g.repaired_at_ms = s.optional_int64(11);
  g.repair_reads = s.int64(12);
  return g;
}

std::vector<OffsetGapRow> gaps(Database& db, const std::string& where, std::size_t limit,
                               const std::function<void(Statement&)>& bind) {
  auto s = db.prepare("SELECT " + std::string(kGapColumns) + " FROM offset_gaps " + where +
                      " ORDER BY id DESC LIMIT " + std::to_string(limit));
  bind(s);
  std::vector<OffsetGapRow> out;
  while (s.step()) out.push_back(read_gap(s));
  return out;
}

}  // namespace

std::pair<OffsetGapRow, bool> StateStore::record_gap(const OffsetGapRow& g) {
  auto s = database().prepare(
      "INSERT OR IGNORE INTO offset_gaps (topic, partition, expected, resume_at, kind, skipped, "
      "policy, status, detected_at_ms) VALUES (?,?,?,?,?,?,?,'open',?)");
  s.bind(1, g.topic).bind(2, g.partition).bind(3, g.expected).bind(4, g.resume_at);
  s.bind(5, g.kind).bind(6, g.skipped).bind(7, to_string(g.policy)).bind(8, g.detected_at_ms);
  s.run();
  const bool inserted = database().changes() == 1;
  auto found =
      gaps(database(), "WHERE topic = ? AND partition = ? AND expected = ?", 1,
           [&](Statement& q) { q.bind(1, g.topic).bind(2, g.partition).bind(3, g.expected); });
  return {found.front(), inserted};
}

std::optional<OffsetGapRow> StateStore::find_gap(std::int64_t id) {
  auto found = gaps(database(), "WHERE id = ?", 1, [&](Statement& q) { q.bind(1, id); });
  if (found.empty()) return std::nullopt;
  return found.front();
}

std::vector<OffsetGapRow> StateStore::list_gaps(std::optional<GapStatus> status,
                                                std::size_t limit) {
  if (!status) return gaps(database(), "", limit, [](Statement&) {});
  return gaps(database(), "WHERE status = ?", limit,
              [&](Statement& q) { q.bind(1, to_string(*status)); });
}

std::optional<OffsetGapRow> StateStore::open_gap(const std::string& topic, std::int32_t partition) {
  auto found = gaps(database(), "WHERE topic = ? AND partition = ? AND status = 'open'", 1,
                    [&](Statement& q) { q.bind(1, topic).bind(2, partition); });
  if (found.empty()) return std::nullopt;
  return found.front();
}

std::int64_t StateStore::count_open_gaps() {
  auto s = database().prepare("SELECT COUNT(*) FROM offset_gaps WHERE status = 'open'");
  s.step();
  return s.int64(0);
}

bool StateStore::accept_gap(std::int64_t id, std::int64_t now_ms) {
  Transaction tx(database());
  auto gap = find_gap(id);
  if (!gap || gap->status != GapStatus::open) return false;
  auto s = database().prepare(
      "UPDATE offset_gaps SET status = 'accepted', decided_at_ms = ? WHERE id = ?");
  s.bind(1, now_ms).bind(2, id);
  s.run();
  // A paused partition goes on where the gap ends; one that went on
  // (policy continue) is past that point already.
  if (gap->policy == GapPolicy::pause) reset_offset(gap->topic, gap->partition, gap->resume_at);
  tx.commit();
  return true;
}

void StateStore::mark_gap_repaired(std::int64_t id, std::int64_t reads, std::int64_t now_ms) {
  auto s = database().prepare(
      "UPDATE offset_gaps SET repaired_at_ms = ?, repair_reads = repair_reads + ? WHERE id = ?");
  s.bind(1, now_ms).bind(2, reads).bind(3, id);
  s.run();
}

std::vector<RepairTarget> StateStore::repair_targets(const std::string& topic,
                                                     std::int32_t partition, std::size_t limit) {
  // Full scan of the history (no index by partition): a repair is rare.
  auto s = database().prepare(
      "WITH seen AS (SELECT DISTINCT entity_kind, entity_id FROM history "
      "  WHERE topic = ?1 AND partition = ?2 "
      "  AND entity_kind IN ('payment_request', 'payment_transaction', 'dispute')) "
      "SELECT 'payment_request', r.id, r.state, r.account_id, r.generation, '' "
      "  FROM seen JOIN payment_requests r ON seen.entity_kind = 'payment_request' "
      "  AND r.id = seen.entity_id "
      "UNION ALL SELECT 'payment_transaction', t.id, t.state, t.account_id, 0, '' "
      "  FROM seen JOIN payment_transactions t ON seen.entity_kind = 'payment_transaction' "
      "  AND t.id = seen.entity_id "
      "UNION ALL SELECT 'dispute', d.id, d.state, "
      "  (SELECT account_id FROM payment_transactions WHERE id = d.payment_transaction_id), "
      "  0, d.framework FROM seen JOIN disputes d ON seen.entity_kind = 'dispute' "
      "  AND d.id = seen.entity_id "
      "ORDER BY 1, 2 LIMIT ?3");
  s.bind(1, topic).bind(2, partition).bind(3, static_cast<std::int64_t>(limit));
  std::vector<RepairTarget> out;
  while (s.step()) {
    RepairTarget t;
    t.kind = s.text(0);
    t.id = s.text(1);
    t.state = s.optional_text(2);
    t.account_id = s.optional_text(3);
    t.generation = static_cast<std::int32_t>(s.int64(4));
    if (t.kind == "dispute") {
      t.framework = stored(parse_dispute_framework(s.text(5)), "dispute framework", s.text(5));
    }
    out.push_back(std::move(t));
  }
  return out;
}

void StateStore::reset_offset(const std::string& topic, std::int32_t partition,
                              std::int64_t next_offset) {
  auto s = database().prepare(
      "INSERT INTO consumer_offsets (topic, partition, next_offset) VALUES (?,?,?) "
      "ON CONFLICT(topic, partition) DO UPDATE SET next_offset = excluded.next_offset");
  s.bind(1, topic).bind(2, partition).bind(3, next_offset);
  s.run();
}

void StateStore::insert_conflict(const EventConflictRow& c) {
  auto s = database().prepare(
      "INSERT OR IGNORE INTO event_conflicts (event_id, topic, partition, offset, digest, "
      "first_digest, first_topic, first_partition, first_offset, recorded_at_ms) "
      "VALUES (?,?,?,?,?,?,?,?,?,?)");
  s.bind(1, c.event_id).bind(2, c.topic).bind(3, c.partition).bind(4, c.offset);
  s.bind_blob(5, c.digest).bind_blob(6, c.first_digest);
  s.bind(7, c.first_topic).bind(8, c.first_partition).bind(9, c.first_offset);
  s.bind(10, c.recorded_at_ms);
  s.run();
}

std::vector<EventConflictRow> StateStore::list_conflicts(std::size_t limit) {
  auto s = database().prepare(
      "SELECT event_id, topic, partition, offset, digest, first_digest, first_topic, "
      "first_partition, first_offset, recorded_at_ms FROM event_conflicts "
      "ORDER BY recorded_at_ms DESC, topic, partition, offset LIMIT ?");
  s.bind(1, static_cast<std::int64_t>(limit));
  std::vector<EventConflictRow> out;
  while (s.step()) {
    EventConflictRow c;
    c.event_id = s.text(0);
    c.topic = s.text(1);
    c.partition = static_cast<std::int32_t>(s.int64(2));
    c.offset = s.int64(3);
    c.digest = s.blob(4);
    c.first_digest = s.blob(5);
    c.first_topic = s.text(6);
    c.first_partition = static_cast<std::int32_t>(s.int64(7));
    c.first_offset = s.int64(8);
    c.recorded_at_ms = s.int64(9);
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace kpay::storage
