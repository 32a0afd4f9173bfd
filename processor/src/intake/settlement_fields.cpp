// settlement.* payloads. Klarna documents the event types, that
// settlement.report.created links the JSON and CSV reports, and (loosely) a
// settlement_id; every other name here is ASSUMED and read under several
// spellings. Nothing is required: an event without settlement_id is keyed
// by what it has (payout id, report id, else its event_id) and recorded.
#include "intake/settlement_fields.hpp"

#include <string_view>

#include "kpay/core/json_writer.hpp"

namespace kpay::processor {

namespace {

using simdjson::dom::element;

std::optional<std::string> text(element obj, std::string_view key) {
  std::string_view v;
  if (obj.is_object() && obj[key].get_string().get(v) == simdjson::SUCCESS && !v.empty()) {
    return std::string(v);
  }
  return std::nullopt;
}

// The first of `keys` that is a non-empty string, at the top level.
std::optional<std::string> first(element payload, std::initializer_list<std::string_view> keys) {
  for (auto k : keys) {
    if (auto v = text(payload, k)) return v;
  }
  return std::nullopt;
}

// Every https URL in the payload (objects up to three levels, arrays
// included), by its dotted path: the links a report fetcher may follow.
void collect_links(element e, const std::string& path, int depth,
                   std::vector<std::pair<std::string, std::string>>& out) {
  if (depth > 3) return;
  std::string_view s;
  if (e.get_string().get(s) == simdjson::SUCCESS) {
    if (s.starts_with("https://")) out.emplace_back(path, std::string(s));
    return;
  }
  simdjson::dom::object obj;
  if (e.get_object().get(obj) == simdjson::SUCCESS) {
    for (auto field : obj) {
      const std::string key(field.key);
      collect_links(field.value, path.empty() ? key : path + "." + key, depth + 1, out);
    }
    return;
  }
  simdjson::dom::array arr;
  if (e.get_array().get(arr) == simdjson::SUCCESS) {
    std::size_t i = 0;
    for (element item : arr)
      collect_links(item, path + "[" + std::to_string(i++) + "]", depth + 1, out);
  }
}

bool contains(std::string_view hay, std::string_view needle) {
  return hay.find(needle) != std::string_view::npos;
}

// The JSON and CSV report links: by the name of the field (report_urls.json,
// csv_url, …), else by the link itself (…/csv, .csv).
void pick_reports(const std::vector<std::pair<std::string, std::string>>& links,
                  SettlementFacts& f) {
  for (const auto& [path, url] : links) {
    const bool csv = contains(path, "csv") || url.ends_with("/csv") || url.ends_with(".csv");
    if (csv) {
      if (!f.report_csv_url) f.report_csv_url = url;
    } else if (contains(path, "json") || contains(path, "report")) {
      if (!f.report_json_url) f.report_json_url = url;
    }
  }
}

std::string links_object(const std::vector<std::pair<std::string, std::string>>& links) {
  core::JsonWriter w;
  w.begin_object();
  for (const auto& [path, url] : links) w.field(path, url);
  w.end_object();
  return w.take();
}

}  // namespace

std::optional<std::string> read_settlement_fields(element payload, const klarna::Envelope& env,
                                                  Payload& p) {
  SettlementFacts f;
  f.settlement_id = first(payload, {"settlement_id"});
  f.payout_id = first(payload, {"payout_id", "settlement_payout_id"});
  f.report_id = first(payload, {"report_id", "settlement_report_id"});
  f.payout_date = first(payload, {"payout_date", "payout_at", "paid_at"});
  f.period_start = first(payload, {"interval_start", "period_start", "settlement_period_start"});
  f.period_end = first(payload, {"interval_end", "period_end", "settlement_period_end"});
  for (std::string_view k : {"payout_amount", "settlement_amount", "total_amount", "amount"}) {
    element e;
    if (payload[k].get(e) != simdjson::SUCCESS || e.is_null()) continue;
    std::int64_t v = 0;
    if (e.get_int64().get(v) != simdjson::SUCCESS) return std::string(k);
    if (!p.amount) p.amount = v;
  }
  if (!p.currency) p.currency = first(payload, {"payout_currency", "settlement_currency"});
  std::vector<std::pair<std::string, std::string>> links;
  collect_links(payload, "", 0, links);
  pick_reports(links, f);
  f.links_json = links_object(links);
  if (!env.entity_id_is_fallback && f.settlement_id == env.entity_id) {
    f.routed_by = "settlement_id";
  } else if (!env.entity_id_is_fallback && f.payout_id == env.entity_id) {
    f.routed_by = "payout_id";
  } else if (!env.entity_id_is_fallback && f.report_id == env.entity_id) {
    f.routed_by = "report_id";
  } else {
    f.routed_by = "event_id";
  }
  p.settlement = std::make_shared<const SettlementFacts>(std::move(f));
  return std::nullopt;
}

}  // namespace kpay::processor
