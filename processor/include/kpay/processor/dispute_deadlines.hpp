// Dispute deadlines as state: which deadline of an open dispute the partner
// must still meet (a table per state), what is due within the warning window
// or already overdue, and a watcher that warns once per deadline value.
//
// A missed response deadline is an automatic loss (docs/klarna/PAYMENTS-API.md
// "Disputes"), so the watcher errs on the side of warning: a dispute whose
// state is not known yet counts with every deadline it has.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kpay/core/config.hpp"
#include "kpay/core/metrics.hpp"
#include "kpay/klarna/envelope.hpp"
#include "kpay/klarna/kafka_contract.hpp"
#include "kpay/storage/store.hpp"

namespace kpay::processor {

// One deadline of an open dispute that the partner has to meet in its state.
struct OpenDeadline {
  std::string dispute_id;
  std::string kind;   // "representment" | "arbitration" | "evidence_response"
  std::string state;  // "" while unknown
  std::string framework;
  std::int64_t deadline_ms = 0;
  std::optional<std::int64_t> amount;
  std::optional<std::string> currency;
  std::optional<std::string> payment_transaction_id;
};

// The deadlines of `d` that count in its state (none once CLOSED).
std::vector<OpenDeadline> actionable_deadlines(const storage::DisputeRow& d);
// Of many disputes, nearest first.
std::vector<OpenDeadline> actionable_deadlines(std::span<const storage::DisputeRow> disputes);

struct DeadlineStats {
  std::int64_t checked_at_ms = 0;
  // Disputes (not deadlines): a deadline now <= d < now + window; one passed.
  std::int64_t due_within_window = 0;
  std::int64_t overdue = 0;
  // Seconds from now to the nearest deadline not passed yet; none when none.
  std::optional<std::int64_t> seconds_to_nearest;
  // Open disputes the check read (all of them: DisputeDeadlineWatcher::check).
  std::int64_t open_disputes = 0;
};
DeadlineStats summarize(std::span<const OpenDeadline> deadlines, std::int64_t now_ms,
                        std::int64_t window_ms);

struct DeadlineWatchSettings {
  std::chrono::milliseconds window = std::chrono::hours(48);      // disputes.warning_window_hours
  std::chrono::milliseconds interval = std::chrono::seconds(60);  // disputes.check_interval_ms
  std::string states_topic = klarna::contract::topic::payment_states;  // prefix applied
  // Open disputes read per page (storage::EntityStore::open_disputes_after).
  std::size_t page_size = 1000;
};
// Reads `disputes.warning_window_hours` (1–720, default 48) and
// `disputes.check_interval_ms` (1000–3600000, default 60000).
DeadlineWatchSettings deadline_watch_settings_from_config(const core::Config& config,
                                                          const klarna::Topics& topics);

// A deadline that entered the window ("window") or passed ("passed") since
// the last check: log one line and publish one message for each.
struct DeadlineWarning {
  OpenDeadline deadline;
  std::string stage;              // "window" | "passed"
  std::int64_t seconds_left = 0;  // negative once passed
};

struct DeadlineCheck {
  DeadlineStats stats;
  std::vector<DeadlineWarning> warnings;
  // One klarna.payment-states row per warning, already committed to the
  // store's publish queue (seq set): hand them to Processor::publish_later.
  std::vector<storage::PublishRow> publications;
};

// Checks the store's open disputes against a clock. It reads all of them in
// pages (keyset on id, through the index of open disputes) outside any
// transaction, so the processor's batches never wait for the read; only
// when a deadline is due and not warned yet does it open a write transaction,
// re-read those disputes in it (one closed meanwhile is not warned) and record
// the warnings. Each warning is recorded in the store in the same transaction
// as its publish-queue row, so it is sent once per deadline value and stage,
// across restarts; an extension (a new deadline value) warns again when the
// new value enters the window.
// With several processors on one database, the one holding the job
// (storage::kDisputeDeadlinesJob) warns; the others only keep the figures.
// Not thread-safe except stats(): call check() from one thread.
class DisputeDeadlineWatcher {
 public:
  using Clock = std::function<std::int64_t()>;  // Unix ms; injectable for tests
  static std::int64_t system_now_ms();

  // `store`: a writable connection only this watcher's thread uses.
  DisputeDeadlineWatcher(storage::Store& store, DeadlineWatchSettings settings,
                         Clock now = &DisputeDeadlineWatcher::system_now_ms);

  // Reads outside a transaction; a write transaction only for new warnings.
  // Throws storage::StoreError (retry at the next interval).
  DeadlineCheck check();
  // The last check's figures (thread-safe; for scrapes).
  DeadlineStats stats() const;
  // kpay_processor_dispute_deadlines{status="due_within_window"|"overdue"},
  // kpay_processor_dispute_deadline_nearest_seconds,
  // kpay_processor_dispute_deadline_last_check_timestamp_seconds — from stats().
  // The watcher must outlive the registry's scrapes.
  void register_metrics(core::Registry& registry);
  const DeadlineWatchSettings& settings() const { return settings_; }

 private:
  std::vector<OpenDeadline> read_due(std::int64_t now_ms, bool warns, DeadlineStats& stats);
  void add_unmarked(std::span<const OpenDeadline> deadlines, std::int64_t now_ms,
                    std::int64_t window_end, std::vector<OpenDeadline>& due);
  std::optional<OpenDeadline> still_due(const OpenDeadline& d);
  std::vector<DeadlineWarning> new_warnings(std::span<const OpenDeadline> due, std::int64_t now_ms);
  storage::PublishRow publication(const DeadlineWarning& w, std::int64_t now_ms) const;

  storage::Store& store_;
  DeadlineWatchSettings settings_;
  Clock now_;
  mutable std::mutex mu_;
  DeadlineStats last_;  // guarded by mu_
};

// The klarna.payment-states message of a warning (entity_kind "dispute",
// event_type "kpay.dispute.deadline-warning", a `deadline_warning` object;
// event_id is derived from dispute, deadline, value and stage, so consumers
// de-duplicate a republished copy).
std::string deadline_warning_message(const DeadlineWarning& w, std::int64_t now_ms,
                                     std::int64_t window_ms);

}  // namespace kpay::processor
