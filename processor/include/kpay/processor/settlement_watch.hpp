// Settlements watched from the processor's main thread (settlement_watch.cpp):
// the reconciliation's figures for /metrics, read from the state database at
// each scrape (so they survive restarts and count each finding once), and the
// periodic look for captures and refunds that no report named within the
// grace period (missing_in_settlement) and for open findings that no longer
// hold, whose findings and resolutions are published.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "kpay/core/metrics.hpp"
#include "kpay/storage/reconciliation_store.hpp"
#include "kpay/storage/state_store.hpp"

namespace kpay::processor {

class SettlementWatch {
 public:
  // `store`: a writable connection of its own; `topic`: klarna.reconciliation
  // with the prefix applied.
  SettlementWatch(storage::Store& store, std::chrono::milliseconds grace, std::string topic)
      : store_(store), grace_(grace), topic_(std::move(topic)) {}

  // kpay_processor_settlement_findings{kind}: open findings (every kind, 0
  // when none); kpay_processor_settlement_unsettled_amount{currency}: captures
  // executed that no settlement line names yet, minor units.
  void register_metrics(core::Registry& registry);

  struct Check {
    std::vector<storage::FindingRow> found;         // new findings (missing_in_settlement, …)
    std::vector<storage::FindingRow> resolved;      // findings that no longer hold
    std::vector<storage::PublishRow> publications;  // in the publish queue already
  };
  // One transaction: the settlements with open findings checked again
  // (recheck_findings), then captures and refunds settled nowhere; new and
  // resolved findings stored and queued for klarna.reconciliation.
  Check check(std::int64_t now_ms);

 private:
  storage::Store& store_;
  std::chrono::milliseconds grace_;
  std::string topic_;
  std::mutex mu_;
};

}  // namespace kpay::processor
