// Settlements watched from the processor's main thread (settlement_watch.cpp):
// the reconciliation's figures for /metrics, read from the state database at
// each scrape (so they survive restarts and count each finding once), and the
// periodic look for captures and refunds that no report named within the
// grace period (missing_in_settlement) and for open findings that no longer
// hold, whose findings and resolutions are published.
//
// Several processors on one database (PostgreSQL): the processor holding the
// settlement-watch job (JobLeases) checks and reports the figures; the others
// neither look (no finding raised or published twice) nor report (a sum or an
// alert over the processors counts each finding once). SQLite: always held.
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
  // executed that no settlement line names yet, minor units. Only while this
  // processor held the job at its last hold() or check(): none otherwise.
  void register_metrics(core::Registry& registry);

  // Takes or renews the settlement-watch job (at least once per lease); true
  // while this processor holds it. Throws when the store fails (then false).
  bool hold();

  struct Check {
    std::vector<storage::FindingRow> found;         // new findings (missing_in_settlement, …)
    std::vector<storage::FindingRow> resolved;      // findings that no longer hold
    std::vector<storage::PublishRow> publications;  // in the publish queue already
  };
  // One transaction: the settlements with open findings checked again
  // (recheck_findings), then captures and refunds settled nowhere; new and
  // resolved findings stored and queued for klarna.reconciliation. Nothing
  // (an empty Check) unless hold() succeeds: another processor checks.
  Check check(std::int64_t now_ms);

 private:
  storage::Store& store_;
  std::chrono::milliseconds grace_;
  std::string topic_;
  std::mutex mu_;           // the store: one connection, used by the scrapes too
  bool holds_job_ = false;  // at the last hold() or check(), under mu_
  bool hold_locked();       // hold(), mu_ held
};

}  // namespace kpay::processor
