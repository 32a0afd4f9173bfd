// klarnactl's part of the state store (migration v6): the processor's poison
// messages, the replays of dead letters of either source, and payments
// listed with filters.
#include "kpay/storage/state_store.hpp"

namespace kpay::storage {

namespace {

// Older rows (before v6) kept no key: the history row of the poison message
// names the entity it was about, which is the key the receiver chose (unless
// it is the synthetic "poison:…" id of an unreadable message).
constexpr std::string_view kPoisonColumns =
    "p.topic, p.partition, p.offset, p.event_id, p.reason, p.value, "
    "COALESCE(p.key, (SELECT h.entity_id FROM history h WHERE h.topic = p.topic "
    "AND h.partition = p.partition AND h.offset = p.offset AND h.entity_kind = 'poison' "
    "AND h.entity_id NOT LIKE 'poison:%' LIMIT 1)), p.recorded_at_ms, LENGTH(p.value)";

DeadLetterRow read_poison(const Statement& s, bool with_value) {
  DeadLetterRow p;
  p.topic = s.text(0);
  p.partition = static_cast<std::int32_t>(s.int64(1));
  p.offset = s.int64(2);
  p.event_id = s.text(3);
  p.reason = s.text(4);
  if (with_value) p.value = s.blob(5);
  if (!s.is_null(6)) p.key = s.blob(6);
  p.recorded_at_ms = s.optional_int64(7);
  p.bytes = s.int64(8);
  return p;
}

ReplayRow read_replay(const Statement& s) {
  ReplayRow r;
  r.topic = s.text(0);
  r.partition = static_cast<std::int32_t>(s.int64(1));
  r.offset = s.int64(2);
  r.source = s.text(3);
  r.target_topic = s.text(4);
  r.replays = s.int64(5);
  r.last_replayed_ms = s.int64(6);
  return r;
}

constexpr std::string_view kReplayColumns =
    "topic, partition, offset, source, target_topic, replays, last_replayed_ms";

}  // namespace

std::vector<DeadLetterRow> StateStore::list_poison(std::size_t limit) {
  auto s = database().prepare(
      "SELECT p.topic, p.partition, p.offset, p.event_id, p.reason, NULL, p.key, "
      "p.recorded_at_ms, LENGTH(p.value) FROM poison_messages p "
      "ORDER BY p.recorded_at_ms IS NULL, p.recorded_at_ms DESC, p.topic, p.partition, "
      "p.offset DESC LIMIT ?");
  s.bind(1, static_cast<std::int64_t>(limit));
  std::vector<DeadLetterRow> out;
  while (s.step()) out.push_back(read_poison(s, false));
  return out;
}

std::optional<DeadLetterRow> StateStore::find_poison(const std::string& topic,
                                                     std::int32_t partition, std::int64_t offset) {
  auto s = database().prepare("SELECT " + std::string(kPoisonColumns) +
                              " FROM poison_messages p WHERE p.topic = ? AND p.partition = ? "
                              "AND p.offset = ?");
  s.bind(1, topic).bind(2, partition).bind(3, offset);
  if (!s.step()) return std::nullopt;
  return read_poison(s, true);
}

std::optional<ReplayRow> StateStore::find_replay(const std::string& topic, std::int32_t partition,
                                                 std::int64_t offset) {
  auto s = database().prepare("SELECT " + std::string(kReplayColumns) +
                              " FROM dead_letter_replays WHERE topic = ? AND partition = ? "
                              "AND offset = ?");
  s.bind(1, topic).bind(2, partition).bind(3, offset);
  if (!s.step()) return std::nullopt;
  return read_replay(s);
}

std::vector<ReplayRow> StateStore::replays() {
  auto s =
      database().prepare("SELECT " + std::string(kReplayColumns) + " FROM dead_letter_replays");
  std::vector<ReplayRow> out;
  while (s.step()) out.push_back(read_replay(s));
  return out;
}

void StateStore::record_replay(const ReplayRow& r) {
  auto s = database().prepare(
      "INSERT INTO dead_letter_replays (topic, partition, offset, source, target_topic, replays, "
      "last_replayed_ms) VALUES (?,?,?,?,?,1,?) ON CONFLICT (topic, partition, offset) DO UPDATE "
      "SET replays = replays + 1, target_topic = excluded.target_topic, "
      "last_replayed_ms = excluded.last_replayed_ms");
  s.bind(1, r.topic).bind(2, r.partition).bind(3, r.offset).bind(4, r.source);
  s.bind(5, r.target_topic).bind(6, r.last_replayed_ms);
  s.run();
}

void StateStore::restore_replay(const std::optional<ReplayRow>& before, const std::string& topic,
                                std::int32_t partition, std::int64_t offset) {
  if (!before) {
    auto s = database().prepare(
        "DELETE FROM dead_letter_replays WHERE topic = ? AND partition = ? AND offset = ?");
    s.bind(1, topic).bind(2, partition).bind(3, offset);
    s.run();
    return;
  }
  auto s = database().prepare(
      "UPDATE dead_letter_replays SET replays = ?, target_topic = ?, last_replayed_ms = ? "
      "WHERE topic = ? AND partition = ? AND offset = ?");
  s.bind(1, before->replays).bind(2, before->target_topic).bind(3, before->last_replayed_ms);
  s.bind(4, topic).bind(5, partition).bind(6, offset);
  s.run();
}

bool StateStore::release_poison_claim(const DeadLetterRow& p) {
  if (p.event_id.empty()) return false;
  auto s = database().prepare(
      "DELETE FROM inbox WHERE event_id = ? AND topic_id = (SELECT id FROM inbox_topics "
      "WHERE topic = ?) AND partition = ? AND offset = ?");
  s.bind(1, p.event_id).bind(2, p.topic).bind(3, p.partition).bind(4, p.offset);
  s.run();
  return database().changes() > 0;
}

std::vector<PaymentSummary> StateStore::list_payments(const PaymentFilter& f) {
  auto s = database().prepare(
      "SELECT * FROM ("
      "SELECT 'payment_request' AS kind, id, COALESCE(state, ?5) AS state, amount, "
      "currency, 0, 0, payment_transaction_id, state_as_of_ms AS updated FROM payment_requests "
      "UNION ALL "
      "SELECT 'payment_transaction', id, COALESCE(state, ?5), amount, currency, "
      "captured_amount, refunded_amount, payment_request_id, state_as_of_ms "
      "FROM payment_transactions) "
      "WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR state = ?2) "
      "AND (?3 IS NULL OR updated >= ?3) ORDER BY updated DESC, id LIMIT ?4");
  s.bind(1, f.kind).bind(2, f.state).bind(3, f.since_ms);
  s.bind(4, static_cast<std::int64_t>(f.limit)).bind(5, kNoStateYet);
  std::vector<PaymentSummary> out;
  while (s.step()) {
    PaymentSummary p;
    p.kind = s.text(0);
    p.id = s.text(1);
    p.state = s.text(2);
    p.amount = s.optional_int64(3);
    p.currency = s.optional_text(4);
    p.captured_amount = s.int64(5);
    p.refunded_amount = s.int64(6);
    p.linked_id = s.optional_text(7);
    p.updated_as_of_ms = s.int64(8);
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace kpay::storage
