// Poison messages, dead-letter replays and the payments list klarnactl shows,
// on PostgreSQL (pg_state.hpp); the SQLite twins are in
// state_store_dead_letters.cpp.
#include "postgres/pg_state.hpp"

namespace kpay::storage::pg {

namespace {

// Rows from before keys were kept (SQLite's migration 6) do not exist here:
// the key is the row's own.
DeadLetterRow poison(const Result& r, int i, bool with_value) {
  DeadLetterRow p;
  p.topic = r.text(i, 0);
  p.partition = static_cast<std::int32_t>(r.int64(i, 1));
  p.offset = r.int64(i, 2);
  p.event_id = r.text(i, 3);
  p.reason = r.text(i, 4);
  if (with_value) p.value = r.bytea(i, 5);
  p.key = r.optional_bytea(i, 6);
  p.recorded_at_ms = r.optional_int64(i, 7);
  p.bytes = r.int64(i, 8);
  return p;
}

constexpr std::string_view kReplaySelect =
    "SELECT topic, partition, \"offset\", source, target_topic, replays, last_replayed_ms "
    "FROM dead_letter_replays ";

std::vector<ReplayRow> replay_rows(const Result& r) {
  std::vector<ReplayRow> out;
  for (int i = 0; i < r.rows(); ++i) {
    out.push_back({r.text(i, 0), static_cast<std::int32_t>(r.int64(i, 1)), r.int64(i, 2),
                   r.text(i, 3), r.text(i, 4), r.int64(i, 5), r.int64(i, 6)});
  }
  return out;
}

}  // namespace

std::vector<DeadLetterRow> PgState::list_poison(std::size_t limit) {
  Result r = c_.query(
      "SELECT topic, partition, \"offset\", event_id, reason, NULL, key, recorded_at_ms, "
      "length(value) FROM poison_messages ORDER BY recorded_at_ms IS NULL, recorded_at_ms DESC, "
      "topic, partition, \"offset\" DESC LIMIT $1",
      params(static_cast<std::int64_t>(limit)));
  std::vector<DeadLetterRow> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(poison(r, i, false));
  return out;
}

std::optional<DeadLetterRow> PgState::find_poison(const std::string& topic, std::int32_t partition,
                                                  std::int64_t offset) {
  Result r = c_.query(
      "SELECT topic, partition, \"offset\", event_id, reason, value, key, recorded_at_ms, "
      "length(value) FROM poison_messages WHERE topic = $1 AND partition = $2 "
      "AND \"offset\" = $3",
      params(topic, partition, offset));
  if (r.rows() == 0) return std::nullopt;
  return poison(r, 0, true);
}

std::optional<ReplayRow> PgState::find_replay(const std::string& topic, std::int32_t partition,
                                              std::int64_t offset) {
  auto rows = replay_rows(c_.query(
      std::string(kReplaySelect) + "WHERE topic = $1 AND partition = $2 AND \"offset\" = $3",
      params(topic, partition, offset)));
  if (rows.empty()) return std::nullopt;
  return rows.front();
}

std::vector<ReplayRow> PgState::replays() {
  return replay_rows(c_.query(std::string(kReplaySelect)));
}

void PgState::record_replay(const ReplayRow& r) {
  c_.query(
      "INSERT INTO dead_letter_replays AS d (topic, partition, \"offset\", source, target_topic, "
      "replays, last_replayed_ms) VALUES ($1, $2, $3, $4, $5, 1, $6) "
      "ON CONFLICT (topic, partition, \"offset\") DO UPDATE SET replays = d.replays + 1, "
      "target_topic = EXCLUDED.target_topic, last_replayed_ms = EXCLUDED.last_replayed_ms",
      params(r.topic, r.partition, r.offset, r.source, r.target_topic, r.last_replayed_ms));
}

void PgState::restore_replay(const std::optional<ReplayRow>& before, const std::string& topic,
                             std::int32_t partition, std::int64_t offset) {
  if (!before) {
    c_.query(
        "DELETE FROM dead_letter_replays WHERE topic = $1 AND partition = $2 AND \"offset\" = $3",
        params(topic, partition, offset));
    return;
  }
  c_.query(
      "UPDATE dead_letter_replays SET replays = $1, target_topic = $2, last_replayed_ms = $3 "
      "WHERE topic = $4 AND partition = $5 AND \"offset\" = $6",
      params(before->replays, before->target_topic, before->last_replayed_ms, topic, partition,
             offset));
}

bool PgState::release_poison_claim(const DeadLetterRow& p) {
  if (p.event_id.empty()) return false;
  return c_.query(
               "DELETE FROM inbox WHERE event_id = $1 AND topic = $2 AND partition = $3 "
               "AND \"offset\" = $4",
               params(p.event_id, p.topic, p.partition, p.offset))
             .affected() > 0;
}

std::vector<PaymentSummary> PgState::list_payments(const PaymentFilter& f) {
  Params p = params(f.kind, f.state, f.since_ms, static_cast<std::int64_t>(f.limit), kNoStateYet);
  Result r = c_.query(
      "SELECT * FROM ("
      "SELECT 'payment_request' AS kind, id, COALESCE(state, $5) AS state, amount, currency, "
      "0::BIGINT AS captured, 0::BIGINT AS refunded, payment_transaction_id AS linked, "
      "state_as_of_ms AS updated FROM payment_requests "
      "UNION ALL SELECT 'payment_transaction', id, COALESCE(state, $5), amount, currency, "
      "captured_amount, refunded_amount, payment_request_id, state_as_of_ms "
      "FROM payment_transactions) AS p "
      "WHERE ($1::TEXT IS NULL OR kind = $1) AND ($2::TEXT IS NULL OR state = $2) "
      "AND ($3::BIGINT IS NULL OR updated >= $3) ORDER BY updated DESC, id LIMIT $4",
      p);
  std::vector<PaymentSummary> out;
  for (int i = 0; i < r.rows(); ++i) {
    PaymentSummary s;
    s.kind = r.text(i, 0);
    s.id = r.text(i, 1);
    s.state = r.text(i, 2);
    s.amount = r.optional_int64(i, 3);
    s.currency = r.optional_text(i, 4);
    s.captured_amount = r.int64(i, 5);
    s.refunded_amount = r.int64(i, 6);
    s.linked_id = r.optional_text(i, 7);
    s.updated_as_of_ms = r.int64(i, 8);
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace kpay::storage::pg
