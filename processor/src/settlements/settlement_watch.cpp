#include "kpay/processor/settlement_watch.hpp"

#include "kpay/klarna/kafka_contract.hpp"
#include "kpay/processor/reconciler.hpp"
#include "kpay/storage/reconciliation_store.hpp"

namespace kpay::processor {

void SettlementWatch::register_metrics(core::Registry& registry) {
  registry.gauge_callback(
      klarna::contract::metric::processor_settlement_findings,
      "Reconciliation findings not resolved, by kind (missing_in_settlement, "
      "unexpected_in_settlement, amount_mismatch, duplicate_settlement, payout_mismatch, "
      "currency_mismatch, unrecognised_line).",
      {"kind"}, [this]() -> std::vector<core::GaugeSample> {
        std::lock_guard lock(mu_);
        if (!holds_job_) return {};  // another processor reports them
        try {
          auto open = storage::ledger_of(store_).open_findings_by_kind();
          std::vector<core::GaugeSample> out;
          for (auto kind : finding_kind::all) {
            auto it = open.find(std::string(kind));
            out.push_back(
                {{std::string(kind)}, static_cast<double>(it == open.end() ? 0 : it->second)});
          }
          return out;
        } catch (const std::exception&) {
          return {};  // the store is busy or failing; /readyz reports storage
        }
      });
  registry.gauge_callback(
      klarna::contract::metric::processor_settlement_unsettled_amount,
      "Captures executed that no settlement report names yet, minor units, by currency.",
      {"currency"}, [this]() -> std::vector<core::GaugeSample> {
        std::lock_guard lock(mu_);
        if (!holds_job_) return {};
        try {
          std::vector<core::GaugeSample> out;
          for (const auto& [currency, amount] :
               storage::ledger_of(store_).unsettled_capture_amounts()) {
            out.push_back({{currency}, static_cast<double>(amount)});
          }
          return out;
        } catch (const std::exception&) {
          return {};
        }
      });
}

bool SettlementWatch::hold_locked() {
  holds_job_ = false;  // until the store says otherwise
  holds_job_ = store_.hold_job(storage::kSettlementWatchJob);
  return holds_job_;
}

bool SettlementWatch::hold() {
  std::lock_guard lock(mu_);
  return hold_locked();
}

SettlementWatch::Check SettlementWatch::check(std::int64_t now_ms) {
  std::lock_guard lock(mu_);
  Check out;
  if (!hold_locked()) return out;
  storage::WriteTransaction tx(store_);
  auto r = recheck_findings(store_, now_ms);
  for (auto& f : find_missing(store_, now_ms, grace_).found) r.found.push_back(std::move(f));
  enqueue_findings(store_, topic_, r, out.publications);
  tx.commit();
  out.found = std::move(r.found);
  out.resolved = std::move(r.cleared);
  return out;
}

}  // namespace kpay::processor
