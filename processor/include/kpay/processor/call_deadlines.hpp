// Deadlines of the Klarna calls in the outbox (docs/klarna/DESIGN.md, principle 7):
// a final authorization or confirm must happen within 60 minutes of the
// customer's approval, or the approval is lost. Calls not done whose deadline
// is within the window, or passed, are counted for /metrics and reported once
// each, so an operator hears about a call at risk while it can still be saved.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <set>
#include <vector>

#include "kpay/core/metrics.hpp"
#include "kpay/storage/store.hpp"

namespace kpay::processor {

class CallDeadlineWatch {
 public:
  // `store`: a connection of its own (read-only is enough); used only by the
  // thread that calls check() and by the metric callbacks, serialized inside.
  CallDeadlineWatch(storage::Store& store, std::chrono::milliseconds window);

  // kpay_processor_call_deadlines{status="at_risk"|"overdue"|"failed"} and
  // kpay_processor_call_deadline_nearest_seconds (negative when passed).
  void register_metrics(core::Registry& registry);

  // Calls that entered the window (or passed their deadline) since the last
  // check: each returned once per process. With several processors on one
  // database, only by the one holding the job (storage::kCallDeadlinesJob):
  // one warning per call, unless the job moves to another processor (its
  // holder died), which reports the calls in the window once more.
  std::vector<storage::OutboxRow> check(std::int64_t now_ms);

 private:
  storage::Store& store_;
  std::chrono::milliseconds window_;
  std::mutex mu_;
  std::set<std::pair<std::int64_t, bool>> reported_;  // (outbox id, overdue)
};

}  // namespace kpay::processor
