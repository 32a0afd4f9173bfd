#include "kpay/processor/events.hpp"

#include <simdjson.h>

#include <array>

#include "kpay/core/overloaded.hpp"
#include "intake/settlement_fields.hpp"

namespace kpay::processor {

namespace {

using RS = RequestState;
using TS = TransactionState;
using DS = DisputeState;
using RG = RequestGeneration;
using FH = FrameworkHint;

struct Route {
  std::string_view event_type;
  std::string_view version;  // "v1", "v2"
  Action action;
};

// The dispatch table: (event_type, event_version) → what it asks for.
// docs/klarna/WEBHOOKS.md §4. Transaction, dispute, settlement and account events are
// accepted in both versions (their payloads do not differ in what we read).
// clang-format off
const std::array kRoutes = {
    // payment requests, Gen 1 (v1)
    Route{"payment.request.state-change.submitted",            "v1", RequestTransition{RG::gen1, RS::submitted}},
    Route{"payment.request.state-change.prepared",             "v1", RequestTransition{RG::gen1, RS::prepared}},
    Route{"payment.request.state-change.in-progress",          "v1", RequestTransition{RG::gen1, RS::in_progress}},
    Route{"payment.request.state-change.pending-confirmation", "v1", RequestTransition{RG::gen1, RS::pending_confirmation}},
    Route{"payment.request.state-change.authorized",           "v1", RequestTransition{RG::gen1, RS::authorized}},
    Route{"payment.request.state-change.expired",              "v1", RequestTransition{RG::gen1, RS::expired}},
    Route{"payment.request.state-change.canceled",             "v1", RequestTransition{RG::gen1, RS::canceled}},
    Route{"payment.request.state-change.cancelled",            "v1", RequestTransition{RG::gen1, RS::canceled}},  // Klarna's event list spells it so
    Route{"payment.request.state-change.declined",             "v1", RequestTransition{RG::gen1, RS::declined}},
    // payment requests, Gen 2/3 (v2)
    Route{"payment.request.state-change.submitted",            "v2", RequestTransition{RG::gen2, RS::submitted}},
    Route{"payment.request.state-change.in-progress",          "v2", RequestTransition{RG::gen2, RS::in_progress}},
    Route{"payment.request.state-change.completed",            "v2", RequestTransition{RG::gen2, RS::completed}},
    Route{"payment.request.state-change.expired",              "v2", RequestTransition{RG::gen2, RS::expired}},
    Route{"payment.request.state-change.canceled",             "v2", RequestTransition{RG::gen2, RS::canceled}},
    Route{"payment.request.state-change.cancelled",            "v2", RequestTransition{RG::gen2, RS::canceled}},
    Route{"payment.request.state-change.declined",             "v2", RequestTransition{RG::gen2, RS::declined}},
    Route{"payment.request.updated",                           "v2", RequestUpdated{}},
    // payment transactions
    Route{"payment.transaction.state-change.authorized", "v1", TransactionTransition{TS::authorized}},
    Route{"payment.transaction.state-change.authorized", "v2", TransactionTransition{TS::authorized}},
    Route{"payment.transaction.state-change.expired",    "v1", TransactionTransition{TS::expired}},
    Route{"payment.transaction.state-change.expired",    "v2", TransactionTransition{TS::expired}},
    Route{"payment.transaction.state-change.completed",  "v1", TransactionTransition{TS::completed}},
    Route{"payment.transaction.state-change.completed",  "v2", TransactionTransition{TS::completed}},
    Route{"payment.transaction.state-change.closed",     "v1", TransactionTransition{TS::closed}},
    Route{"payment.transaction.state-change.closed",     "v2", TransactionTransition{TS::closed}},
    Route{"payment.transaction.captured",                "v1", SubRecordAdded{SubRecordKind::capture}},
    Route{"payment.transaction.captured",                "v2", SubRecordAdded{SubRecordKind::capture}},
    Route{"payment.transaction.refunded",                "v1", SubRecordAdded{SubRecordKind::refund}},
    Route{"payment.transaction.refunded",                "v2", SubRecordAdded{SubRecordKind::refund}},
    Route{"payment.transaction.chargeback",              "v1", SubRecordAdded{SubRecordKind::chargeback}},
    Route{"payment.transaction.chargeback",              "v2", SubRecordAdded{SubRecordKind::chargeback}},
    Route{"payment.funding.state-change.funded",         "v1", FundingTransition{FundingState::funded}},
    Route{"payment.funding.state-change.funded",         "v2", FundingTransition{FundingState::funded}},
    Route{"payment.funding.state-change.expired",        "v1", FundingTransition{FundingState::expired}},
    Route{"payment.funding.state-change.expired",        "v2", FundingTransition{FundingState::expired}},
    // disputes: current framework, legacy framework, and the two types both send
    Route{"payment.dispute.state-change.initiated",       "v1", DisputeTransition{FH::current, DS::initiated, DS::initiated}},
    Route{"payment.dispute.state-change.initiated",       "v2", DisputeTransition{FH::current, DS::initiated, DS::initiated}},
    Route{"payment.dispute.state-change.representment",   "v1", DisputeTransition{FH::current, DS::representment, DS::representment}},
    Route{"payment.dispute.state-change.representment",   "v2", DisputeTransition{FH::current, DS::representment, DS::representment}},
    Route{"payment.dispute.state-change.arbitration",     "v1", DisputeTransition{FH::current, DS::arbitration, DS::arbitration}},
    Route{"payment.dispute.state-change.arbitration",     "v2", DisputeTransition{FH::current, DS::arbitration, DS::arbitration}},
    Route{"payment.dispute.state-change.merchant-evidence-pending",       "v1", DisputeTransition{FH::legacy, DS::merchant_evidence_pending, DS::merchant_evidence_pending}},
    Route{"payment.dispute.state-change.merchant-evidence-pending",       "v2", DisputeTransition{FH::legacy, DS::merchant_evidence_pending, DS::merchant_evidence_pending}},
    Route{"payment.dispute.state-change.arbitration-pending",             "v1", DisputeTransition{FH::legacy, DS::arbitration_pending, DS::arbitration_pending}},
    Route{"payment.dispute.state-change.arbitration-pending",             "v2", DisputeTransition{FH::legacy, DS::arbitration_pending, DS::arbitration_pending}},
    Route{"payment.dispute.state-change.arbitration-appeal-window-open",  "v1", DisputeTransition{FH::legacy, DS::arbitration_appeal_window_open, DS::arbitration_appeal_window_open}},
    Route{"payment.dispute.state-change.arbitration-appeal-window-open",  "v2", DisputeTransition{FH::legacy, DS::arbitration_appeal_window_open, DS::arbitration_appeal_window_open}},
    Route{"payment.dispute.state-change.pre-arbitration", "v1", DisputeTransition{FH::either, DS::pre_arbitration, DS::legacy_pre_arbitration}},
    Route{"payment.dispute.state-change.pre-arbitration", "v2", DisputeTransition{FH::either, DS::pre_arbitration, DS::legacy_pre_arbitration}},
    Route{"payment.dispute.state-change.closed",          "v1", DisputeTransition{FH::either, DS::closed, DS::closed}},
    Route{"payment.dispute.state-change.closed",          "v2", DisputeTransition{FH::either, DS::closed, DS::closed}},
    Route{"payment.dispute.updated.representment-deadline-extended", "v1", DisputeDeadlineExtended{Deadline::representment}},
    Route{"payment.dispute.updated.representment-deadline-extended", "v2", DisputeDeadlineExtended{Deadline::representment}},
    Route{"payment.dispute.updated.arbitration-deadline-extended",   "v1", DisputeDeadlineExtended{Deadline::arbitration}},
    Route{"payment.dispute.updated.arbitration-deadline-extended",   "v2", DisputeDeadlineExtended{Deadline::arbitration}},
    // settlements
    Route{"settlement.report.created",          "v1", SettlementReportTransition{SettlementReportState::created}},
    Route{"settlement.report.created",          "v2", SettlementReportTransition{SettlementReportState::created}},
    Route{"settlement.report.uploaded-to-sftp", "v1", SettlementReportTransition{SettlementReportState::uploaded_to_sftp}},
    Route{"settlement.report.uploaded-to-sftp", "v2", SettlementReportTransition{SettlementReportState::uploaded_to_sftp}},
    Route{"settlement.payout.processed",        "v1", PayoutTransition{PayoutState::processed}},
    Route{"settlement.payout.processed",        "v2", PayoutTransition{PayoutState::processed}},
    Route{"settlement.payout.confirmed",        "v1", PayoutTransition{PayoutState::confirmed}},
    Route{"settlement.payout.confirmed",        "v2", PayoutTransition{PayoutState::confirmed}},
    Route{"settlement.payout.failed",           "v1", PayoutTransition{PayoutState::failed}},
    Route{"settlement.payout.failed",           "v2", PayoutTransition{PayoutState::failed}},
    // partner accounts
    Route{"partner.account.change.created",                        "v1", AccountTransition{AccountState::created}},
    Route{"partner.account.change.created",                        "v2", AccountTransition{AccountState::created}},
    Route{"partner.account.state-change.operational",              "v1", AccountTransition{AccountState::operational}},
    Route{"partner.account.state-change.operational",              "v2", AccountTransition{AccountState::operational}},
    Route{"partner.account.product.payment.state-change.enabled",  "v1", PaymentProductTransition{PaymentProductState::enabled}},
    Route{"partner.account.product.payment.state-change.enabled",  "v2", PaymentProductTransition{PaymentProductState::enabled}},
    Route{"partner.account.product.payment.state-change.disabled", "v1", PaymentProductTransition{PaymentProductState::disabled}},
    Route{"partner.account.product.payment.state-change.disabled", "v2", PaymentProductTransition{PaymentProductState::disabled}},
};
// clang-format on

using core::Overloaded;

using simdjson::dom::element;

std::optional<std::string> str(element obj, std::string_view key) {
  std::string_view v;
  if (obj.is_object() && obj[key].get_string().get(v) == simdjson::SUCCESS && !v.empty()) {
    return std::string(v);
  }
  return std::nullopt;
}

std::optional<element> child(element obj, std::string_view key) {
  element e;
  if (obj.is_object() && obj[key].get(e) == simdjson::SUCCESS && e.is_object()) return e;
  return std::nullopt;
}

// First string among `keys` in the payload, then in payload.state_context.
std::optional<std::string> str_any(element payload, std::initializer_list<std::string_view> keys) {
  for (auto k : keys) {
    if (auto v = str(payload, k)) return v;
  }
  if (auto ctx = child(payload, "state_context")) {
    for (auto k : keys) {
      if (auto v = str(*ctx, k)) return v;
    }
  }
  return std::nullopt;
}

enum class FieldStatus { absent, ok, bad };

FieldStatus integer(element obj, std::string_view key, std::optional<std::int64_t>& out) {
  element e;
  if (!obj.is_object() || obj[key].get(e) != simdjson::SUCCESS || e.is_null()) {
    return FieldStatus::absent;
  }
  std::int64_t v = 0;
  if (e.get_int64().get(v) != simdjson::SUCCESS) return FieldStatus::bad;
  out = v;
  return FieldStatus::ok;
}

FieldStatus timestamp(element obj, std::string_view key, std::optional<std::int64_t>& out) {
  element e;
  if (!obj.is_object() || obj[key].get(e) != simdjson::SUCCESS || e.is_null()) {
    return FieldStatus::absent;
  }
  std::string_view s;
  if (e.get_string().get(s) != simdjson::SUCCESS) return FieldStatus::bad;
  auto ms = parse_rfc3339_ms(s);
  if (!ms) return FieldStatus::bad;
  out = ms;
  return FieldStatus::ok;
}

Poison poison(std::string reason, std::string detail, const klarna::Envelope* env) {
  Poison p{std::move(reason), std::move(detail), std::nullopt};
  if (env != nullptr) p.envelope = *env;
  return p;
}

// Where a capture / refund / chargeback event names its operation.
struct OperationKeys {
  std::string_view id;      // payment_capture_id
  std::string_view amount;  // capture_amount
  std::string_view object;  // capture: {capture_amount}
  std::string_view list;    // payment_captures: [{payment_capture_id, capture_amount}]
};
OperationKeys operation_keys(SubRecordKind kind) {
  switch (kind) {
    case SubRecordKind::capture:
      return {"payment_capture_id", "capture_amount", "capture", "payment_captures"};
    case SubRecordKind::refund:
      return {"payment_refund_id", "refund_amount", "refund", "payment_refunds"};
    case SubRecordKind::chargeback:
      break;
  }
  return {"payment_chargeback_id", "chargeback_amount", "chargeback", "payment_chargebacks"};
}

// The operation's own amount: at the top level, in a nested object, or in its
// entry of the transaction's list. `field` names where a bad value was found.
FieldStatus operation_amount(element payload, const OperationKeys& k,
                             const std::optional<std::string>& id, std::optional<std::int64_t>& out,
                             std::string& field) {
  field = k.amount;
  if (auto st = integer(payload, k.amount, out); st != FieldStatus::absent) return st;
  if (auto obj = child(payload, k.object)) {
    field = std::string(k.object) + "." + std::string(k.amount);
    if (auto st = integer(*obj, k.amount, out); st != FieldStatus::absent) return st;
  }
  simdjson::dom::array list;
  if (!id || payload[k.list].get_array().get(list) != simdjson::SUCCESS) return FieldStatus::absent;
  for (element item : list) {
    if (str(item, k.id) != id) continue;
    field = std::string(k.list) + "[]." + std::string(k.amount);
    return integer(item, k.amount, out);
  }
  return FieldStatus::absent;
}

// A payload that is the whole transaction (klarna-sim sends it with the
// operation's fields added): its `amount` is the authorized amount.
bool looks_like_transaction(element payload) {
  for (std::string_view k :
       {"state", "payment_transaction_reference", "captured_amount", "payment_captures",
        "payment_refunds", "remaining_authorized_amount"}) {
    element e;
    if (payload[k].get(e) == simdjson::SUCCESS) return true;
  }
  return false;
}

// A capture / refund / chargeback: its id, and the operation's own amount.
// Only `amount` in a whole-transaction payload is ambiguous: a capture or
// refund is then read from Klarna instead (there is no chargeback read).
std::optional<Poison> read_sub_record(element payload, SubRecordKind kind, Payload& p,
                                      const klarna::Envelope& env) {
  const OperationKeys k = operation_keys(kind);
  const auto& id = kind == SubRecordKind::capture  ? p.capture_id
                   : kind == SubRecordKind::refund ? p.refund_id
                                                   : p.chargeback_id;
  if (!id) return poison("missing_field", std::string(k.id) + " is missing", &env);
  p.amount.reset();
  std::string field;
  auto st = operation_amount(payload, k, id, p.amount, field);
  if (st == FieldStatus::absent) {
    field = "amount";
    st = integer(payload, "amount", p.amount);
    if (st == FieldStatus::ok && kind != SubRecordKind::chargeback &&
        looks_like_transaction(payload)) {
      p.amount.reset();
      p.amount_ambiguous = true;
    }
  }
  if (st == FieldStatus::bad) {
    return poison("bad_field", field + " has the wrong type or format", &env);
  }
  if (!p.amount && !p.amount_ambiguous) return poison("missing_field", "amount is missing", &env);
  if (p.amount && *p.amount < 0) return poison("bad_field", "amount is negative", &env);
  return std::nullopt;
}

// The element at a dotted path below `obj` ("state_context.representment.expires_at").
std::optional<element> at_path(element obj, std::string_view path) {
  while (true) {
    const auto dot = path.find('.');
    element next;
    if (!obj.is_object() || obj[path.substr(0, dot)].get(next) != simdjson::SUCCESS) {
      return std::nullopt;
    }
    if (dot == std::string_view::npos) return next;
    obj = next;
    path.remove_prefix(dot + 1);
  }
}

FieldStatus timestamp_at(element payload, std::string_view path, std::optional<std::int64_t>& out) {
  const auto dot = path.rfind('.');
  if (dot == std::string_view::npos) return timestamp(payload, path, out);
  auto parent = at_path(payload, path.substr(0, dot));
  return parent ? timestamp(*parent, path.substr(dot + 1), out) : FieldStatus::absent;
}

FieldStatus integer_at(element payload, std::string_view path, std::optional<std::int64_t>& out) {
  const auto dot = path.rfind('.');
  if (dot == std::string_view::npos) return integer(payload, path, out);
  auto parent = at_path(payload, path.substr(0, dot));
  return parent ? integer(*parent, path.substr(dot + 1), out) : FieldStatus::absent;
}

// Where each dispute deadline is read, checked against docs/klarna/PAYMENTS-API.md
// "Disputes" and docs/klarna/WEBHOOKS.md §4. Every row is read; a later row overwrites an
// earlier one, so an extension's `updated_fields` (last) is the event's value.
struct DeadlineField {
  Deadline kind;
  std::string_view path;
};
// clang-format off
constexpr DeadlineField kDeadlineFields[] = {
    {Deadline::representment,     "representment.expires_at"},                        // current: respond by
    {Deadline::representment,     "state_context.representment.expires_at"},
    {Deadline::arbitration,       "arbitration_expires_at"},                          // appeal window (PRE_ARBITRATION)
    {Deadline::arbitration,       "state_context.arbitration_expires_at"},
    {Deadline::evidence_response, "evidence_response_deadline_at"},                   // legacy framework
    {Deadline::evidence_response, "state_context.evidence_response_deadline_at"},
    // …-deadline-extended: the new value (SDK generated from Klarna's spec: evidence_response_deadline_at)
    {Deadline::representment,     "updated_fields.representment.expires_at"},
    {Deadline::representment,     "updated_fields.representment_expires_at"},
    {Deadline::arbitration,       "updated_fields.arbitration_expires_at"},
    {Deadline::evidence_response, "updated_fields.evidence_response_deadline_at"},
};

// The money of a dispute. Klarna documents the facts (the disputed amount is
// withheld when the dispute opens and returned if the partner wins; a dispute
// fee is charged either way) and `dispute_details.dispute_amount`; the names
// of the other three are unconfirmed, so each is read where it may appear.
// A later row overwrites an earlier one.
struct AmountField {
  std::optional<std::int64_t> Payload::*member;
  std::string_view path;
};
constexpr AmountField kDisputeAmountFields[] = {
    {&Payload::amount,          "dispute_details.dispute_amount"},               // documented
    {&Payload::amount,          "state_context.dispute_details.dispute_amount"},
    {&Payload::withheld_amount, "withheld_amount"},                              // unconfirmed names from here
    {&Payload::withheld_amount, "dispute_details.withheld_amount"},
    {&Payload::withheld_amount, "state_context.withheld_amount"},
    {&Payload::returned_amount, "returned_amount"},
    {&Payload::returned_amount, "dispute_details.returned_amount"},
    {&Payload::returned_amount, "state_context.returned_amount"},
    {&Payload::fee_amount,      "dispute_fee_amount"},
    {&Payload::fee_amount,      "dispute_fee.amount"},
    {&Payload::fee_amount,      "dispute_details.dispute_fee_amount"},
    {&Payload::fee_amount,      "state_context.dispute_fee_amount"},
};
// clang-format on

std::optional<std::int64_t>& deadline_slot(Payload& p, Deadline d) {
  switch (d) {
    case Deadline::representment:
      return p.representment_expires_at_ms;
    case Deadline::arbitration:
      return p.arbitration_expires_at_ms;
    case Deadline::evidence_response:
      break;
  }
  return p.evidence_response_deadline_ms;
}

std::optional<Poison> read_dispute_deadlines(element payload, Payload& p,
                                             const klarna::Envelope& env) {
  for (const auto& f : kDeadlineFields) {
    std::optional<std::int64_t> v;
    if (timestamp_at(payload, f.path, v) == FieldStatus::bad) {
      return poison("bad_field", std::string(f.path) + " has the wrong type or format", &env);
    }
    if (!v) continue;
    deadline_slot(p, f.kind) = v;
    p.deadlines.push_back({f.kind, *v, f.path});
  }
  return std::nullopt;
}

std::optional<Poison> read_dispute_amounts(element payload, Payload& p,
                                           const klarna::Envelope& env) {
  for (const auto& f : kDisputeAmountFields) {
    std::optional<std::int64_t> v;
    const auto st = integer_at(payload, f.path, v);
    if (st == FieldStatus::bad || (v && *v < 0)) {
      return poison("bad_field", std::string(f.path) + " has the wrong type or format", &env);
    }
    if (v) p.*f.member = v;
  }
  return std::nullopt;
}

// An extension names its deadline by its event type; the new value may come
// under that deadline's own field or as updated_fields.evidence_response_deadline_at.
std::optional<Poison> resolve_extension(const DisputeDeadlineExtended& dl, Payload& p,
                                        const klarna::Envelope& env) {
  auto& value = deadline_slot(p, dl.deadline);
  if (!value && p.evidence_response_deadline_ms) {
    value = p.evidence_response_deadline_ms;
    p.deadlines.push_back({dl.deadline, *value, "updated_fields.evidence_response_deadline_at"});
  }
  if (!value) return poison("missing_field", "the extended deadline is missing", &env);
  return std::nullopt;
}

// Everything a dispute event says: reason, outcome (top level or
// state_context), closing time, deadlines, money; the currency of
// dispute_details when the payload has none of its own.
std::optional<Poison> read_dispute_fields(element payload, const Action& action, Payload& p,
                                          const klarna::Envelope& env) {
  p.dispute_reason = str_any(payload, {"dispute_reason"});
  p.dispute_outcome = str_any(payload, {"dispute_outcome"});
  p.dispute_outcome_detailed = str_any(payload, {"dispute_outcome_detailed"});
  p.has_representment = at_path(payload, "representment").has_value() ||
                        at_path(payload, "state_context.representment").has_value();
  for (std::string_view f : {"closed_at", "state_context.closed_at"}) {
    if (timestamp_at(payload, f, p.closed_at_ms) == FieldStatus::bad) {
      return poison("bad_field", std::string(f) + " has the wrong type or format", &env);
    }
  }
  if (auto bad = read_dispute_deadlines(payload, p, env)) return bad;
  if (auto bad = read_dispute_amounts(payload, p, env)) return bad;
  if (!p.currency) {
    if (auto details = child(payload, "dispute_details")) p.currency = str(*details, "currency");
  }
  if (auto* dl = std::get_if<DisputeDeadlineExtended>(&action)) {
    return resolve_extension(*dl, p, env);
  }
  return std::nullopt;
}

}  // namespace

std::string_view deadline_name(Deadline d) {
  switch (d) {
    case Deadline::representment:
      return "representment";
    case Deadline::arbitration:
      return "arbitration";
    case Deadline::evidence_response:
      break;
  }
  return "evidence_response";
}

std::string_view entity_kind(const Action& a) {
  return std::visit(
      Overloaded{
          [](const RequestTransition&) { return std::string_view("payment_request"); },
          [](const RequestUpdated&) { return std::string_view("payment_request"); },
          [](const TransactionTransition&) { return std::string_view("payment_transaction"); },
          [](const SubRecordAdded&) { return std::string_view("payment_transaction"); },
          [](const FundingTransition&) { return std::string_view("payment_transaction"); },
          [](const DisputeTransition&) { return std::string_view("dispute"); },
          [](const DisputeDeadlineExtended&) { return std::string_view("dispute"); },
          [](const SettlementReportTransition&) { return std::string_view("settlement_report"); },
          [](const PayoutTransition&) { return std::string_view("payout"); },
          [](const AccountTransition&) { return std::string_view("partner_account"); },
          [](const PaymentProductTransition&) { return std::string_view("partner_account"); },
          [](const Unrouted&) { return std::string_view("unrouted"); },
      },
      a);
}

std::variant<Action, RouteError> route(std::string_view event_type, std::string_view version) {
  bool type_known = false;
  for (const auto& r : kRoutes) {
    if (r.event_type != event_type) continue;
    type_known = true;
    if (r.version == version) return r.action;
  }
  return type_known ? RouteError::unknown_event_version : RouteError::unknown_event_type;
}

std::optional<std::int64_t> parse_rfc3339_ms(std::string_view t) {
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)
  // Digits only: from_chars alone would take "-1" as an hour (found by fuzzing).
  auto num = [&](std::size_t pos, std::size_t len, int& out) {
    if (pos + len > t.size()) return false;
    out = 0;
    for (std::size_t i = pos; i < pos + len; ++i) {
      if (t[i] < '0' || t[i] > '9') return false;
      out = out * 10 + (t[i] - '0');
    }
    return true;
  };
  int y, mo, d, h, mi, s;
  if (t.size() < 20 || t[4] != '-' || t[7] != '-' || (t[10] != 'T' && t[10] != 't') ||
      t[13] != ':' || t[16] != ':') {
    return std::nullopt;
  }
  if (!num(0, 4, y) || !num(5, 2, mo) || !num(8, 2, d) || !num(11, 2, h) || !num(14, 2, mi) ||
      !num(17, 2, s)) {
    return std::nullopt;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) return std::nullopt;
  // A day the month has (2025-02-29 was read as March 1st; found by fuzzing).
  constexpr int kMonthDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (d > kMonthDays[mo - 1] + (mo == 2 && leap ? 1 : 0)) return std::nullopt;
  std::size_t pos = 19;
  std::int64_t millis = 0;
  if (pos < t.size() && t[pos] == '.') {
    ++pos;
    int digits = 0;
    while (pos < t.size() && t[pos] >= '0' && t[pos] <= '9') {
      if (digits < 3) millis = millis * 10 + (t[pos] - '0');
      ++digits;
      ++pos;
    }
    if (digits == 0) return std::nullopt;
    for (int i = digits; i < 3; ++i) millis *= 10;
  }
  std::int64_t offset_min = 0;
  if (pos < t.size() && (t[pos] == 'Z' || t[pos] == 'z')) {
    ++pos;
  } else if (pos < t.size() && (t[pos] == '+' || t[pos] == '-')) {
    int oh, om;
    if (pos + 6 != t.size() || t[pos + 3] != ':' || !num(pos + 1, 2, oh) || !num(pos + 4, 2, om)) {
      return std::nullopt;
    }
    offset_min = (t[pos] == '+' ? 1 : -1) * (oh * 60 + om);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != t.size()) return std::nullopt;
  // days_from_civil (H. Hinnant), proleptic Gregorian.
  y -= mo <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  const std::int64_t days = era * 146097 + static_cast<std::int64_t>(doe) - 719468;
  const std::int64_t secs = days * 86400 + h * 3600 + mi * 60 + s - offset_min * 60;
  return secs * 1000 + millis;
}

std::variant<Event, Poison> decode_event(std::string_view body, bool from_unrouted_topic) {
  auto parsed = klarna::parse_envelope(body);
  if (!parsed) return poison(parsed.error.reason, parsed.error.detail, nullptr);
  const klarna::Envelope& env = *parsed.envelope;

  Event ev;
  if (!env.occurred_at.empty()) {
    auto ms = parse_rfc3339_ms(env.occurred_at);
    if (!ms) return poison("bad_occurred_at", "metadata.occurred_at is not RFC 3339", &env);
    ev.occurred_at_ms = *ms;
  }
  if (from_unrouted_topic || env.family == klarna::EventFamily::unrouted) {
    ev.envelope = env;
    ev.action = Unrouted{};
    return ev;
  }
  auto routed = route(env.event_type, env.event_version);
  if (auto* err = std::get_if<RouteError>(&routed)) {
    return *err == RouteError::unknown_event_type
               ? poison("unknown_event_type", "no state machine handles this event type", &env)
               : poison("unknown_event_version", "event type not known in this event_version",
                        &env);
  }
  ev.action = std::get<Action>(routed);
  // A settlement event naming no id is keyed by its event_id and recorded.
  if (env.entity_id_is_fallback && env.family != klarna::EventFamily::settlement) {
    return poison("missing_entity_id", "the payload names no entity id for its family", &env);
  }

  // The envelope parse succeeded, so the body is JSON; read the payload.
  thread_local simdjson::dom::parser parser;
  element root;
  if (parser.parse(body.data(), body.size(), true).get(root) != simdjson::SUCCESS) {
    return poison("not_json", "the body is not valid JSON", &env);
  }
  element payload;
  if (root["payload"].get(payload) != simdjson::SUCCESS || !payload.is_object()) {
    return poison("missing_payload", "payload object is missing", &env);
  }
  Payload& p = ev.payload;
  p.reference =
      str_any(payload, {"payment_request_reference", "payment_transaction_reference", "reference"});
  p.currency = str(payload, "currency");
  p.payment_request_id = str_any(payload, {"payment_request_id"});
  p.payment_transaction_id = str_any(payload, {"payment_transaction_id"});
  p.capture_id = str(payload, "payment_capture_id");
  p.refund_id = str(payload, "payment_refund_id");
  p.chargeback_id = str_any(payload, {"payment_chargeback_id", "chargeback_id"});
  p.confirmation_token = str_any(payload, {"payment_confirmation_token"});
  p.session_token = str_any(payload, {"klarna_network_session_token"});
  if (!p.session_token) {
    p.session_token = str_any(payload, {"payment_token"});
    p.legacy_payment_token = p.session_token.has_value();
  }

  auto bad = [&](std::string_view field) {
    return poison("bad_field", std::string(field) + " has the wrong type or format", &env);
  };
  // Amount of the entity (captures, refunds, chargebacks: read_sub_record).
  if (!std::holds_alternative<SubRecordAdded>(ev.action)) {
    if (integer(payload, "amount", p.amount) == FieldStatus::bad) return bad("amount");
  }
  if (timestamp(payload, "expires_at", p.expires_at_ms) == FieldStatus::bad)
    return bad("expires_at");
  if (entity_kind(ev.action) == "dispute") {
    if (auto bad_dispute = read_dispute_fields(payload, ev.action, p, env)) return *bad_dispute;
  }
  if (env.family == klarna::EventFamily::settlement) {
    if (auto field = read_settlement_fields(payload, env, p)) return bad(*field);
  }

  // Impossible shapes: an event that asks for bookkeeping without the data for it.
  if (auto* sub = std::get_if<SubRecordAdded>(&ev.action)) {
    if (auto bad_sub = read_sub_record(payload, sub->kind, p, env)) return *bad_sub;
  }
  ev.envelope = env;
  return ev;
}

}  // namespace kpay::processor
