// Table-driven tests of every state machine: the tables restated here from
// docs/klarna/PAYMENTS-API.md and WEBHOOKS.md as strings, independent of the code's tables;
// every pair of states is checked (allowed, forbidden, reachable), then the
// decision rule for each machine (applied, stale, rejected).
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "kpay/processor/state_machines.hpp"

using namespace kpay::processor;

namespace {

template <class S>
struct MachineSpec {
  const StateMachine<S>* machine;
  std::vector<S> states;
  std::set<std::string> allowed;  // "FROM>TO"
  std::set<std::string> finals;
};

template <class S>
std::string edge(S a, S b) {
  return std::string(state_name(a)) + ">" + std::string(state_name(b));
}

template <class S>
void check_machine(const MachineSpec<S>& spec) {
  const auto& m = *spec.machine;
  SCOPED_TRACE(std::string(m.name));
  std::size_t allowed_seen = 0;
  for (S from : spec.states) {
    EXPECT_EQ(m.is_final(from), spec.finals.count(std::string(state_name(from))) == 1)
        << state_name(from);
    for (S to : spec.states) {
      const bool expected = spec.allowed.count(edge(from, to)) == 1;
      allowed_seen += expected ? 1 : 0;
      EXPECT_EQ(m.allows(from, to), expected) << edge(from, to);

      const std::int64_t as_of = 1'000'000;
      // Newer event: allowed → applied; same state → stale; final → rejected;
      // reachable through the table → applied (skipping); else rejected.
      auto newer = decide(m, std::optional<S>(from), as_of, to, as_of + 1);
      if (from == to) {
        EXPECT_EQ(newer.outcome, Outcome::stale) << edge(from, to);
      } else if (m.is_final(from)) {
        EXPECT_EQ(newer.outcome, Outcome::rejected) << edge(from, to) << " final never regresses";
        EXPECT_EQ(newer.read, m.is_final(to)) << edge(from, to) << " two finals: read";
      } else if (expected) {
        EXPECT_EQ(newer.outcome, Outcome::applied) << edge(from, to);
        EXPECT_TRUE(newer.reason.empty()) << newer.reason;
      } else if (m.reaches(from, to)) {
        EXPECT_EQ(newer.outcome, Outcome::applied) << edge(from, to);
        EXPECT_NE(newer.reason.find("skipped"), std::string::npos) << newer.reason;
      } else if (!m.reaches(to, from)) {
        EXPECT_EQ(newer.outcome, Outcome::rejected) << edge(from, to);
        EXPECT_NE(newer.reason.find("forbidden"), std::string::npos) << newer.reason;
      }
      // Older event: the state rank decides, not the clock. A later rank
      // (reachable, not back) is applied whatever occurred_at says (a move to
      // a final state is never dropped as stale); the same rank (a cycle) or
      // an earlier one is stale. Two different finals: unsettled, read.
      auto older = decide(m, std::optional<S>(from), as_of, to, as_of - 1);
      const bool later_rank =
          !m.is_final(from) && from != to && m.reaches(from, to) && !m.reaches(to, from);
      EXPECT_EQ(older.outcome, later_rank ? Outcome::applied : Outcome::stale)
          << edge(from, to) << ": " << older.reason;
      EXPECT_EQ(older.read, from != to && m.is_final(from) && m.is_final(to)) << edge(from, to);
      // Newer event of an earlier rank: rank and clock disagree, Klarna is read.
      const bool earlier_rank =
          !m.is_final(from) && from != to && m.reaches(to, from) && !m.reaches(from, to);
      if (earlier_rank) {
        EXPECT_EQ(newer.outcome, Outcome::stale) << edge(from, to);
        EXPECT_TRUE(newer.read) << edge(from, to);
      }
      // Unseen entity: created in the event's state.
      EXPECT_EQ(decide(m, std::optional<S>(), 0, to, as_of).outcome, Outcome::applied);
    }
  }
  EXPECT_EQ(allowed_seen, spec.allowed.size()) << "a listed edge names an unknown state";
}

using RS = RequestState;
using TS = TransactionState;
using DS = DisputeState;

}  // namespace

TEST(StateMachines, Gen1PaymentRequest) {
  check_machine<RS>(
      {&gen1_request_machine(),
       {RS::submitted, RS::prepared, RS::in_progress, RS::pending_confirmation, RS::authorized,
        RS::expired, RS::canceled, RS::declined},
       {"SUBMITTED>IN_PROGRESS", "SUBMITTED>PREPARED", "SUBMITTED>EXPIRED", "SUBMITTED>CANCELED",
        "PREPARED>IN_PROGRESS", "PREPARED>PENDING_CONFIRMATION", "PREPARED>EXPIRED",
        "PREPARED>CANCELED", "IN_PROGRESS>SUBMITTED", "IN_PROGRESS>PENDING_CONFIRMATION",
        "IN_PROGRESS>AUTHORIZED", "IN_PROGRESS>EXPIRED", "IN_PROGRESS>CANCELED",
        "IN_PROGRESS>DECLINED", "PENDING_CONFIRMATION>IN_PROGRESS",
        "PENDING_CONFIRMATION>AUTHORIZED", "PENDING_CONFIRMATION>SUBMITTED",
        "PENDING_CONFIRMATION>EXPIRED", "PENDING_CONFIRMATION>CANCELED"},
       {"AUTHORIZED", "EXPIRED", "CANCELED", "DECLINED"}});
}

TEST(StateMachines, Gen2PaymentRequest) {
  check_machine<RS>(
      {&gen2_request_machine(),
       {RS::submitted, RS::in_progress, RS::completed, RS::expired, RS::canceled, RS::declined},
       {"SUBMITTED>IN_PROGRESS", "SUBMITTED>EXPIRED", "SUBMITTED>CANCELED", "IN_PROGRESS>SUBMITTED",
        "IN_PROGRESS>COMPLETED", "IN_PROGRESS>EXPIRED", "IN_PROGRESS>CANCELED",
        "IN_PROGRESS>DECLINED"},
       {"COMPLETED", "EXPIRED", "CANCELED", "DECLINED"}});
}

TEST(StateMachines, PaymentTransaction) {
  check_machine<TS>(
      {&transaction_machine(),
       {TS::authorized, TS::completed, TS::expired, TS::closed},
       {"AUTHORIZED>COMPLETED", "AUTHORIZED>CLOSED", "AUTHORIZED>EXPIRED", "EXPIRED>AUTHORIZED",
        "EXPIRED>COMPLETED", "EXPIRED>CLOSED", "COMPLETED>CLOSED"},
       {"CLOSED"}});
}

TEST(StateMachines, Funding) {
  check_machine<FundingState>({&funding_machine(),
                               {FundingState::funded, FundingState::expired},
                               {},
                               {"FUNDED", "EXPIRED"}});
}

TEST(StateMachines, DisputeCurrentFramework) {
  check_machine<DS>(
      {&current_dispute_machine(),
       {DS::initiated, DS::representment, DS::pre_arbitration, DS::arbitration, DS::closed},
       {"INITIATED>REPRESENTMENT", "INITIATED>CLOSED", "REPRESENTMENT>PRE_ARBITRATION",
        "REPRESENTMENT>CLOSED", "PRE_ARBITRATION>ARBITRATION", "PRE_ARBITRATION>CLOSED",
        "ARBITRATION>CLOSED"},
       {"CLOSED"}});
}

TEST(StateMachines, DisputeLegacyFramework) {
  check_machine<DS>(
      {&legacy_dispute_machine(),
       {DS::merchant_evidence_pending, DS::legacy_pre_arbitration, DS::arbitration_pending,
        DS::arbitration_appeal_window_open, DS::closed},
       {"MERCHANT_EVIDENCE_PENDING>LEGACY_PRE_ARBITRATION",
        "MERCHANT_EVIDENCE_PENDING>ARBITRATION_PENDING", "MERCHANT_EVIDENCE_PENDING>CLOSED",
        "LEGACY_PRE_ARBITRATION>ARBITRATION_PENDING", "LEGACY_PRE_ARBITRATION>CLOSED",
        "ARBITRATION_PENDING>ARBITRATION_APPEAL_WINDOW_OPEN", "ARBITRATION_PENDING>CLOSED",
        "ARBITRATION_APPEAL_WINDOW_OPEN>ARBITRATION_PENDING",
        "ARBITRATION_APPEAL_WINDOW_OPEN>CLOSED"},
       {"CLOSED"}});
}

TEST(StateMachines, SettlementReportAndPayout) {
  check_machine<SettlementReportState>(
      {&settlement_report_machine(),
       {SettlementReportState::created, SettlementReportState::uploaded_to_sftp},
       {"REPORT_CREATED>REPORT_UPLOADED_TO_SFTP"},
       {"REPORT_UPLOADED_TO_SFTP"}});
  check_machine<PayoutState>(
      {&payout_machine(),
       {PayoutState::processed, PayoutState::confirmed, PayoutState::failed},
       {"PAYOUT_PROCESSED>PAYOUT_CONFIRMED", "PAYOUT_PROCESSED>PAYOUT_FAILED"},
       {"PAYOUT_CONFIRMED", "PAYOUT_FAILED"}});
}

TEST(StateMachines, PartnerAccount) {
  check_machine<AccountState>({&account_machine(),
                               {AccountState::created, AccountState::operational},
                               {"CREATED>OPERATIONAL"},
                               {}});
  check_machine<PaymentProductState>({&payment_product_machine(),
                                      {PaymentProductState::enabled, PaymentProductState::disabled},
                                      {"ENABLED>DISABLED", "DISABLED>ENABLED"},
                                      {}});
}

TEST(StateMachines, NamesRoundTrip) {
  for (auto s : {RS::submitted, RS::prepared, RS::in_progress, RS::pending_confirmation,
                 RS::authorized, RS::completed, RS::expired, RS::canceled, RS::declined}) {
    EXPECT_EQ(parse_state<RS>(state_name(s)), s);
  }
  for (auto s : {DS::initiated, DS::representment, DS::pre_arbitration, DS::arbitration,
                 DS::merchant_evidence_pending, DS::legacy_pre_arbitration, DS::arbitration_pending,
                 DS::arbitration_appeal_window_open, DS::closed}) {
    EXPECT_EQ(parse_state<DS>(state_name(s)), s);
  }
  EXPECT_FALSE(parse_state<TS>("CAPTURED").has_value());
}

// The convergence argument behind decide(): completed before in-progress makes
// the later in-progress stale, so shuffled delivery ends where ordered does.
// And the clock never holds back a later rank: a completed stamped 2 s before
// the in-progress it follows is applied.
TEST(StateMachines, OutOfOrderCompletedMakesInProgressStale) {
  const auto& m = gen2_request_machine();
  auto first = decide(m, std::optional<RS>(RS::submitted), 100, RS::completed, 300);
  EXPECT_EQ(first.outcome, Outcome::applied);
  auto late = decide(m, std::optional<RS>(RS::completed), 300, RS::in_progress, 200);
  EXPECT_EQ(late.outcome, Outcome::stale);
  auto skewed = decide(m, std::optional<RS>(RS::in_progress), 10'000, RS::completed, 8'000);
  EXPECT_EQ(skewed.outcome, Outcome::applied);
  EXPECT_NE(skewed.reason.find("the state rank decides"), std::string::npos) << skewed.reason;
}
