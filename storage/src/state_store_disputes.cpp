// The disputes' part of the SQLite state store: disputes, every deadline an
// event told (v5) and the warnings the deadline watcher sent.
#include "kpay/storage/state_store.hpp"
#include "state_store_impl.hpp"

namespace kpay::storage {

namespace {
// A dispute row from column `c` on: the columns of find_dispute after the id.
DisputeRow read_dispute(Statement& s, std::string id, int c) {
  DisputeRow d;
  d.id = std::move(id);
  d.framework = stored(parse_dispute_framework(s.text(c)), "dispute framework", s.text(c));
  d.framework_inferred = s.int64(c + 1) != 0;
  d.state = s.optional_text(c + 2);
  d.state_as_of_ms = s.int64(c + 3);
  d.payment_transaction_id = s.optional_text(c + 4);
  d.payment_capture_id = s.optional_text(c + 5);
  d.reason = s.optional_text(c + 6);
  d.amount = s.optional_int64(c + 7);
  d.currency = s.optional_text(c + 8);
  d.outcome = s.optional_text(c + 9);
  d.representment_expires_at_ms = s.optional_int64(c + 10);
  d.representment_as_of_ms = s.int64(c + 11);
  d.arbitration_expires_at_ms = s.optional_int64(c + 12);
  d.arbitration_as_of_ms = s.int64(c + 13);
  d.closed_at_ms = s.optional_int64(c + 14);
  d.last_event_id = s.text(c + 15);
  d.evidence_response_deadline_ms = s.optional_int64(c + 16);
  d.evidence_response_as_of_ms = s.int64(c + 17);
  d.outcome_detailed = s.optional_text(c + 18);
  d.withheld_amount = s.optional_int64(c + 19);
  d.returned_amount = s.optional_int64(c + 20);
  d.fee_amount = s.optional_int64(c + 21);
  d.account_id = s.optional_text(c + 22);
  return d;
}

constexpr std::string_view kDisputeColumns =
    "id, framework, framework_inferred, state, state_as_of_ms, payment_transaction_id, "
    "payment_capture_id, reason, amount, currency, outcome, representment_expires_at_ms, "
    "representment_as_of_ms, arbitration_expires_at_ms, arbitration_as_of_ms, closed_at_ms, "
    "last_event_id, evidence_response_deadline_ms, evidence_response_as_of_ms, outcome_detailed, "
    "withheld_amount, returned_amount, fee_amount, account_id";
}  // namespace

std::optional<DisputeRow> StateStore::find_dispute(const std::string& id) {
  auto& s = impl_->prep(
      impl_->find_dispute,
      "SELECT framework, framework_inferred, state, state_as_of_ms, payment_transaction_id, "
      "payment_capture_id, reason, amount, currency, outcome, representment_expires_at_ms, "
      "representment_as_of_ms, arbitration_expires_at_ms, arbitration_as_of_ms, closed_at_ms, "
      "last_event_id, evidence_response_deadline_ms, evidence_response_as_of_ms, outcome_detailed, "
      "withheld_amount, returned_amount, fee_amount, account_id FROM disputes WHERE id = ?");
  s.bind_view(1, id);
  std::optional<DisputeRow> d;
  if (s.step()) d = read_dispute(s, id, 0);
  s.reset();
  return d;
}

void StateStore::save_dispute(const DisputeRow& d) {
  auto& s = impl_->prep(
      impl_->save_dispute,
      "INSERT OR REPLACE INTO disputes (id, framework, framework_inferred, state, state_as_of_ms, "
      "payment_transaction_id, payment_capture_id, reason, amount, currency, outcome, "
      "representment_expires_at_ms, representment_as_of_ms, arbitration_expires_at_ms, "
      "arbitration_as_of_ms, closed_at_ms, last_event_id, evidence_response_deadline_ms, "
      "evidence_response_as_of_ms, outcome_detailed, withheld_amount, returned_amount, fee_amount, "
      "account_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
  s.bind_view(1, d.id)
      .bind_view(2, to_string(d.framework))
      .bind_view(3, d.framework_inferred ? 1 : 0);
  s.bind_view(4, d.state);
  s.bind_view(5, d.state_as_of_ms);
  s.bind_view(6, d.payment_transaction_id);
  s.bind_view(7, d.payment_capture_id);
  s.bind_view(8, d.reason);
  s.bind_view(9, d.amount);
  s.bind_view(10, d.currency);
  s.bind_view(11, d.outcome);
  s.bind_view(12, d.representment_expires_at_ms);
  s.bind_view(13, d.representment_as_of_ms);
  s.bind_view(14, d.arbitration_expires_at_ms);
  s.bind_view(15, d.arbitration_as_of_ms);
  s.bind_view(16, d.closed_at_ms);
  s.bind_view(17, d.last_event_id);
  s.bind_view(18, d.evidence_response_deadline_ms);
  s.bind_view(19, d.evidence_response_as_of_ms);
  s.bind_view(20, d.outcome_detailed);
  s.bind_view(21, d.withheld_amount);
  s.bind_view(22, d.returned_amount);
  s.bind_view(23, d.fee_amount);
  s.bind_view(24, d.account_id);
  s.run();
}

bool StateStore::insert_dispute_deadline(const DisputeDeadlineRow& d) {
  auto& s = impl_->prep(
      impl_->insert_dispute_deadline,
      "INSERT OR IGNORE INTO dispute_deadlines (dispute_id, kind, event_id, deadline_ms, "
      "as_of_ms, event_type, field) VALUES (?,?,?,?,?,?,?)");
  s.bind_view(1, d.dispute_id)
      .bind_view(2, d.kind)
      .bind_view(3, d.event_id)
      .bind_view(4, d.deadline_ms);
  s.bind_view(5, d.as_of_ms).bind_view(6, d.event_type).bind_view(7, d.field);
  s.run();
  return impl_->db.changes() == 1;
}

std::vector<DisputeDeadlineRow> StateStore::dispute_deadlines(const std::string& dispute_id) {
  auto s = impl_->db.prepare(
      "SELECT kind, deadline_ms, as_of_ms, event_id, event_type, field FROM dispute_deadlines "
      "WHERE dispute_id = ? ORDER BY as_of_ms, kind, event_id");
  s.bind(1, dispute_id);
  std::vector<DisputeDeadlineRow> out;
  while (s.step()) {
    out.push_back({dispute_id, s.text(0), s.int64(1), s.int64(2), s.text(3), s.text(4), s.text(5)});
  }
  return out;
}

namespace {
// The open disputes in id order through their partial index (v20): the WHERE
// must be the index's own for the planner to use it (open_disputes_plan).
std::string open_disputes_sql(bool after) {
  return "SELECT " + std::string(kDisputeColumns) +
         " FROM disputes WHERE COALESCE(state, '') <> 'CLOSED'" + (after ? " AND id > ?" : "") +
         " ORDER BY id LIMIT ?";
}
}  // namespace

std::vector<DisputeRow> StateStore::open_disputes_after(const std::optional<std::string>& after_id,
                                                        std::size_t limit) {
  auto s = impl_->db.prepare(open_disputes_sql(after_id.has_value()));
  int i = 1;
  if (after_id) s.bind(i++, *after_id);
  s.bind(i, static_cast<std::int64_t>(limit));
  std::vector<DisputeRow> out;
  while (s.step()) out.push_back(read_dispute(s, s.text(0), 1));
  return out;
}

std::string StateStore::open_disputes_plan(bool after) {
  auto s = impl_->db.prepare("EXPLAIN QUERY PLAN " + open_disputes_sql(after));
  std::string plan;
  while (s.step()) plan += (plan.empty() ? "" : "; ") + s.text(3);
  return plan;
}

std::vector<DisputeRow> StateStore::list_disputes(std::size_t limit) {
  auto s = impl_->db.prepare("SELECT " + std::string(kDisputeColumns) +
                             " FROM disputes ORDER BY state_as_of_ms DESC, id LIMIT ?");
  s.bind(1, static_cast<std::int64_t>(limit));
  std::vector<DisputeRow> out;
  while (s.step()) out.push_back(read_dispute(s, s.text(0), 1));
  return out;
}

bool StateStore::mark_deadline_warning(const std::string& dispute_id, const std::string& kind,
                                       std::int64_t deadline_ms, const std::string& stage,
                                       std::int64_t now_ms) {
  auto& s = impl_->prep(
      impl_->mark_deadline_warning,
      "INSERT OR IGNORE INTO dispute_deadline_warnings (dispute_id, kind, deadline_ms, stage, "
      "warned_at_ms) VALUES (?,?,?,?,?)");
  ResetAfter reset(s);
  s.bind_view(1, dispute_id).bind_view(2, kind).bind_view(3, deadline_ms).bind_view(4, stage);
  s.bind_view(5, now_ms);
  s.run();
  return impl_->db.changes() == 1;
}

// One lookup per key: in process, each a few microseconds.
std::vector<bool> StateStore::deadline_warnings_marked(std::span<const DeadlineWarningKey> keys) {
  auto& s =
      impl_->prep(impl_->deadline_warning_marked,
                  "SELECT 1 FROM dispute_deadline_warnings WHERE dispute_id = ? AND kind = ? AND "
                  "deadline_ms = ? AND stage = ?");
  std::vector<bool> out;
  out.reserve(keys.size());
  for (const auto& k : keys) {
    ResetAfter reset(s);  // no read snapshot kept open
    s.bind_view(1, k.dispute_id).bind_view(2, k.kind).bind_view(3, k.deadline_ms);
    s.bind_view(4, k.stage);
    out.push_back(s.step());
  }
  return out;
}

}  // namespace kpay::storage
