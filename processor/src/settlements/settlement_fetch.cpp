// Settlement reports fetched through the outbox (settlement_fetch.hpp):
// details → transactions pages (or the CSV report) and the payout status →
// reconciliation, whose new findings go to klarna.reconciliation in the same
// transaction (the publish queue).
#include "settlements/settlement_fetch.hpp"

#include "kpay/core/percent_encode.hpp"
#include "kpay/processor/reconciler.hpp"
#include "kpay/processor/settlement_report.hpp"
#include "kpay/storage/reconciliation_store.hpp"

namespace kpay::processor {

namespace {

std::string settlement_path(const std::string& settlement_id) {
  return "/v2/settlements/" + core::percent_encode(settlement_id);
}

void queue(AnswerContext& c, const FollowUp& f, const storage::OutboxRow& cause) {
  FollowUpOrigin origin;
  origin.account_id = cause.account_id;
  origin.caused_by = "outbox:" + std::to_string(cause.id);
  origin.now_ms = c.now_ms;
  c.store.insert_outbox(outbox_row(f, origin));
}

// Reconciles the settlement and looks for captures and refunds settled
// nowhere; publishes what is new. Returns the row's result.
std::string reconcile_and_publish(AnswerContext& c, const std::string& settlement_id) {
  auto r = reconcile_settlement(c.store, settlement_id, c.now_ms);
  auto missing = find_missing(c.store, c.now_ms, c.follow_ups.settlements.grace);
  for (auto& f : missing.found) r.found.push_back(std::move(f));
  enqueue_findings(c.store, c.topics.reconciliation, r, c.publications);
  return "RECONCILED " + std::to_string(r.lines) + " lines, " + std::to_string(r.found.size()) +
         " new findings";
}

std::string on_details(AnswerContext& c, const storage::OutboxRow& row, std::string_view body) {
  auto& recon = storage::ledger_of(c.store);
  storage::SettlementRow s;
  s.settlement_id = row.entity_id;
  s.account_id = row.account_id;
  s.caused_by = row.created_by_event_id;
  s.created_at_ms = c.now_ms;
  read_settlement_details(body, s);
  const auto& settings = c.follow_ups.settlements;
  s.next_page = settings.csv
                    ? settlement_path(s.settlement_id) + "/csv"
                    : settlement_path(s.settlement_id) +
                          "/transactions?offset=0&size=" + std::to_string(settings.page_size);
  if (!recon.insert_settlement(s)) return "FETCHED_BEFORE";
  queue(c, FetchSettlementTransactions{s.settlement_id, *s.next_page, settings.csv}, row);
  queue(c, FetchPayoutStatus{s.settlement_id}, row);
  return "FETCHING";
}

std::string on_transactions(AnswerContext& c, const storage::OutboxRow& row,
                            std::string_view body) {
  auto& recon = storage::ledger_of(c.store);
  auto s = recon.find_settlement(row.entity_id);
  if (!s) throw std::runtime_error("no details stored for settlement " + row.entity_id);
  const std::string page = row.path.substr(kRootPlaceholder.size());
  if (s->next_page != page) return "BOOKED_BEFORE";
  TransactionsPage got;
  if (row.operation == storage::OutboxOperation::fetch_settlement_csv) {
    got.lines = read_transactions_csv(body);
  } else {
    got = read_transactions_page(body);
  }
  for (auto& l : got.lines) {
    l.settlement_id = s->settlement_id;
    l.line_no = s->lines_booked++;
    recon.insert_line(l);
  }
  s->next_page = got.next;
  if (got.next) {
    recon.save_settlement(*s);
    queue(c, FetchSettlementTransactions{s->settlement_id, *got.next, false}, row);
    return "BOOKED " + std::to_string(got.lines.size()) + " lines";
  }
  s->status = "fetched";
  s->fetched_at_ms = c.now_ms;
  recon.save_settlement(*s);
  return reconcile_and_publish(c, s->settlement_id);
}

std::string on_payout_status(AnswerContext& c, const storage::OutboxRow& row,
                             std::string_view body) {
  auto& recon = storage::ledger_of(c.store);
  auto s = recon.find_settlement(row.entity_id);
  if (!s) throw std::runtime_error("no details stored for settlement " + row.entity_id);
  const auto payout = read_payout_status(body);
  s->payout_amount = payout.amount;
  s->payout_status = payout.status;
  recon.save_settlement(*s);
  // Before the lines are all booked the reconciliation compares it later.
  if (s->status == "fetching") return payout.status.value_or("RECORDED");
  return reconcile_and_publish(c, s->settlement_id);
}

}  // namespace

std::optional<FollowUp> settlement_fetch_for(const std::optional<std::string>& settlement_id,
                                             const FollowUpSettings& s) {
  if (!settlement_id || !s.settlements.fetch) return std::nullopt;
  return FetchSettlement{*settlement_id};
}

bool is_settlement_operation(storage::OutboxOperation operation) {
  using Op = storage::OutboxOperation;
  return operation == Op::fetch_settlement || operation == Op::fetch_settlement_transactions ||
         operation == Op::fetch_settlement_csv || operation == Op::fetch_payout_status;
}

std::string apply_settlement_answer(AnswerContext& c, const storage::OutboxRow& row,
                                    const klarna::Answer& answer) {
  if (row.operation == storage::OutboxOperation::fetch_settlement)
    return on_details(c, row, answer.body);
  if (row.operation == storage::OutboxOperation::fetch_payout_status)
    return on_payout_status(c, row, answer.body);
  return on_transactions(c, row, answer.body);
}

}  // namespace kpay::processor
