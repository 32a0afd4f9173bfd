#include "kpay/processor/state_machines.hpp"

#include <algorithm>
#include <array>
#include <vector>

namespace kpay::processor {

std::string_view outcome_name(Outcome o) {
  switch (o) {
    case Outcome::applied:
      return "applied";
    case Outcome::duplicate:
      return "duplicate";
    case Outcome::stale:
      return "stale";
    case Outcome::rejected:
      return "rejected";
  }
  return "rejected";
}

namespace {

using RS = RequestState;
using TS = TransactionState;
using DS = DisputeState;

// clang-format off

// Gen 1 (webhooks v1), docs/klarna/PAYMENTS-API.md §1.
constexpr Edge<RS> kGen1RequestEdges[] = {
    {RS::submitted,            RS::in_progress},
    {RS::submitted,            RS::prepared},
    {RS::submitted,            RS::expired},               // added: request expiry
    {RS::submitted,            RS::canceled},              // added: partner cancel
    {RS::prepared,             RS::in_progress},
    {RS::prepared,             RS::pending_confirmation},
    {RS::prepared,             RS::expired},               // added
    {RS::prepared,             RS::canceled},              // added
    {RS::in_progress,          RS::submitted},
    {RS::in_progress,          RS::pending_confirmation},
    {RS::in_progress,          RS::authorized},
    {RS::in_progress,          RS::expired},               // added
    {RS::in_progress,          RS::canceled},              // added
    {RS::in_progress,          RS::declined},              // added
    {RS::pending_confirmation, RS::in_progress},
    {RS::pending_confirmation, RS::authorized},
    {RS::pending_confirmation, RS::submitted},             // CONFIRMATION_TOKEN_EXPIRED
    {RS::pending_confirmation, RS::expired},               // added
    {RS::pending_confirmation, RS::canceled},              // added
};
constexpr RS kGen1RequestFinals[] = {RS::authorized, RS::expired, RS::canceled, RS::declined};

// Gen 2/3 (webhooks v2), docs/klarna/PAYMENTS-API.md §1.
constexpr Edge<RS> kGen2RequestEdges[] = {
    {RS::submitted,   RS::in_progress},
    {RS::submitted,   RS::expired},
    {RS::submitted,   RS::canceled},
    {RS::in_progress, RS::submitted},
    {RS::in_progress, RS::completed},
    {RS::in_progress, RS::expired},
    {RS::in_progress, RS::canceled},
    {RS::in_progress, RS::declined},
};
constexpr RS kGen2RequestFinals[] = {RS::completed, RS::expired, RS::canceled, RS::declined};

// Payment transactions, docs/klarna/PAYMENTS-API.md §2. Born AUTHORIZED (capture LATER) or
// COMPLETED (capture NOW). Captures/refunds/chargebacks are sub-records, not states.
constexpr Edge<TS> kTransactionEdges[] = {
    {TS::authorized, TS::completed},   // fully captured, or void after a capture
    {TS::authorized, TS::closed},      // void without capture
    {TS::authorized, TS::expired},     // expires_at passed, not fully captured
    {TS::expired,    TS::authorized},  // reauthorized within 7 days (unconfirmed)
    {TS::expired,    TS::completed},   // after 7 days, with captures
    {TS::expired,    TS::closed},      // after 7 days, without captures
    {TS::completed,  TS::closed},      // end of life
};
constexpr TS kTransactionFinals[] = {TS::closed};

// payment.funding.state-change.* (semantics unconfirmed): either ends it.
constexpr Edge<FundingState> kFundingEdges[] = {};
constexpr FundingState kFundingFinals[] = {FundingState::funded, FundingState::expired};

// Disputes, current framework, docs/klarna/PAYMENTS-API.md "Disputes".
constexpr Edge<DS> kCurrentDisputeEdges[] = {
    {DS::initiated,       DS::representment},
    {DS::initiated,       DS::closed},
    {DS::representment,   DS::pre_arbitration},
    {DS::representment,   DS::closed},
    {DS::pre_arbitration, DS::arbitration},
    {DS::pre_arbitration, DS::closed},
    {DS::arbitration,     DS::closed},
};
// Disputes, legacy framework (docs/klarna/WEBHOOKS.md lists the events, not the graph:
// this order is our reading of the event names; unconfirmed).
constexpr Edge<DS> kLegacyDisputeEdges[] = {
    {DS::merchant_evidence_pending,      DS::legacy_pre_arbitration},
    {DS::merchant_evidence_pending,      DS::arbitration_pending},
    {DS::merchant_evidence_pending,      DS::closed},
    {DS::legacy_pre_arbitration,         DS::arbitration_pending},
    {DS::legacy_pre_arbitration,         DS::closed},
    {DS::arbitration_pending,            DS::arbitration_appeal_window_open},
    {DS::arbitration_pending,            DS::closed},
    {DS::arbitration_appeal_window_open, DS::arbitration_pending},
    {DS::arbitration_appeal_window_open, DS::closed},
};
constexpr DS kDisputeFinals[] = {DS::closed};

// Settlement reports and payouts (settlement.*).
constexpr Edge<SettlementReportState> kReportEdges[] = {
    {SettlementReportState::created, SettlementReportState::uploaded_to_sftp},
};
constexpr SettlementReportState kReportFinals[] = {SettlementReportState::uploaded_to_sftp};
constexpr Edge<PayoutState> kPayoutEdges[] = {
    {PayoutState::processed, PayoutState::confirmed},
    {PayoutState::processed, PayoutState::failed},
};
constexpr PayoutState kPayoutFinals[] = {PayoutState::confirmed, PayoutState::failed};

// Partner accounts (partner.account.*): the account, and its payment product switch.
constexpr Edge<AccountState> kAccountEdges[] = {
    {AccountState::created, AccountState::operational},
};
constexpr AccountState kAccountFinals[] = {};
constexpr Edge<PaymentProductState> kPaymentProductEdges[] = {
    {PaymentProductState::enabled,  PaymentProductState::disabled},
    {PaymentProductState::disabled, PaymentProductState::enabled},
};
constexpr PaymentProductState kPaymentProductFinals[] = {};

// clang-format on

template <class S, std::size_t N>
constexpr std::span<const S> span_of(const S (&a)[N]) {
  return {a, N};
}
template <class S>
constexpr std::span<const S> empty_span() {
  return {};
}

}  // namespace

const StateMachine<RequestState>& gen1_request_machine() {
  static const StateMachine<RequestState> m{"payment_request_gen1", span_of(kGen1RequestEdges),
                                            span_of(kGen1RequestFinals)};
  return m;
}
const StateMachine<RequestState>& gen2_request_machine() {
  static const StateMachine<RequestState> m{"payment_request_gen2", span_of(kGen2RequestEdges),
                                            span_of(kGen2RequestFinals)};
  return m;
}
const StateMachine<TransactionState>& transaction_machine() {
  static const StateMachine<TransactionState> m{"payment_transaction", span_of(kTransactionEdges),
                                                span_of(kTransactionFinals)};
  return m;
}
const StateMachine<FundingState>& funding_machine() {
  static const StateMachine<FundingState> m{"funding", {}, span_of(kFundingFinals)};
  (void)kFundingEdges;
  return m;
}
const StateMachine<DisputeState>& current_dispute_machine() {
  static const StateMachine<DisputeState> m{"dispute_current", span_of(kCurrentDisputeEdges),
                                            span_of(kDisputeFinals)};
  return m;
}
const StateMachine<DisputeState>& legacy_dispute_machine() {
  static const StateMachine<DisputeState> m{"dispute_legacy", span_of(kLegacyDisputeEdges),
                                            span_of(kDisputeFinals)};
  return m;
}
const StateMachine<SettlementReportState>& settlement_report_machine() {
  static const StateMachine<SettlementReportState> m{"settlement_report", span_of(kReportEdges),
                                                     span_of(kReportFinals)};
  return m;
}
const StateMachine<PayoutState>& payout_machine() {
  static const StateMachine<PayoutState> m{"payout", span_of(kPayoutEdges), span_of(kPayoutFinals)};
  return m;
}
const StateMachine<AccountState>& account_machine() {
  static const StateMachine<AccountState> m{"partner_account", span_of(kAccountEdges), {}};
  (void)kAccountFinals;
  return m;
}
const StateMachine<PaymentProductState>& payment_product_machine() {
  static const StateMachine<PaymentProductState> m{
      "payment_product", span_of(kPaymentProductEdges), {}};
  (void)kPaymentProductFinals;
  return m;
}

// ---- names --------------------------------------------------------------------

std::string_view state_name(RequestState s) {
  switch (s) {
    case RS::submitted:
      return "SUBMITTED";
    case RS::prepared:
      return "PREPARED";
    case RS::in_progress:
      return "IN_PROGRESS";
    case RS::pending_confirmation:
      return "PENDING_CONFIRMATION";
    case RS::authorized:
      return "AUTHORIZED";
    case RS::completed:
      return "COMPLETED";
    case RS::expired:
      return "EXPIRED";
    case RS::canceled:
      return "CANCELED";
    case RS::declined:
      return "DECLINED";
  }
  return "?";
}
std::string_view state_name(TransactionState s) {
  switch (s) {
    case TS::authorized:
      return "AUTHORIZED";
    case TS::completed:
      return "COMPLETED";
    case TS::expired:
      return "EXPIRED";
    case TS::closed:
      return "CLOSED";
  }
  return "?";
}
std::string_view state_name(FundingState s) {
  return s == FundingState::funded ? "FUNDED" : "EXPIRED";
}
std::string_view state_name(DisputeState s) {
  switch (s) {
    case DS::initiated:
      return "INITIATED";
    case DS::representment:
      return "REPRESENTMENT";
    case DS::pre_arbitration:
      return "PRE_ARBITRATION";
    case DS::arbitration:
      return "ARBITRATION";
    case DS::merchant_evidence_pending:
      return "MERCHANT_EVIDENCE_PENDING";
    case DS::legacy_pre_arbitration:
      return "LEGACY_PRE_ARBITRATION";
    case DS::arbitration_pending:
      return "ARBITRATION_PENDING";
    case DS::arbitration_appeal_window_open:
      return "ARBITRATION_APPEAL_WINDOW_OPEN";
    case DS::closed:
      return "CLOSED";
  }
  return "?";
}
std::string_view state_name(SettlementReportState s) {
  return s == SettlementReportState::created ? "REPORT_CREATED" : "REPORT_UPLOADED_TO_SFTP";
}
std::string_view state_name(PayoutState s) {
  switch (s) {
    case PayoutState::processed:
      return "PAYOUT_PROCESSED";
    case PayoutState::confirmed:
      return "PAYOUT_CONFIRMED";
    case PayoutState::failed:
      return "PAYOUT_FAILED";
  }
  return "?";
}
std::string_view state_name(AccountState s) {
  return s == AccountState::created ? "CREATED" : "OPERATIONAL";
}
std::string_view state_name(PaymentProductState s) {
  return s == PaymentProductState::enabled ? "ENABLED" : "DISABLED";
}
std::string_view framework_name(DisputeFramework f) {
  return f == DisputeFramework::current ? "current" : "legacy";
}

namespace {
template <class S, std::size_t N>
std::optional<S> parse_among(std::string_view name, const std::array<S, N>& all) {
  for (S s : all) {
    if (state_name(s) == name) return s;
  }
  return std::nullopt;
}
}  // namespace

template <>
std::optional<RequestState> parse_state<RequestState>(std::string_view n) {
  return parse_among(
      n, std::array{RS::submitted, RS::prepared, RS::in_progress, RS::pending_confirmation,
                    RS::authorized, RS::completed, RS::expired, RS::canceled, RS::declined});
}
template <>
std::optional<TransactionState> parse_state<TransactionState>(std::string_view n) {
  return parse_among(n, std::array{TS::authorized, TS::completed, TS::expired, TS::closed});
}
template <>
std::optional<FundingState> parse_state<FundingState>(std::string_view n) {
  return parse_among(n, std::array{FundingState::funded, FundingState::expired});
}
template <>
std::optional<DisputeState> parse_state<DisputeState>(std::string_view n) {
  return parse_among(
      n, std::array{DS::initiated, DS::representment, DS::pre_arbitration, DS::arbitration,
                    DS::merchant_evidence_pending, DS::legacy_pre_arbitration,
                    DS::arbitration_pending, DS::arbitration_appeal_window_open, DS::closed});
}
template <>
std::optional<SettlementReportState> parse_state<SettlementReportState>(std::string_view n) {
  return parse_among(
      n, std::array{SettlementReportState::created, SettlementReportState::uploaded_to_sftp});
}
template <>
std::optional<PayoutState> parse_state<PayoutState>(std::string_view n) {
  return parse_among(
      n, std::array{PayoutState::processed, PayoutState::confirmed, PayoutState::failed});
}
template <>
std::optional<AccountState> parse_state<AccountState>(std::string_view n) {
  return parse_among(n, std::array{AccountState::created, AccountState::operational});
}
template <>
std::optional<PaymentProductState> parse_state<PaymentProductState>(std::string_view n) {
  return parse_among(n, std::array{PaymentProductState::enabled, PaymentProductState::disabled});
}

// ---- the machine ------------------------------------------------------------------

template <class S>
bool StateMachine<S>::allows(S from, S to) const {
  return std::any_of(edges.begin(), edges.end(),
                     [&](const Edge<S>& e) { return e.from == from && e.to == to; });
}

template <class S>
bool StateMachine<S>::is_final(S s) const {
  return std::find(finals.begin(), finals.end(), s) != finals.end();
}

template <class S>
bool StateMachine<S>::reaches(S from, S to) const {
  // The tables have at most a few dozen edges: a plain breadth-first search.
  std::vector<S> frontier{from};
  std::vector<S> seen{from};
  while (!frontier.empty()) {
    S s = frontier.back();
    frontier.pop_back();
    for (const auto& e : edges) {
      if (e.from != s) continue;
      if (e.to == to) return true;
      if (std::find(seen.begin(), seen.end(), e.to) == seen.end()) {
        seen.push_back(e.to);
        frontier.push_back(e.to);
      }
    }
  }
  return false;
}

namespace {
std::string and_then(std::string a, std::string_view b) {
  if (!a.empty()) a += "; ";
  a += b;
  return a;
}
}  // namespace

// State rank, not clocks (docs/PROCESSOR.md, "Ordering rule"): Klarna's
// services do not share one clock, so occurred_at only orders events whose
// states have the same rank (states that reach each other through the table,
// such as SUBMITTED <-> IN_PROGRESS). A move to a later rank is applied
// whatever its occurred_at; one to an earlier rank is stale when the clock
// agrees and unsettled (read from Klarna) when it does not.
template <class S>
Decision decide(const StateMachine<S>& m, std::optional<S> current, std::int64_t current_as_of_ms,
                S target, std::int64_t occurred_at_ms) {
  if (!current) return {Outcome::applied, "created"};
  const std::string cur(state_name(*current));
  const std::string tgt(state_name(target));
  const bool older = occurred_at_ms < current_as_of_ms;
  if (*current == target) return {Outcome::stale, "already " + cur};
  if (m.is_final(*current)) {
    if (m.is_final(target)) {
      return {older ? Outcome::stale : Outcome::rejected,
              "unsettled: " + cur + " and " + tgt + " are both final", true};
    }
    if (older) return {Outcome::stale, cur + " is final; event is older"};
    return {Outcome::rejected, cur + " is final; " + tgt + " would regress it"};
  }
  const bool forward = m.reaches(*current, target);
  const bool backward = m.reaches(target, *current);
  const std::string skipped =
      m.allows(*current, target) ? "" : "skipped intermediate states " + cur + " -> " + tgt;
  if (forward && !backward) {  // a later rank: applied whatever the clock says
    if (!older) return {Outcome::applied, skipped};
    return {Outcome::applied,
            and_then(skipped, "occurred_at earlier than " + cur + "'s; the state rank decides")};
  }
  if (forward) {  // the same rank: the clock orders
    if (older) return {Outcome::stale, "older than the current state " + cur};
    return {Outcome::applied, skipped};
  }
  if (backward) {  // an earlier rank
    if (older) return {Outcome::stale, "older than the current state " + cur};
    return {Outcome::stale,
            "unsettled: " + tgt + " ranks before " + cur + " but occurred_at is later", true};
  }
  return {Outcome::rejected, "forbidden transition " + cur + " -> " + tgt, true};
}

#define KPAY_INSTANTIATE(S)                                                              \
  template struct StateMachine<S>;                                                       \
  template Decision decide<S>(const StateMachine<S>&, std::optional<S>, std::int64_t, S, \
                              std::int64_t);
KPAY_INSTANTIATE(RequestState)
KPAY_INSTANTIATE(TransactionState)
KPAY_INSTANTIATE(FundingState)
KPAY_INSTANTIATE(DisputeState)
KPAY_INSTANTIATE(SettlementReportState)
KPAY_INSTANTIATE(PayoutState)
KPAY_INSTANTIATE(AccountState)
KPAY_INSTANTIATE(PaymentProductState)
#undef KPAY_INSTANTIATE

}  // namespace kpay::processor
