// The Settlements API as klarna-sim serves it: settlement details, the list,
// transactions (paginated), the CSV report and payout status; plus the
// settlement.* webhook payloads. The format: docs/klarna/SETTLEMENTS.md.
#include <cstdio>
#include <ctime>

#include "api_internal.hpp"
#include "kpay/core/percent_encode.hpp"
#include "settlement_render.hpp"

namespace kpay::sim {

namespace {

void write_links(JsonWriter& w, const Settlement& s, const std::string& base) {
  w.key("links")
      .begin_object()
      .field("json_url", settlement_url(base, s, ""))
      .field("transactions_url", settlement_url(base, s, "/transactions"))
      .field("csv_url", settlement_url(base, s, "/csv"))
      .field("payout_status_url", settlement_url(base, s, "/payouts/status"))
      .end_object();
}

void write_line(JsonWriter& w, const Settlement& s, const SettlementLine& l) {
  auto optional = [&](std::string_view key, const std::string& v) {
    if (!v.empty()) w.field(key, v);
  };
  w.begin_object()
      .field("settlement_id", s.id)
      .field("payment_reference", s.payment_reference)
      .field("type", l.type)
      .field("amount", l.amount)
      .field("currency_code", s.currency)
      .field("payment_transaction_id", l.transaction_id);
  optional("payment_transaction_reference", l.transaction_reference);
  optional("payment_capture_id", l.capture_id);
  optional("payment_capture_reference", l.capture_reference);
  optional("payment_refund_id", l.refund_id);
  optional("payment_refund_reference", l.refund_reference);
  optional("dispute_id", l.dispute_id);
  if (l.has_tax) w.field("tax_amount", l.tax_amount).field("tax_rate", l.tax_rate);
  w.field("transaction_date", rfc3339_ms(l.at));
  if (l.type == "SALE" || l.type == "FEE") w.field("capture_date", rfc3339_ms(l.capture_at));
  w.end_object();
}

std::string csv_field(const std::string& v) {
  if (v.find_first_of(",\"\r\n") == std::string::npos) return v;
  std::string out = "\"";
  for (char c : v) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  return out + "\"";
}

}  // namespace

std::string settlement_url(const std::string& base, const Settlement& s, std::string_view tail) {
  return base + "/v2/settlements/" + core::percent_encode(s.id) + std::string(tail);
}

void write_settlement(JsonWriter& w, const Settlement& s, const std::string& base) {
  w.begin_object()
      .field("settlement_id", s.id)
      .field("payment_reference", s.payment_reference)
      .field("payout_id", s.payout_id)
      .field("currency_code", s.currency)
      .field("merchant_settlement_type", "NET")
      .field("interval_start", rfc3339_ms(s.interval_start))
      .field("interval_end", rfc3339_ms(s.interval_end))
      .field("created_at", rfc3339_ms(s.created_at))
      .field("payout_date", rfc3339_ms(s.payout_date))
      .field("transaction_count", s.lines.size());
  w.key("totals")
      .begin_object()
      .field("total_sale_amount", s.totals.sale)
      .field("total_return_amount", s.totals.ret)
      .field("total_chargeback_amount", s.totals.chargeback)
      .field("total_fee_amount", s.totals.fee)
      .field("total_tax_amount", s.totals.tax)
      .field("total_settlement_amount", s.totals.settlement());
  if (s.totals.holdback != 0) w.field("holdback_amount", s.totals.holdback);
  if (s.totals.release != 0) w.field("release_amount", s.totals.release);
  w.end_object();
  write_links(w, s, base);
  w.end_object();
}

void write_settlement_fault(JsonWriter& w, const SettlementFault& f) {
  w.begin_object().field("kind", f.kind);
  if (!f.capture_id.empty()) w.field("payment_capture_id", f.capture_id);
  if (f.delta != 0) w.field("delta", f.delta);
  if (!f.failure_reason.empty()) w.field("failure_reason", f.failure_reason);
  if (!f.line_type.empty()) w.field("type", f.line_type);
  w.end_object();
}

std::string report_created_payload(const Settlement& s, const std::string& base) {
  JsonWriter w;
  w.begin_object()
      .field("settlement_id", s.id)
      .field("payment_reference", s.payment_reference)
      .field("payout_id", s.payout_id)
      .field("settlement_amount", s.totals.settlement())
      .field("currency", s.currency)
      .field("interval_start", rfc3339_ms(s.interval_start))
      .field("interval_end", rfc3339_ms(s.interval_end))
      .field("payout_date", rfc3339_ms(s.payout_date))
      .field("transaction_count", s.lines.size())
      .field("created_at", rfc3339_ms(s.created_at));
  write_links(w, s, base);
  w.end_object();
  return w.take();
}

std::string payout_payload(const Settlement& s, const std::string& base) {
  JsonWriter w;
  w.begin_object()
      .field("settlement_id", s.id)
      .field("payout_id", s.payout_id)
      .field("payment_reference", s.payment_reference)
      .field("status", s.payout_status)
      .field("payout_amount", s.payout_amount)
      .field("currency", s.currency)
      .field("payout_date", rfc3339_ms(s.payout_date));
  if (!s.failure_reason.empty()) w.field("failure_reason", s.failure_reason);
  write_links(w, s, base);
  w.end_object();
  return w.take();
}

std::string payout_status_json(const Settlement& s) {
  JsonWriter w;
  w.begin_object()
      .field("settlement_id", s.id)
      .field("payout_id", s.payout_id)
      .field("payment_reference", s.payment_reference)
      .field("status", s.payout_status)
      .field("amount", s.payout_amount)
      .field("currency_code", s.currency)
      .field("payout_date", rfc3339_ms(s.payout_date));
  if (!s.failure_reason.empty()) w.field("failure_reason", s.failure_reason);
  w.field("updated_at", rfc3339_ms(s.payout_updated_at)).end_object();
  return w.take();
}

void write_pagination(JsonWriter& w, std::size_t offset, std::size_t size, std::size_t count,
                      std::size_t total, const std::string& page_url) {
  auto link = [&](std::size_t at) {
    return page_url + "offset=" + std::to_string(at) + "&size=" + std::to_string(size);
  };
  w.key("pagination")
      .begin_object()
      .field("count", count)
      .field("total", total)
      .field("offset", offset);
  if (offset + count < total) w.field("next", link(offset + count));
  if (offset > 0) w.field("prev", link(offset > size ? offset - size : 0));
  w.end_object();
}

std::string transactions_page_json(const Settlement& s, std::size_t offset, std::size_t size,
                                   const std::string& page_url) {
  const std::size_t total = s.lines.size();
  const std::size_t from = std::min(offset, total);
  const std::size_t to = std::min(total, from + size);
  JsonWriter w;
  w.begin_object().key("transactions").begin_array();
  for (std::size_t i = from; i < to; ++i) write_line(w, s, s.lines[i]);
  w.end_array();
  write_pagination(w, offset, size, to - from, total, page_url);
  w.end_object();
  return w.take();
}

std::string settlement_csv(const Settlement& s) {
  std::string out =
      "settlement_id,payment_reference,type,amount,currency_code,payment_transaction_id,"
      "payment_transaction_reference,payment_capture_id,payment_capture_reference,"
      "payment_refund_id,payment_refund_reference,dispute_id,tax_amount,tax_rate,"
      "transaction_date,capture_date\r\n";
  for (const auto& l : s.lines) {
    const bool captured = l.type == "SALE" || l.type == "FEE";
    const std::string fields[] = {s.id,
                                  s.payment_reference,
                                  l.type,
                                  std::to_string(l.amount),
                                  s.currency,
                                  l.transaction_id,
                                  l.transaction_reference,
                                  l.capture_id,
                                  l.capture_reference,
                                  l.refund_id,
                                  l.refund_reference,
                                  l.dispute_id,
                                  l.has_tax ? std::to_string(l.tax_amount) : std::string(),
                                  l.has_tax ? std::to_string(l.tax_rate) : std::string(),
                                  rfc3339_ms(l.at),
                                  captured ? rfc3339_ms(l.capture_at) : std::string()};
    bool first = true;
    for (const auto& f : fields) {
      if (!first) out.push_back(',');
      first = false;
      out += csv_field(f);
    }
    out += "\r\n";
  }
  return out;
}

std::optional<std::int64_t> parse_time_ms(std::string_view text) {
  const std::string t(text);
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, used = 0;
  std::int64_t ms = 0;
  if (t.size() == 10) {
    if (std::sscanf(t.c_str(), "%4d-%2d-%2d%n", &y, &mo, &d, &used) != 3 || used != 10)
      return std::nullopt;
  } else {
    if (std::sscanf(t.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &used) !=
            6 ||
        used != 19)
      return std::nullopt;
    std::size_t i = 19;
    if (i < t.size() && t[i] == '.') {
      std::int64_t scale = 100;
      for (++i; i < t.size() && t[i] >= '0' && t[i] <= '9'; ++i, scale /= 10)
        ms += (t[i] - '0') * scale;
    }
    const auto zone = t.substr(i);
    if (zone != "Z" && zone != "+00:00") return std::nullopt;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return std::nullopt;
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  return static_cast<std::int64_t>(timegm(&tm)) * 1000 + ms;
}

// ---------------------------------------------------------------------------
// the routes

namespace {

// offset / size query parameters (docs/klarna/SETTLEMENTS.md "Pagination").
std::optional<ApiResponse> read_page(std::string_view target, std::size_t& offset,
                                     std::size_t& size) {
  auto number = [&](std::string_view name, std::int64_t fallback, std::int64_t lo, std::int64_t hi,
                    std::size_t& out) -> bool {
    auto v = query_param(target, name);
    if (v.empty()) {
      out = static_cast<std::size_t>(fallback);
      return true;
    }
    if (v.size() > 12 || v.find_first_not_of("0123456789") != std::string::npos) return false;
    auto n = std::stoll(v);
    if (n < lo || n > hi) return false;
    out = static_cast<std::size_t>(n);
    return true;
  };
  if (!number("offset", 0, 0, 999'999'999'999, offset))
    return invalid("offset", "must be a non-negative integer");
  if (!number("size", 20, 1, 500, size)) return invalid("size", "must be an integer from 1 to 500");
  return std::nullopt;
}

// The request's path and query without offset / size, ready for "offset=…".
std::string page_url(const std::string& base, std::string_view target) {
  auto q = target.find('?');
  std::string out = base + std::string(target.substr(0, q)) + "?";
  if (q == std::string_view::npos) return out;
  auto query = target.substr(q + 1);
  while (!query.empty()) {
    auto amp = query.find('&');
    auto part = query.substr(0, amp);
    auto name = part.substr(0, part.find('='));
    if (!part.empty() && name != "offset" && name != "size") out += std::string(part) + "&";
    if (amp == std::string_view::npos) break;
    query = query.substr(amp + 1);
  }
  return out;
}

}  // namespace

ApiResponse SimApi::Impl::settlements_api(const Route& route, const ApiRequest& req) const {
  const auto& n = route.name;
  std::size_t offset = 0, size = 20;
  if (n == "settlements.list" || n == "settlements.transactions") {
    if (auto bad = read_page(req.target, offset, size)) return *bad;
  }
  if (n == "settlements.list") return list_settlements(req, offset, size);
  auto it = settlements.by_id.find(route.ids.at(0));
  if (it == settlements.by_id.end()) return not_found("settlement");
  const auto& s = it->second;
  if (n == "settlements.read") {
    JsonWriter w;
    write_settlement(w, s, opt.public_url);
    return json_response(200, w.take());
  }
  if (n == "settlements.transactions") {
    return json_response(
        200, transactions_page_json(s, offset, size, page_url(opt.public_url, req.target)));
  }
  if (n == "settlements.csv") {
    return ApiResponse{200, {{"Content-Type", "text/csv; charset=utf-8"}}, settlement_csv(s)};
  }
  if (n == "settlements.payouts.status") return json_response(200, payout_status_json(s));
  return not_found("route");
}

// Oldest first; interval_start (inclusive) and interval_end (exclusive) on
// created_at, currency_code exactly.
ApiResponse SimApi::Impl::list_settlements(const ApiRequest& req, std::size_t offset,
                                           std::size_t size) const {
  std::optional<std::int64_t> from, to;
  for (auto [name, out] : {std::pair{"interval_start", &from}, std::pair{"interval_end", &to}}) {
    auto v = query_param(req.target, name);
    if (v.empty()) continue;
    *out = parse_time_ms(v);
    if (!*out) return invalid(name, "must be an RFC 3339 time, e.g. 2026-12-07T00:00:00Z");
  }
  auto currency = query_param(req.target, "currency_code");
  if (!currency.empty() && !valid_currency(currency))
    return invalid("currency_code", "must be an ISO 4217 code");
  std::vector<const Settlement*> matching;
  for (const auto& [id, s] : settlements.by_id) {
    if ((from && s.created_at < *from) || (to && s.created_at >= *to)) continue;
    if (!currency.empty() && s.currency != currency) continue;
    matching.push_back(&s);
  }
  std::sort(matching.begin(), matching.end(),
            [](const auto* a, const auto* b) { return a->seq < b->seq; });
  const std::size_t first = std::min(offset, matching.size());
  const std::size_t last = std::min(matching.size(), first + size);
  JsonWriter w;
  w.begin_object().key("settlements").begin_array();
  for (std::size_t i = first; i < last; ++i) write_settlement(w, *matching[i], opt.public_url);
  w.end_array();
  write_pagination(w, offset, size, last - first, matching.size(),
                   page_url(opt.public_url, req.target));
  w.end_object();
  return json_response(200, w.take());
}

}  // namespace kpay::sim
