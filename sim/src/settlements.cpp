// klarna-sim settles: settlement reports from the sim's own captures, refunds
// and lost disputes (chargebacks) with the fee schedule, their payouts, the
// fault modes, the schedule and the /_sim/settlements controls. The wire
// format: docs/klarna/SETTLEMENTS.md; the controls: docs/SIM.md "Settlements".
#include "api_internal.hpp"
#include "settlement_render.hpp"

namespace kpay::sim {

namespace {

std::int64_t basis_points(std::int64_t amount, std::int64_t bp) {
  return (amount * bp + 5000) / 10000;  // rounded half up (amounts are not negative)
}

const std::set<std::string, std::less<>> kFaultKinds = {
    "omit_capture",  "duplicate_capture", "wrong_amount", "payout_mismatch",
    "payout_failed", "holdback",          "fee_refund",   "unknown_type"};

// {"faults": [{"kind", "payment_capture_id"?, "delta"?, "failure_reason"?}, …]}.
std::optional<ApiResponse> parse_faults(simdjson::dom::element list,
                                        std::vector<SettlementFault>& out) {
  simdjson::dom::array arr;
  if (list.get_array().get(arr) != simdjson::SUCCESS)
    return invalid("faults", "must be an array of objects");
  std::set<std::string> seen;
  for (auto item : arr) {
    SettlementFault f;
    f.kind = Body::str(item, "kind").value_or("");
    if (!kFaultKinds.count(f.kind)) {
      return invalid("faults[].kind",
                     "one of omit_capture, duplicate_capture, wrong_amount, payout_mismatch, "
                     "payout_failed, holdback, fee_refund, unknown_type");
    }
    if (!seen.insert(f.kind).second) return invalid("faults[].kind", "each kind at most once");
    f.capture_id = Body::str(item, "payment_capture_id").value_or("");
    auto delta = Body::integer(item, "delta");
    if (f.kind == "wrong_amount") f.delta = delta.value_or(100);
    if (f.kind == "payout_mismatch") f.delta = delta.value_or(-100);
    if ((f.kind == "wrong_amount" || f.kind == "payout_mismatch") && f.delta == 0)
      return invalid("faults[].delta", "must not be 0");
    if (f.kind == "holdback" || f.kind == "unknown_type") {
      f.delta = delta.value_or(f.kind == "holdback" ? 1000 : 100);
      if (f.delta <= 0) return invalid("faults[].delta", "must be a positive amount");
    }
    if (f.kind == "unknown_type") {
      f.line_type = Body::str(item, "type").value_or("PARTNER_BONUS");
      if (f.line_type.empty()) return invalid("faults[].type", "must not be empty");
    }
    if (f.kind == "payout_failed") {
      f.failure_reason =
          Body::str(item, "failure_reason").value_or("INSUFFICIENT_BANK_ACCOUNT_DETAILS");
    }
    out.push_back(std::move(f));
  }
  return std::nullopt;
}

int type_rank(const std::string& type) {
  if (type == "SALE") return 0;
  if (type == "FEE") return 1;
  if (type == "RETURN") return 2;
  return 3;
}

bool line_before(const SettlementLine& a, const SettlementLine& b) {
  if (a.at != b.at) return a.at < b.at;
  return type_rank(a.type) < type_rank(b.type);
}

SettlementTotals totals_of(const std::vector<SettlementLine>& lines) {
  SettlementTotals t;
  for (const auto& l : lines) {
    if (l.type == "SALE") t.sale += l.amount;
    if (l.type == "RETURN") t.ret += l.amount;
    if (l.type == "CHARGEBACK") t.chargeback += l.amount;
    if (l.type == "FEE") {
      t.fee += l.amount;
      t.tax += l.tax_amount;
    }
    if (l.type == "HOLDBACK") t.holdback += l.amount;
    if (l.type == "RELEASE") t.release += l.amount;
    if (l.type == "FEE_REFUND") t.fee_refund += l.amount;
  }
  return t;
}

std::vector<SettlementLine>::iterator find_sale(std::vector<SettlementLine>& lines,
                                                const std::string& capture_id) {
  return std::find_if(lines.begin(), lines.end(), [&](const SettlementLine& l) {
    return l.type == "SALE" && (capture_id.empty() || l.capture_id == capture_id);
  });
}

// The fee on a capture of `amount`, as a FEE line next to its SALE line.
SettlementLine fee_line(const SettlementLine& sale, std::int64_t amount,
                        const SettlementOptions& o) {
  SettlementLine l = sale;
  l.type = "FEE";
  l.amount = o.fee_fixed + basis_points(amount, o.fee_percent_bp);
  l.has_tax = true;
  l.tax_rate = o.fee_tax_bp;
  l.tax_amount = basis_points(l.amount, o.fee_tax_bp);
  return l;
}

// Ten characters, like the reference on a bank statement (format assumed).
std::string new_payment_reference(std::mt19937_64& rng) {
  static const char* alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
  std::string out;
  for (int i = 0; i < 10; ++i) out.push_back(alphabet[rng() % 32]);
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------
// what is unsettled

SettlementLine SimApi::Impl::sale_line(const Capture& c) const {
  const auto& t = transactions.at(c.transaction_id);
  SettlementLine l;
  l.type = "SALE";
  l.amount = c.amount;
  l.transaction_id = t.id;
  l.transaction_reference = t.reference;
  l.capture_id = c.id;
  l.capture_reference = c.reference;
  l.at = l.capture_at = c.created_at;
  return l;
}

// Captures, refunds and lost disputes in `currency` not yet in a report,
// in transaction_date order (no FEE lines yet).
std::vector<SettlementLine> SimApi::Impl::unsettled_lines(const std::string& currency) const {
  std::vector<SettlementLine> out;
  for (const auto& [id, c] : captures) {
    if (transactions.at(c.transaction_id).currency == currency && settlements.open(id))
      out.push_back(sale_line(c));
  }
  for (const auto& [id, r] : refunds) {
    const auto& t = transactions.at(r.transaction_id);
    if (t.currency != currency || !settlements.open(id)) continue;
    SettlementLine l;
    l.type = "RETURN";
    l.amount = r.amount;
    l.transaction_id = t.id;
    l.transaction_reference = t.reference;
    l.capture_id = r.capture_id;
    if (auto c = captures.find(r.capture_id); c != captures.end())
      l.capture_reference = c->second.reference;
    l.refund_id = r.id;
    l.refund_reference = r.reference;
    l.at = r.created_at;
    out.push_back(std::move(l));
  }
  for (const auto& [id, d] : disputes) {
    if (d.currency != currency || d.state != DisputeState::closed || d.outcome != "LOST" ||
        !settlements.open(id))
      continue;
    SettlementLine l;
    l.type = "CHARGEBACK";
    l.amount = d.amount;
    l.transaction_id = d.transaction_id;
    l.transaction_reference = transactions.at(d.transaction_id).reference;
    l.capture_id = d.capture_id;
    l.dispute_id = d.id;
    l.at = d.updated_at;
    out.push_back(std::move(l));
  }
  std::stable_sort(out.begin(), out.end(), line_before);
  return out;
}

// Currencies with anything unsettled, the one with the oldest item first.
std::vector<std::string> SimApi::Impl::unsettled_currencies() const {
  std::map<std::string, std::int64_t> oldest;
  auto note = [&](const std::string& cur, std::int64_t at) {
    auto [it, fresh] = oldest.emplace(cur, at);
    if (!fresh) it->second = std::min(it->second, at);
  };
  for (const auto& [id, c] : captures)
    if (settlements.open(id)) note(transactions.at(c.transaction_id).currency, c.created_at);
  for (const auto& [id, r] : refunds)
    if (settlements.open(id)) note(transactions.at(r.transaction_id).currency, r.created_at);
  for (const auto& [id, d] : disputes)
    if (d.state == DisputeState::closed && d.outcome == "LOST" && settlements.open(id))
      note(d.currency, d.updated_at);
  std::vector<std::pair<std::int64_t, std::string>> order;
  for (const auto& [cur, at] : oldest) order.emplace_back(at, cur);
  std::sort(order.begin(), order.end());
  std::vector<std::string> out;
  for (auto& [at, cur] : order) out.push_back(std::move(cur));
  return out;
}

// ---------------------------------------------------------------------------
// faults that change the lines

// A capture's SALE line once more: again in this report, or (named, or the
// latest when this report has none) from an earlier report.
std::optional<ApiResponse> SimApi::Impl::duplicate_sale(std::vector<SettlementLine>& lines,
                                                        SettlementFault& f,
                                                        const std::string& currency) const {
  SettlementLine copy;
  if (auto it = find_sale(lines, f.capture_id); it != lines.end()) {
    copy = *it;
  } else {
    std::string id = f.capture_id;
    if (id.empty()) {
      for (auto r = settlements.reported_captures.rbegin();
           r != settlements.reported_captures.rend() && id.empty(); ++r) {
        if (transactions.at(captures.at(*r).transaction_id).currency == currency) id = *r;
      }
    }
    auto c = captures.find(id);
    if (id.empty() || c == captures.end() || !settlements.reported.count(id) ||
        transactions.at(c->second.transaction_id).currency != currency) {
      return conflict("duplicate_capture: no capture in " + currency +
                      " in this or an earlier report" + (id.empty() ? "" : " (" + id + ")"));
    }
    copy = sale_line(c->second);
  }
  f.capture_id = copy.capture_id;
  auto at = std::find_if(lines.begin(), lines.end(),
                         [&](const SettlementLine& l) { return line_before(copy, l); });
  lines.insert(at, std::move(copy));
  return std::nullopt;
}

std::optional<ApiResponse> SimApi::Impl::apply_line_faults(std::vector<SettlementLine>& lines,
                                                           std::vector<SettlementFault>& faults,
                                                           const std::string& currency) const {
  for (auto& f : faults) {
    if (f.kind == "duplicate_capture") {
      if (auto bad = duplicate_sale(lines, f, currency)) return bad;
    } else if (f.kind == "wrong_amount") {
      auto it = find_sale(lines, f.capture_id);
      if (it == lines.end())
        return conflict("wrong_amount: no such capture in this " + currency + " report");
      if (it->amount + f.delta <= 0)
        return invalid("faults[].delta", "would make the SALE amount zero or negative");
      it->amount += f.delta;
      f.capture_id = it->capture_id;
    } else if (auto bad = add_other_lines(lines, f)) {
      return bad;
    }
  }
  return std::nullopt;
}

// Lines of the types beyond SALE/FEE/RETURN/CHARGEBACK, at the end of the
// report: a holdback of `delta` and the release of half of it; the first
// fee refunded; a line of a type Klarna does not list (not in the totals:
// its direction is unknown).
std::optional<ApiResponse> SimApi::Impl::add_other_lines(std::vector<SettlementLine>& lines,
                                                         const SettlementFault& f) const {
  SettlementLine l;
  l.at = now();
  if (f.kind == "holdback") {
    l.type = "HOLDBACK";
    l.amount = f.delta;
    lines.push_back(l);
    l.type = "RELEASE";
    l.amount = f.delta / 2;
    if (l.amount > 0) lines.push_back(l);
  } else if (f.kind == "fee_refund") {
    auto fee = std::find_if(lines.begin(), lines.end(),
                            [](const SettlementLine& x) { return x.type == "FEE"; });
    if (fee == lines.end()) return conflict("fee_refund: no FEE line in this report");
    l = *fee;
    l.type = "FEE_REFUND";
    l.has_tax = false;
    l.tax_amount = l.tax_rate = 0;
    l.at = now();
    lines.push_back(l);
  } else if (f.kind == "unknown_type") {
    l.type = f.line_type;
    l.amount = f.delta;
    lines.push_back(l);
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// a report

// Builds, stores and announces one report; 201 with it (and the faults as
// applied), or 409 / 400 when a fault cannot apply (nothing changes then).
ApiResponse SimApi::Impl::make_settlement(const std::string& currency,
                                          std::vector<SettlementFault> faults) {
  auto items = unsettled_lines(currency);
  std::string omitted;
  for (auto& f : faults) {
    if (f.kind != "omit_capture") continue;
    auto it = find_sale(items, f.capture_id);
    if (it == items.end()) {
      return conflict("omit_capture: no unsettled capture in " + currency +
                      (f.capture_id.empty() ? "" : " with id " + f.capture_id));
    }
    omitted = f.capture_id = it->capture_id;
    items.erase(it);
  }
  std::vector<SettlementLine> lines;
  for (const auto& l : items) {
    lines.push_back(l);
    if (l.type == "SALE") lines.push_back(fee_line(l, l.amount, opt.settlements));
  }
  if (auto bad = apply_line_faults(lines, faults, currency)) return *bad;

  Settlement st;
  st.seq = ++settlements.seq;
  st.id = "krn:settlement:eu1:settlement:" + uuid();
  st.payment_reference = new_payment_reference(rng);
  st.payout_id = "krn:settlement:eu1:payout:" + uuid();
  st.currency = currency;
  st.created_at = st.interval_end = st.payout_updated_at = now();
  auto cut = settlements.last_cut.find(currency);
  st.interval_start = cut != settlements.last_cut.end() ? cut->second
                      : items.empty()                   ? st.created_at
                                                        : std::min(items.front().at, st.created_at);
  st.payout_date = st.created_at + opt.settlements.payout_delay_ms;
  st.totals = totals_of(lines);
  st.payout_amount = st.totals.settlement();
  st.payout_status = "PROCESSED";
  for (const auto& f : faults) {
    if (f.kind == "payout_mismatch") st.payout_amount += f.delta;
    if (f.kind == "payout_failed") {
      st.payout_status = "FAILED";
      st.failure_reason = f.failure_reason;
    }
  }
  st.lines = std::move(lines);
  st.faults = std::move(faults);

  for (const auto& l : items) {
    const auto& id = l.type == "SALE"     ? l.capture_id
                     : l.type == "RETURN" ? l.refund_id
                                          : l.dispute_id;
    settlements.reported.insert(id);
    if (l.type == "SALE") settlements.reported_captures.push_back(id);
  }
  if (!omitted.empty()) settlements.withheld.insert(omitted);
  settlements.last_cut[currency] = st.interval_end;
  auto& stored = settlements.by_id.emplace(st.id, std::move(st)).first->second;
  if (stored.payout_status == "PROCESSED") settlements.unconfirmed.insert(stored.id);

  emit("settlement.report.created", stored.id, report_created_payload(stored, opt.public_url),
       opt.account_id);
  emit(
      stored.payout_status == "FAILED" ? "settlement.payout.failed" : "settlement.payout.processed",
      stored.id, payout_payload(stored, opt.public_url), opt.account_id);
  log.info("settlement report created", {{"settlement_id", stored.id},
                                         {"currency", stored.currency},
                                         {"transactions", stored.lines.size()},
                                         {"faults", stored.faults.size()}});
  return json_response(201, render_sim_settlement(stored));
}

// The /_sim view: the details plus the faults as applied.
std::string SimApi::Impl::render_sim_settlement(const Settlement& s) const {
  JsonWriter w;
  write_settlement(w, s, opt.public_url);
  std::string details = w.take();
  JsonWriter extra;
  extra.begin_object()
      .field("payout_status", s.payout_status)
      .field("payout_amount", s.payout_amount)
      .key("faults")
      .begin_array();
  for (const auto& f : s.faults) write_settlement_fault(extra, f);
  extra.end_array().end_object();
  // Both are objects: splice the extra fields in before the closing brace.
  details.pop_back();
  return details + "," + extra.take().substr(1);
}

// PROCESSED → CONFIRMED or FAILED, with its webhook.
bool SimApi::Impl::move_payout(Settlement& s, const std::string& status,
                               const std::string& reason) {
  if (s.payout_status != "PROCESSED" || (status != "CONFIRMED" && status != "FAILED")) return false;
  s.payout_status = status;
  s.failure_reason = status == "FAILED" ? reason : std::string();
  s.payout_updated_at = now();
  settlements.unconfirmed.erase(s.id);
  emit("settlement.payout." + lower_dash(status), s.id, payout_payload(s, opt.public_url),
       opt.account_id);
  return true;
}

// Payouts whose date has come are confirmed; every settlements.every_ms a
// report per currency with anything unsettled (the queued faults go into the
// first one; if they cannot apply, it is made without them).
void SimApi::Impl::settlement_tick_locked() {
  const auto t = now();
  std::vector<std::string> due;
  for (const auto& id : settlements.unconfirmed) {
    if (t >= settlements.by_id.at(id).payout_date) due.push_back(id);
  }
  for (const auto& id : due) move_payout(settlements.by_id.at(id), "CONFIRMED", "");
  const auto every = opt.settlements.every_ms;
  if (every <= 0) return;
  if (settlements.next_run_ms < 0) settlements.next_run_ms = t + every;
  if (t < settlements.next_run_ms) return;
  settlements.next_run_ms = t + every;
  for (const auto& currency : unsettled_currencies()) {
    auto faults = std::exchange(settlements.next_faults, {});
    auto res = make_settlement(currency, faults);
    if (res.status != 201 && !faults.empty()) {
      log.warn("queued settlement faults could not apply; report made without them",
               {{"currency", currency}, {"error", res.body}});
      make_settlement(currency, {});
    }
  }
}

// ---------------------------------------------------------------------------
// /_sim/settlements

ApiResponse SimApi::Impl::list_sim_settlements() const {
  std::vector<const Settlement*> all;
  for (const auto& [id, s] : settlements.by_id) all.push_back(&s);
  std::sort(all.begin(), all.end(), [](const auto* a, const auto* b) { return a->seq < b->seq; });
  JsonWriter w;
  w.begin_object().key("settlements").begin_array();
  for (const auto* s : all) w.raw(render_sim_settlement(*s));
  w.end_array().key("queued_faults").begin_array();
  for (const auto& f : settlements.next_faults) write_settlement_fault(w, f);
  w.end_array().key("unsettled_currencies").begin_array();
  for (const auto& c : unsettled_currencies()) w.value(c);
  w.end_array().key("withheld_captures").begin_array();
  for (const auto& c : settlements.withheld) w.value(c);
  w.end_array();
  if (settlements.next_run_ms >= 0) {
    w.field("next_scheduled_at", rfc3339_ms(settlements.next_run_ms))
        .field("next_scheduled_at_ms", settlements.next_run_ms);
  }
  w.end_object();
  return json_response(200, w.take());
}

ApiResponse SimApi::Impl::settlement_control(const ApiRequest& req,
                                             const std::vector<std::string>& s, const Body& body) {
  const auto n = s.size();
  const auto& m = req.method;
  std::vector<SettlementFault> faults;
  if (auto list = body.child("faults")) {
    if (auto bad = parse_faults(*list, faults)) return *bad;
  }
  if (n == 2 && m == "GET") return list_sim_settlements();
  if (n == 2 && m == "POST") {
    auto currency = body.str("currency");
    if (currency && !valid_currency(*currency))
      return invalid("currency", "must be an ISO 4217 code");
    if (!currency) {
      auto open = unsettled_currencies();
      currency = open.empty() ? "EUR" : open.front();
    }
    if (!body.child("faults")) faults = std::exchange(settlements.next_faults, {});
    return make_settlement(*currency, std::move(faults));
  }
  if (n == 3 && s[2] == "faults" && m == "POST") {
    settlements.next_faults = std::move(faults);
    return list_sim_settlements();
  }
  if (n == 4 && s[3] == "payout" && m == "POST") {
    auto it = settlements.by_id.find(s[2]);
    if (it == settlements.by_id.end()) return not_found("settlement");
    auto status = body.str("status").value_or("");
    if (status != "CONFIRMED" && status != "FAILED")
      return invalid("status", "must be CONFIRMED or FAILED");
    auto reason = body.str("failure_reason").value_or("INSUFFICIENT_BANK_ACCOUNT_DETAILS");
    if (!move_payout(it->second, status, reason))
      return conflict("The payout is " + it->second.payout_status + "; only PROCESSED moves");
    return json_response(200, payout_status_json(it->second));
  }
  return not_found("sim control route");
}

}  // namespace kpay::sim
