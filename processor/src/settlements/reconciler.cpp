// Settlement reconciliation (reconciler.hpp). The report's shape is
// docs/klarna/SETTLEMENTS.md: amounts never negative (but CORRECTION's), the
// type gives the direction (settlements/settlement_types.hpp); net = the sum
// of each line's amount in its direction − the tax (FEE lines' tax and TAX
// lines). A line of a type not in that list is an unrecognised_line finding;
// its direction unknown, the net and the payout are not checked then.
#include "kpay/processor/reconciler.hpp"

#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "kpay/core/json_writer.hpp"
#include "settlements/settlement_types.hpp"

namespace kpay::processor {

namespace {

using storage::FindingRow;
using storage::SettlementLineRow;
using storage::SettlementRow;
using storage::SubRecordRow;

std::string finding_id(std::string_view kind, const std::optional<std::string>& settlement,
                       std::string_view subject) {
  std::string id(kind);
  if (settlement) id += ":" + *settlement;
  return id + ":" + std::string(subject);
}

std::string line_json(const SettlementLineRow& l) {
  core::JsonWriter w;
  w.begin_object().field("settlement_id", l.settlement_id).field("line_no", l.line_no);
  w.field("type", l.type).field("amount", l.amount);
  if (l.tax_amount != 0) w.field("tax_amount", l.tax_amount);
  if (l.currency) w.field("currency", *l.currency);
  if (l.payment_transaction_id) w.field("payment_transaction_id", *l.payment_transaction_id);
  if (l.capture_id) w.field("capture_id", *l.capture_id);
  if (l.refund_id) w.field("refund_id", *l.refund_id);
  if (l.dispute_id) w.field("dispute_id", *l.dispute_id);
  return w.end_object().take();
}

std::string record_json(const SubRecordRow& r, const std::optional<std::string>& currency) {
  core::JsonWriter w;
  w.begin_object().field("kind", r.kind).field("id", r.id);
  w.field("payment_transaction_id", r.transaction_id).field("amount", r.amount);
  if (currency) w.field("currency", *currency);
  w.field("occurred_at_ms", r.occurred_at_ms);
  return w.end_object().take();
}

std::string amount_json(std::string_view name, std::optional<std::int64_t> amount,
                        const std::optional<std::string>& currency) {
  core::JsonWriter w;
  w.begin_object();
  if (amount) w.field(name, *amount);
  if (currency) w.field("currency", *currency);
  return w.end_object().take();
}

// One settlement's reconciliation: the lines, then the totals.
class SettlementCheck {
 public:
  SettlementCheck(storage::Store& store, const SettlementRow& s, std::int64_t now)
      : store_(store), recon_(storage::ledger_of(store)), s_(s), now_(now) {}

  ReconcileResult run() {
    const auto lines = recon_.lines(s_.settlement_id);
    for (const auto& l : lines) count_ids(l);
    for (const auto& l : lines) check_line(l);
    check_totals();
    resolve_stale();
    out_.lines = static_cast<std::int64_t>(lines.size());
    return std::move(out_);
  }

 private:
  void add(std::string_view kind, std::string_view subject, std::string ours, std::string theirs,
           std::string detail) {
    FindingRow f;
    f.kind = std::string(kind);
    f.settlement_id = s_.settlement_id;
    f.subject = std::string(subject);
    f.finding_id = finding_id(kind, f.settlement_id, subject);
    f.ours_json = std::move(ours);
    f.theirs_json = std::move(theirs);
    f.detail = std::move(detail);
    f.found_at_ms = now_;
    holds_.insert(f.finding_id);
    if (recon_.insert_finding(f)) out_.found.push_back(std::move(f));
  }

  // Findings of this settlement stored open that this check no longer finds:
  // what they lacked arrived since (a dispute lost, a capture or refund
  // booked after Klarna settled it: webhooks and reports race).
  void resolve_stale() {
    for (auto& f : recon_.findings_of(s_.settlement_id)) {
      if (f.resolved_at_ms || holds_.contains(f.finding_id)) continue;
      if (!recon_.resolve_finding(f.finding_id, now_)) continue;
      f.resolved_at_ms = now_;
      ++out_.resolved;
      out_.cleared.push_back(std::move(f));
    }
  }

  void count_ids(const SettlementLineRow& l) {
    if (l.type == "SALE" && l.capture_id) ++seen_captures_[*l.capture_id];
    if (l.type == "RETURN" && l.refund_id) ++seen_refunds_[*l.refund_id];
  }

  std::optional<std::string> currency_of(const SubRecordRow& r) {
    if (r.currency) return r.currency;
    auto t = store_.find_transaction(r.transaction_id);
    return t ? t->currency : std::nullopt;
  }

  // The line's currency against the settlement's (and, when given, that of
  // the processor's record): one finding per line at most.
  bool check_line_currency(const SettlementLineRow& l, std::string_view subject,
                           const SubRecordRow* ours = nullptr,
                           const std::optional<std::string>& our_currency = std::nullopt) {
    if (!l.currency) return false;
    if (s_.currency && *l.currency != *s_.currency) {
      add(finding_kind::currency, subject,
          ours ? record_json(*ours, our_currency)
               : amount_json("payout_amount", s_.payout_amount, s_.currency),
          line_json(l), "line in " + *l.currency + ", settlement in " + *s_.currency);
      return true;
    }
    if (ours && our_currency && *our_currency != *l.currency) {
      add(finding_kind::currency, subject, record_json(*ours, our_currency), line_json(l),
          ours->kind + " in " + *our_currency + ", settled in " + *l.currency);
      return true;
    }
    return false;
  }

  void check_line(const SettlementLineRow& l) {
    sums_[l.type] += l.amount;
    if (l.type == "FEE") tax_ += l.tax_amount;
    const auto* type = settlements::line_type_of(l.type);
    if (!type) return unrecognised(l);
    if (l.type == "TAX") {
      tax_ += l.amount;
    } else {
      net_ += type->sign * l.amount;
    }
    if (l.type == "SALE") return check_money(l, "capture", l.capture_id, seen_captures_);
    if (l.type == "RETURN") return check_money(l, "refund", l.refund_id, seen_refunds_);
    if (l.type == "CHARGEBACK") return check_chargeback(l);
    if (l.type == "FEE") return check_fee(l);
    check_line_currency(l, "line:" + std::to_string(l.line_no));
  }

  // A type Klarna's list does not hold: kept, listed and counted as a
  // finding; the net cannot be checked without its direction.
  void unrecognised(const SettlementLineRow& l) {
    ++unrecognised_;
    add(finding_kind::unrecognised, "line:" + std::to_string(l.line_no), "{}", line_json(l),
        "a " + l.type +
            " line: not a settlement transaction type this processor knows, so neither "
            "matched nor counted (the net and the payout are not checked)");
  }

  // A SALE against its capture, a RETURN against its refund.
  void check_money(const SettlementLineRow& l, const std::string& kind,
                   const std::optional<std::string>& id,
                   const std::unordered_map<std::string, int>& seen) {
    const std::string subject = id.value_or("line:" + std::to_string(l.line_no));
    auto ours = id ? store_.find_sub_record(kind, *id) : std::nullopt;
    if (!ours) {
      check_line_currency(l, subject);
      add(finding_kind::unexpected, subject, "{}", line_json(l),
          (id ? "no " + kind + " " + *id : "a " + l.type + " line names no " + kind) +
              " executed by this processor");
      return;
    }
    const auto currency = currency_of(*ours);
    check_line_currency(l, subject, &*ours, currency);
    auto elsewhere = recon_.settled_before(kind, *id, s_);
    const bool twice_here = seen.at(*id) > 1;
    if ((twice_here || !elsewhere.empty()) && reported_twice_.insert(*id).second) {
      add(finding_kind::duplicate, subject, record_json(*ours, currency), line_json(l),
          kind + " settled " +
              (twice_here ? std::to_string(seen.at(*id)) + " times in this settlement"
                          : "before in " + elsewhere.front()));
    }
    if (l.amount != ours->amount) {
      add(finding_kind::amount, subject, record_json(*ours, currency), line_json(l),
          kind + " of " + std::to_string(ours->amount) + " settled as " + std::to_string(l.amount));
    }
    out_.resolved += recon_.resolve_findings(std::string(finding_kind::missing), *id, now_);
  }

  // A CHARGEBACK against the dispute it names (closed LOST), else the
  // transaction's chargebacks.
  std::optional<std::int64_t> charged_back(const SettlementLineRow& l) {
    if (l.dispute_id) {
      auto d = store_.find_dispute(*l.dispute_id);
      if (d && d->outcome == "LOST") return d->amount.value_or(0);
    }
    std::optional<std::int64_t> sum;
    if (l.payment_transaction_id) {
      for (const auto& r : store_.sub_records(*l.payment_transaction_id)) {
        if (r.kind == "chargeback") sum = sum.value_or(0) + r.amount;
      }
    }
    return sum;
  }

  void check_chargeback(const SettlementLineRow& l) {
    const std::string subject = l.dispute_id.value_or(
        l.payment_transaction_id.value_or("line:" + std::to_string(l.line_no)));
    check_line_currency(l, subject);
    const auto ours = charged_back(l);
    if (!ours) {
      add(finding_kind::unexpected, subject, "{}", line_json(l),
          "no dispute lost and no chargeback known for this line");
      return;
    }
    if (*ours != l.amount) {
      add(finding_kind::amount, subject, amount_json("chargeback_amount", ours, std::nullopt),
          line_json(l),
          "chargebacks of " + std::to_string(*ours) + " settled as " + std::to_string(l.amount));
    }
  }

  // A FEE line is about a capture (else a transaction) this processor
  // executed; Klarna's pricing is the partner's contract, not checked here.
  void check_fee(const SettlementLineRow& l) {
    const std::string subject = "fee:" + l.capture_id.value_or(l.payment_transaction_id.value_or(
                                             "line:" + std::to_string(l.line_no)));
    if (check_line_currency(l, subject)) return;
    const bool known = l.capture_id ? store_.find_sub_record("capture", *l.capture_id).has_value()
                       : l.payment_transaction_id
                           ? store_.find_transaction(*l.payment_transaction_id).has_value()
                           : false;
    if (!known) {
      add(finding_kind::unexpected, subject, "{}", line_json(l),
          "fee for a capture this processor did not execute");
    }
  }

  void check_total(std::string_view name, std::optional<std::int64_t> reported,
                   std::int64_t computed) {
    if (!reported || *reported == computed) return;
    add(finding_kind::payout, name, amount_json(name, computed, s_.currency),
        amount_json(name, reported, s_.currency),
        std::string(name) + " is " + std::to_string(*reported) + ", the lines add up to " +
            std::to_string(computed));
  }

  // Each total against its lines; the report's net and the payout against
  // every line in its direction less the tax, unless a line's direction is
  // unknown (an unrecognised_line finding says so).
  void check_totals() {
    check_total("total_sale_amount", s_.total_sale_amount, sums_["SALE"]);
    check_total("total_return_amount", s_.total_return_amount, sums_["RETURN"]);
    check_total("total_fee_amount", s_.total_fee_amount, sums_["FEE"]);
    check_total("total_tax_amount", s_.total_tax_amount, tax_);
    check_total("total_chargeback_amount", s_.total_chargeback_amount, sums_["CHARGEBACK"]);
    if (unrecognised_ > 0) return;
    const std::int64_t net = net_ - tax_;
    check_total("total_settlement_amount", s_.total_settlement_amount, net);
    if (s_.payout_amount && *s_.payout_amount != net) {
      add(finding_kind::payout, "payout", amount_json("payout_amount", net, s_.currency),
          amount_json("payout_amount", s_.payout_amount, s_.currency),
          "payout of " + std::to_string(*s_.payout_amount) + ", the lines add up to " +
              std::to_string(net));
    }
  }

  storage::Store& store_;
  storage::SettlementLedger& recon_;
  const SettlementRow& s_;
  std::int64_t now_;
  ReconcileResult out_;
  std::unordered_map<std::string, int> seen_captures_, seen_refunds_;
  std::unordered_set<std::string> reported_twice_;
  std::unordered_set<std::string> holds_;     // every finding this check finds, new or not
  std::map<std::string, std::int64_t> sums_;  // amount per line type
  std::int64_t tax_ = 0;                      // tax on FEE lines and TAX lines
  std::int64_t net_ = 0;                      // every line but TAX in its direction
  int unrecognised_ = 0;                      // lines of a type not known
};

}  // namespace

ReconcileResult reconcile_settlement(storage::Store& store, const std::string& settlement_id,
                                     std::int64_t now_ms) {
  auto& recon = storage::ledger_of(store);
  auto s = recon.find_settlement(settlement_id);
  if (!s) throw std::runtime_error("unknown settlement " + settlement_id);
  auto result = SettlementCheck(store, *s, now_ms).run();
  s->status = "reconciled";
  s->reconciled_at_ms = now_ms;
  recon.save_settlement(*s);
  return result;
}

namespace {

// Whether what `f` lacked may have arrived: for unexpected_in_settlement, its
// subject is now a capture, refund, lost dispute or a transaction with a
// chargeback; for amount_mismatch, it is about chargebacks (a dispute or a
// transaction), whose amount grows as they are booked. A capture's or
// refund's amount does not change: such findings are not looked at again.
bool may_resolve(storage::Store& store, const FindingRow& f) {
  std::string_view subject = f.subject;
  if (subject.starts_with("fee:")) subject.remove_prefix(4);
  const std::string id(subject);
  if (f.kind == finding_kind::unexpected) {
    if (store.find_sub_record("capture", id) || store.find_sub_record("refund", id)) return true;
    if (auto d = store.find_dispute(id); d && d->outcome == "LOST") return true;
    if (subject != f.subject) return store.find_transaction(id).has_value();  // a fee's
    for (const auto& r : store.sub_records(id)) {
      if (r.kind == "chargeback") return true;
    }
    return false;
  }
  if (f.kind == finding_kind::amount) {
    return store.find_dispute(id).has_value() || store.find_transaction(id).has_value();
  }
  return false;
}

}  // namespace

ReconcileResult recheck_findings(storage::Store& store, std::int64_t now_ms, Recheck which) {
  auto& recon = storage::ledger_of(store);
  std::set<std::string> settlements;
  for (const auto& f : recon.findings(0, true, 100000)) {
    if (!f.settlement_id || settlements.contains(*f.settlement_id)) continue;
    if (which == Recheck::all || may_resolve(store, f)) settlements.insert(*f.settlement_id);
  }
  ReconcileResult out;
  for (const auto& id : settlements) {
    auto s = recon.find_settlement(id);
    if (!s || s->status == "fetching") continue;  // its reconciliation comes when booked
    auto r = SettlementCheck(store, *s, now_ms).run();
    out.lines += r.lines;
    out.resolved += r.resolved;
    std::move(r.found.begin(), r.found.end(), std::back_inserter(out.found));
    std::move(r.cleared.begin(), r.cleared.end(), std::back_inserter(out.cleared));
  }
  return out;
}

ReconcileResult find_missing(storage::Store& store, std::int64_t now_ms,
                             std::chrono::milliseconds grace) {
  auto& recon = storage::ledger_of(store);
  ReconcileResult out;
  for (const std::string kind : {"capture", "refund"}) {
    for (auto& u : recon.unsettled(kind, now_ms - grace.count(), 100000)) {
      ++out.lines;
      FindingRow f;
      f.kind = std::string(finding_kind::missing);
      f.subject = u.record.id;
      f.finding_id = finding_id(f.kind, std::nullopt, f.subject);
      f.ours_json = record_json(u.record, u.currency);
      f.theirs_json = "{}";
      f.detail = kind + " executed " + std::to_string((now_ms - u.record.occurred_at_ms) / 1000) +
                 " s ago is in no settlement";
      f.found_at_ms = now_ms;
      if (recon.insert_finding(f)) out.found.push_back(std::move(f));
    }
  }
  return out;
}

std::string finding_message(const storage::FindingRow& f) {
  core::JsonWriter w;
  w.begin_object().field("finding_id", f.finding_id).field("kind", f.kind);
  w.key("settlement_id");
  f.settlement_id ? w.value(*f.settlement_id) : w.null();
  w.field("subject", f.subject);
  w.key("ours").raw(f.ours_json);
  w.key("theirs").raw(f.theirs_json);
  w.field("detail", f.detail).field("found_at_ms", f.found_at_ms);
  if (f.resolved_at_ms) w.field("resolved_at_ms", *f.resolved_at_ms);
  return w.end_object().take();
}

void enqueue_findings(storage::Store& store, const std::string& topic, const ReconcileResult& r,
                      std::vector<storage::PublishRow>& publications) {
  for (const auto* list : {&r.found, &r.cleared}) {
    for (const auto& f : *list) {
      storage::PublishRow row{0, topic, f.settlement_id.value_or(f.subject), finding_message(f),
                              ""};
      row.seq = store.enqueue_publish(row);
      publications.push_back(std::move(row));
    }
  }
}

}  // namespace kpay::processor
