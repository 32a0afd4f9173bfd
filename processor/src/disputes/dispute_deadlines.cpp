#include "kpay/processor/dispute_deadlines.hpp"

#include <algorithm>
#include <set>

#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"
#include "kpay/klarna/kafka_contract.hpp"

namespace kpay::processor {

namespace {

// Which deadline the partner must still meet, per dispute state
// (docs/klarna/PAYMENTS-API.md "Disputes"; Klarna's "Disputes states" page: INITIATED =
// respond before the deadline, PRE_ARBITRATION = appeal within the window,
// REPRESENTMENT / ARBITRATION = Klarna's turn). The legacy rows are our
// reading of an unconfirmed graph: the evidence deadline while evidence is
// asked for, the appeal window while it is open. When in doubt, it counts.
struct StateDeadlines {
  std::string_view state;
  bool representment, arbitration, evidence_response;
};
// clang-format off
constexpr StateDeadlines kStateDeadlines[] = {
    //  state                            represent. arbitr. evidence
    {"INITIATED",                        true,      false,  true},
    {"REPRESENTMENT",                    false,     false,  false},
    {"PRE_ARBITRATION",                  false,     true,   false},
    {"ARBITRATION",                      false,     false,  false},
    {"MERCHANT_EVIDENCE_PENDING",        true,      false,  true},
    {"LEGACY_PRE_ARBITRATION",           false,     false,  true},
    {"ARBITRATION_PENDING",              false,     false,  false},
    {"ARBITRATION_APPEAL_WINDOW_OPEN",   false,     true,   true},
    {"CLOSED",                           false,     false,  false},
};
// clang-format on
constexpr StateDeadlines kUnknownState{"", true, true, true};

const StateDeadlines& deadlines_of(const std::optional<std::string>& state) {
  if (!state) return kUnknownState;
  for (const auto& s : kStateDeadlines) {
    if (s.state == *state) return s;
  }
  return kUnknownState;  // a state we do not know: every deadline counts
}

OpenDeadline open_deadline(const storage::DisputeRow& d, std::string_view kind, std::int64_t at) {
  return {
      d.id, std::string(kind), d.state.value_or(""), std::string(storage::to_string(d.framework)),
      at,   d.amount,          d.currency,           d.payment_transaction_id};
}

std::string event_id_of(const DeadlineWarning& w) {
  return "kpay-deadline-warning:" + w.deadline.dispute_id + ":" + w.deadline.kind + ":" +
         std::to_string(w.deadline.deadline_ms) + ":" + w.stage;
}

}  // namespace

// One entry per distinct value: an extension in the SDK's shape sets the same
// value as representment and evidence_response deadline, which is one deadline.
std::vector<OpenDeadline> actionable_deadlines(const storage::DisputeRow& d) {
  const StateDeadlines& counts = deadlines_of(d.state);
  std::vector<OpenDeadline> out;
  auto add = [&](bool counts_here, std::string_view kind, const std::optional<std::int64_t>& at) {
    if (!counts_here || !at) return;
    for (const auto& o : out) {
      if (o.deadline_ms == *at) return;
    }
    out.push_back(open_deadline(d, kind, *at));
  };
  add(counts.representment, "representment", d.representment_expires_at_ms);
  add(counts.arbitration, "arbitration", d.arbitration_expires_at_ms);
  add(counts.evidence_response, "evidence_response", d.evidence_response_deadline_ms);
  return out;
}

std::vector<OpenDeadline> actionable_deadlines(std::span<const storage::DisputeRow> disputes) {
  std::vector<OpenDeadline> out;
  for (const auto& d : disputes) {
    for (auto& o : actionable_deadlines(d)) out.push_back(std::move(o));
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const auto& a, const auto& b) { return a.deadline_ms < b.deadline_ms; });
  return out;
}

DeadlineStats summarize(std::span<const OpenDeadline> deadlines, std::int64_t now_ms,
                        std::int64_t window_ms) {
  DeadlineStats s;
  s.checked_at_ms = now_ms;
  std::set<std::string_view> overdue, due;  // disputes, not deadlines
  for (const auto& d : deadlines) {
    if (d.deadline_ms < now_ms) {
      if (overdue.insert(d.dispute_id).second) ++s.overdue;
      continue;
    }
    if (d.deadline_ms < now_ms + window_ms && due.insert(d.dispute_id).second) {
      ++s.due_within_window;
    }
    const std::int64_t left = (d.deadline_ms - now_ms) / 1000;
    if (!s.seconds_to_nearest || left < *s.seconds_to_nearest) s.seconds_to_nearest = left;
  }
  return s;
}

DeadlineWatchSettings deadline_watch_settings_from_config(const core::Config& config,
                                                          const klarna::Topics& topics) {
  DeadlineWatchSettings s;
  s.window = std::chrono::hours(config.integer("disputes.warning_window_hours", 48, 1, 720));
  s.interval = config.millis("disputes.check_interval_ms", std::chrono::seconds(60),
                             std::chrono::seconds(1), std::chrono::hours(1));
  s.states_topic = topics.payment_states;
  return s;
}

std::string deadline_warning_message(const DeadlineWarning& w, std::int64_t now_ms,
                                     std::int64_t window_ms) {
  const OpenDeadline& d = w.deadline;
  core::JsonWriter j;
  j.begin_object().field("entity_kind", "dispute").field("entity_id", d.dispute_id);
  j.key("previous_state");
  d.state.empty() ? j.null() : j.value(d.state);
  j.key("state");
  d.state.empty() ? j.null() : j.value(d.state);
  j.field("event_id", event_id_of(w)).field("event_type", "kpay.dispute.deadline-warning");
  j.field("occurred_at", core::rfc3339_ms(now_ms)).field("framework", d.framework);
  if (d.amount) j.field("amount", *d.amount);
  if (d.currency) j.field("currency", *d.currency);
  if (d.payment_transaction_id) j.field("payment_transaction_id", *d.payment_transaction_id);
  j.key("deadline_warning").begin_object();
  j.field("deadline", d.kind).field("due_at", core::rfc3339_ms(d.deadline_ms));
  j.field("stage", w.stage).field("overdue", w.stage == "passed");
  j.field("seconds_left", w.seconds_left).field("window_seconds", window_ms / 1000);
  j.end_object().end_object();
  return j.take();
}

std::int64_t DisputeDeadlineWatcher::system_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

DisputeDeadlineWatcher::DisputeDeadlineWatcher(storage::Store& store,
                                               DeadlineWatchSettings settings, Clock now)
    : store_(store), settings_(std::move(settings)), now_(std::move(now)) {}

namespace {

std::string stage_of(const OpenDeadline& d, std::int64_t now_ms) {
  return d.deadline_ms < now_ms ? "passed" : "window";
}

// Adds one page's figures to the check's: a dispute lies in one page only, so
// its counts add up.
void add_page(DeadlineStats& total, const DeadlineStats& page) {
  total.due_within_window += page.due_within_window;
  total.overdue += page.overdue;
  if (page.seconds_to_nearest &&
      (!total.seconds_to_nearest || *page.seconds_to_nearest < *total.seconds_to_nearest)) {
    total.seconds_to_nearest = page.seconds_to_nearest;
  }
}

}  // namespace

// Pages through the open disputes outside any transaction (each page a
// snapshot of its own, no write lock): the figures of all of them, and the
// deadlines inside the window (or past) this processor has not marked yet.
std::vector<OpenDeadline> DisputeDeadlineWatcher::read_due(std::int64_t now_ms, bool warns,
                                                           DeadlineStats& stats) {
  const std::int64_t window_end = now_ms + settings_.window.count();
  const std::size_t page_size = std::max<std::size_t>(settings_.page_size, 1);
  std::vector<OpenDeadline> due;
  std::optional<std::string> after;
  for (;;) {
    const auto page = store_.open_disputes_after(after, page_size);
    stats.open_disputes += static_cast<std::int64_t>(page.size());
    const auto deadlines = actionable_deadlines(page);
    add_page(stats, summarize(deadlines, now_ms, settings_.window.count()));
    if (warns) add_unmarked(deadlines, now_ms, window_end, due);
    if (page.size() < page_size) break;
    after = page.back().id;
  }
  std::stable_sort(due.begin(), due.end(),
                   [](const auto& a, const auto& b) { return a.deadline_ms < b.deadline_ms; });
  return due;
}

// Of a page's deadlines (nearest first), those inside the window (or past)
// whose warning at their stage nobody claimed yet: one read for the page.
void DisputeDeadlineWatcher::add_unmarked(std::span<const OpenDeadline> deadlines,
                                          std::int64_t now_ms, std::int64_t window_end,
                                          std::vector<OpenDeadline>& due) {
  std::vector<storage::DeadlineWarningKey> keys;
  for (const auto& d : deadlines) {
    if (d.deadline_ms >= window_end) break;  // nearest first: the rest is later
    keys.push_back({d.dispute_id, d.kind, d.deadline_ms, stage_of(d, now_ms)});
  }
  if (keys.empty()) return;
  const auto marked = store_.deadline_warnings_marked(keys);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (!marked[i]) due.push_back(deadlines[i]);
  }
}

// The deadline as the dispute stands now (inside the write transaction):
// none when it closed, or moved on to a state where this deadline does not
// count, or the deadline changed since the read.
std::optional<OpenDeadline> DisputeDeadlineWatcher::still_due(const OpenDeadline& d) {
  const auto row = store_.find_dispute(d.dispute_id);
  if (!row) return std::nullopt;
  for (auto& now : actionable_deadlines(*row)) {
    if (now.kind == d.kind && now.deadline_ms == d.deadline_ms) return std::move(now);
  }
  return std::nullopt;
}

// Of the due deadlines read, those still due whose claim this call made:
// marking them is what makes the warning happen once.
std::vector<DeadlineWarning> DisputeDeadlineWatcher::new_warnings(std::span<const OpenDeadline> due,
                                                                  std::int64_t now_ms) {
  std::vector<DeadlineWarning> out;
  for (const auto& read : due) {
    auto d = still_due(read);
    if (!d) continue;
    const std::string stage = stage_of(*d, now_ms);
    if (!store_.mark_deadline_warning(d->dispute_id, d->kind, d->deadline_ms, stage, now_ms)) {
      continue;
    }
    const std::int64_t left_ms = d->deadline_ms - now_ms;
    out.push_back(
        {std::move(*d), stage, left_ms >= 0 ? left_ms / 1000 : -((-left_ms + 999) / 1000)});
  }
  return out;
}

storage::PublishRow DisputeDeadlineWatcher::publication(const DeadlineWarning& w,
                                                        std::int64_t now_ms) const {
  return {0, settings_.states_topic, w.deadline.dispute_id,
          deadline_warning_message(w, now_ms, settings_.window.count()), ""};
}

DeadlineCheck DisputeDeadlineWatcher::check() {
  const std::int64_t now_ms = now_();
  DeadlineCheck c;
  c.stats.checked_at_ms = now_ms;
  // Several processors on one database: all keep the figures, the one
  // holding the job warns.
  const bool warns = store_.hold_job(storage::kDisputeDeadlinesJob);
  const auto due = read_due(now_ms, warns, c.stats);
  if (!due.empty()) {
    // Only the few deadlines to warn about, re-read under the write lock.
    storage::WriteTransaction tx(store_);
    c.warnings = new_warnings(due, now_ms);
    for (const auto& w : c.warnings) {
      auto row = publication(w, now_ms);
      row.seq = store_.enqueue_publish(row);
      c.publications.push_back(std::move(row));
    }
    tx.commit();
  }
  std::lock_guard lock(mu_);
  last_ = c.stats;
  return c;
}

DeadlineStats DisputeDeadlineWatcher::stats() const {
  std::lock_guard lock(mu_);
  return last_;
}

void DisputeDeadlineWatcher::register_metrics(core::Registry& registry) {
  registry.gauge_callback(
      klarna::contract::metric::processor_dispute_deadlines,
      "Open disputes' deadlines the partner must meet: due within the warning window, overdue.",
      {"status"}, [this]() -> std::vector<core::GaugeSample> {
        const auto s = stats();
        if (s.checked_at_ms == 0) return {};
        return {{{"due_within_window"}, static_cast<double>(s.due_within_window)},
                {{"overdue"}, static_cast<double>(s.overdue)}};
      });
  registry.gauge_callback(
      "kpay_processor_dispute_deadline_nearest_seconds",
      "Seconds to the nearest dispute deadline not passed yet (absent when there is none).", {},
      [this]() -> std::vector<core::GaugeSample> {
        const auto s = stats();
        if (!s.seconds_to_nearest) return {};
        return {{{}, static_cast<double>(*s.seconds_to_nearest)}};
      });
  registry.gauge_callback("kpay_processor_dispute_deadline_last_check_timestamp_seconds",
                          "When the dispute deadline watcher last checked (Unix seconds).", {},
                          [this]() -> std::vector<core::GaugeSample> {
                            const auto s = stats();
                            if (s.checked_at_ms == 0) return {};
                            return {{{}, static_cast<double>(s.checked_at_ms) / 1000.0}};
                          });
}

}  // namespace kpay::processor
