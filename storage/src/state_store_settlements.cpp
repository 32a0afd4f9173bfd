// What settlement.* webhooks carried (v7): ids, report links, amounts and
// dates, one row per event, for klarnactl and a later settlements fetcher.
#include "kpay/storage/state_store.hpp"
#include "state_store_impl.hpp"

namespace kpay::storage {

bool StateStore::insert_settlement_event(const SettlementEventRow& r) {
  auto& s = impl_->prep(
      impl_->insert_settlement_event,
      "INSERT OR IGNORE INTO settlement_events (event_id, event_type, entity_id, routed_by, "
      "account_id, settlement_id, payout_id, report_id, report_json_url, report_csv_url, amount, "
      "currency, payout_date, period_start, period_end, links_json, occurred_at_ms) "
      "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
  s.bind_view(1, r.event_id)
      .bind_view(2, r.event_type)
      .bind_view(3, r.entity_id)
      .bind_view(4, r.routed_by);
  s.bind_view(5, r.account_id)
      .bind_view(6, r.settlement_id)
      .bind_view(7, r.payout_id)
      .bind_view(8, r.report_id);
  s.bind_view(9, r.report_json_url).bind_view(10, r.report_csv_url).bind_view(11, r.amount);
  s.bind_view(12, r.currency).bind_view(13, r.payout_date).bind_view(14, r.period_start);
  s.bind_view(15, r.period_end).bind_view(16, r.links_json).bind_view(17, r.occurred_at_ms);
  s.run();
  return database().changes() == 1;
}

std::vector<SettlementEventRow> StateStore::settlement_events(std::size_t limit) {
  auto s = database().prepare(
      "SELECT event_id, event_type, entity_id, routed_by, account_id, settlement_id, payout_id, "
      "report_id, report_json_url, report_csv_url, amount, currency, payout_date, period_start, "
      "period_end, links_json, occurred_at_ms FROM settlement_events "
      "ORDER BY occurred_at_ms DESC, event_id LIMIT ?");
  s.bind(1, static_cast<std::int64_t>(limit));
  std::vector<SettlementEventRow> out;
  while (s.step()) {
    SettlementEventRow r;
    r.event_id = s.text(0);
    r.event_type = s.text(1);
    r.entity_id = s.text(2);
    r.routed_by = s.text(3);
    r.account_id = s.optional_text(4);
    r.settlement_id = s.optional_text(5);
    r.payout_id = s.optional_text(6);
    r.report_id = s.optional_text(7);
    r.report_json_url = s.optional_text(8);
    r.report_csv_url = s.optional_text(9);
    r.amount = s.optional_int64(10);
    r.currency = s.optional_text(11);
    r.payout_date = s.optional_text(12);
    r.period_start = s.optional_text(13);
    r.period_end = s.optional_text(14);
    r.links_json = s.text(15);
    r.occurred_at_ms = s.int64(16);
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace kpay::storage
