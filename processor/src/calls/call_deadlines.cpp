#include "kpay/processor/call_deadlines.hpp"

#include "kpay/core/wall_clock.hpp"
#include "kpay/klarna/kafka_contract.hpp"

namespace kpay::processor {

namespace {

using core::now_ms;

}  // namespace

CallDeadlineWatch::CallDeadlineWatch(storage::Store& store, std::chrono::milliseconds window)
    : store_(store), window_(window) {}

void CallDeadlineWatch::register_metrics(core::Registry& registry) {
  registry.gauge_callback(
      klarna::contract::metric::processor_call_deadlines,
      "Klarna calls not done with a deadline within the warning window (at_risk), past it "
      "(overdue), and calls that failed and wait for an operator (failed).",
      {"status"}, [this]() -> std::vector<core::GaugeSample> {
        std::lock_guard lock(mu_);
        try {
          const auto d = store_.deadlines(now_ms(), 0, window_.count());
          return {{{"at_risk"}, static_cast<double>(d.calls_at_risk)},
                  {{"overdue"}, static_cast<double>(d.calls_overdue)},
                  {{"failed"}, static_cast<double>(d.calls_failed)}};
        } catch (const std::exception&) {
          return {};  // the store is busy or failing; /readyz reports storage
        }
      });
  registry.gauge_callback(
      "kpay_processor_call_deadline_nearest_seconds",
      "Seconds to the nearest deadline of a Klarna call not done (negative: passed).", {},
      [this]() -> std::vector<core::GaugeSample> {
        std::lock_guard lock(mu_);
        try {
          const auto now = now_ms();
          const auto d = store_.deadlines(now, 0, window_.count());
          if (!d.nearest_call_due_ms) return {};
          return {{{}, static_cast<double>(*d.nearest_call_due_ms - now) / 1000.0}};
        } catch (const std::exception&) {
          return {};
        }
      });
}

std::vector<storage::OutboxRow> CallDeadlineWatch::check(std::int64_t now) {
  std::lock_guard lock(mu_);
  std::vector<storage::OutboxRow> entered;
  // Several processors on one database: the one holding the job reports.
  if (!store_.hold_job(storage::kCallDeadlinesJob)) return entered;
  for (auto& row : store_.outbox_due_within(now, window_.count(), 1000)) {
    const bool overdue = row.due_by_ms && *row.due_by_ms < now;
    if (reported_.insert({row.id, overdue}).second) entered.push_back(std::move(row));
  }
  return entered;
}

}  // namespace kpay::processor
