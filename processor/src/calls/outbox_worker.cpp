#include "kpay/processor/outbox_worker.hpp"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <random>
#include <thread>

#include "calls/call_answers.hpp"
#include "kpay/core/log.hpp"
#include "kpay/core/percent_encode.hpp"
#include "kpay/core/traceparent.hpp"
#include "kpay/core/wall_clock.hpp"
#include "kpay/storage/store_error.hpp"

namespace kpay::processor {

namespace {

using core::now_ms;

// "{token}" in a stored path stands for the call's token, sent percent-encoded.
std::string resolve_path(const storage::OutboxRow& row, const FollowUpSettings& s) {
  std::string path = request_path(row, s);
  if (auto at = path.find("{token}"); at != std::string::npos) {
    path.replace(at, 7, core::percent_encode(row.call_token));
  }
  return path;
}

klarna::Call make_call(const storage::OutboxRow& row, const FollowUpSettings& s) {
  klarna::Call call;
  call.method = row.method;
  call.path = resolve_path(row, s);
  call.path_for_logs = request_path(row, s);
  call.body = row.request_body;
  call.idempotency_key = row.idempotency_key;
  call.correlation_id = "kpay" + std::to_string(row.id);
  // Each attempt is a span of the trace of what caused the call.
  call.traceparent = core::child_traceparent(row.traceparent);
  for (auto& header : token_headers(row)) call.sensitive_headers.push_back(std::move(header));
  return call;
}

}  // namespace

std::chrono::milliseconds retry_delay(const WorkerSettings& s, std::int64_t attempts,
                                      std::chrono::milliseconds hint, double unit_random) {
  const double exponent = static_cast<double>(std::clamp<std::int64_t>(attempts - 1, 0, 30));
  const double base =
      std::min(static_cast<double>(s.max_backoff.count()),
               static_cast<double>(s.initial_backoff.count()) * std::pow(2.0, exponent));
  const auto jittered = static_cast<std::int64_t>(base * (0.5 + 0.5 * unit_random));
  return std::max(std::chrono::milliseconds(jittered), hint);
}

WorkerSettings worker_settings_from_config(const core::Config& c) {
  using ms = std::chrono::milliseconds;
  WorkerSettings s;
  s.enabled = c.boolean("worker.enabled", true);
  s.concurrency = static_cast<std::size_t>(c.integer("worker.concurrency", 64, 1, 4096));
  s.max_attempts = c.integer("worker.max_attempts", 10, 1, 1000);
  s.initial_backoff = c.millis("worker.initial_backoff_ms", ms(1000), ms(1), ms(3600000));
  s.max_backoff = c.millis("worker.max_backoff_ms", ms(300000), ms(1), ms(86400000));
  s.poll_interval = c.millis("worker.poll_interval_ms", ms(500), ms(10), ms(60000));
  s.stop_timeout = c.millis("worker.stop_timeout_ms", ms(5000), ms(0), ms(60000));
  s.follow_ups = follow_up_settings_from_config(c);
  s.topics.apply_prefix(c.string("kafka.topic_prefix", ""));
  return s;
}

klarna::ClientSettings client_settings_from_config(const core::Config& c) {
  using ms = std::chrono::milliseconds;
  klarna::ClientSettings s;
  try {
    s.environment = klarna::parse_environment(c.string("klarna.environment", "test"));
  } catch (const std::invalid_argument& e) {
    throw core::ConfigError("klarna.environment", e.what());
  }
  s.base_url = c.string("klarna.base_url", "");
  if (s.environment == klarna::Environment::custom && s.base_url.empty()) {
    throw core::ConfigError("klarna.base_url", "is required when klarna.environment = \"custom\"");
  }
  s.ca_file = c.string("klarna.ca_file", "");
  s.client_certificate_file = c.string("klarna.client_certificate", "");
  s.client_private_key_file = c.string("klarna.client_private_key", "");
  s.credentials_file = c.string("klarna.credentials_file", "");
  s.max_connections = static_cast<std::size_t>(c.integer("klarna.max_connections", 32, 1, 1024));
  s.request_timeout = c.millis("klarna.request_timeout_ms", ms(30000), ms(100), ms(120000));
  s.connect_timeout = c.millis("klarna.connect_timeout_ms", ms(5000), ms(100), ms(60000));
  s.max_requests_per_second =
      static_cast<double>(c.integer("klarna.max_requests_per_second", 0, 0, 100000));
  s.io_threads = static_cast<int>(c.integer("klarna.io_threads", 1, 1, 16));
  s.user_agent = "klarna-processor";
  return s;
}

struct OutboxWorker::Impl {
  struct Done {
    storage::OutboxRow row;
    klarna::Answer answer;
    std::string traceparent;  // sent on this attempt
    std::int64_t started_at_ms = 0;
  };
  struct Metrics {
    explicit Metrics(core::Registry& r)
        : calls(r.counter("kpay_processor_klarna_calls_total",
                          "Klarna calls answered, by operation and outcome "
                          "(succeeded, retry, failed, conflict).",
                          {"operation", "outcome"})),
          latency(r.histogram("kpay_processor_klarna_call_seconds",
                              "Klarna call latency, by operation.", {"operation"},
                              core::latency_buckets_seconds())),
          throttled(r.counter("kpay_processor_klarna_throttled_total",
                              "Klarna answers 429 (rate limited), by operation.", {"operation"})),
          in_flight(
              r.gauge("kpay_processor_klarna_calls_in_flight", "Klarna calls in flight.").with({})),
          record_errors(r.counter("kpay_processor_outbox_record_errors_total",
                                  "Answers whose recording failed on a storage error (retried).")
                            .with({})),
          record_conflicts(r.counter("kpay_processor_outbox_record_conflicts_total",
                                     "Answer recordings rolled back because another processor's "
                                     "transaction changed the same rows at the same time "
                                     "(recorded again).")
                               .with({})),
          store_errors(r.counter("kpay_processor_outbox_claim_errors_total",
                                 "Passes whose claim of due calls failed on a storage error "
                                 "(retried).")
                           .with({})),
          dropped(r.counter("kpay_processor_outbox_answers_dropped_total",
                            "Answers dropped because another processor took the call over "
                            "after this one's claim lease (it records its own).")
                      .with({})) {}
    core::CounterFamily& calls;
    core::HistogramFamily& latency;
    core::CounterFamily& throttled;
    core::Gauge& in_flight;
    core::Counter& record_errors;
    core::Counter& record_conflicts;
    core::Counter& store_errors;
    core::Counter& dropped;
  };

  Impl(WorkerSettings s, storage::Store& st, klarna::ApiClient& cl, core::Registry& r, Publish p)
      : settings(std::move(s)), store(st), client(cl), publish(std::move(p)), metrics(r) {}

  WorkerSettings settings;
  storage::Store& store;
  klarna::ApiClient& client;
  Publish publish;
  Metrics metrics;
  core::Logger log{"outbox"};
  std::mt19937_64 rng{std::random_device{}()};

  std::mutex mu;
  std::condition_variable cv;
  std::deque<Done> answers;     // guarded by mu
  bool woken = false;           // guarded by mu
  bool stopping = false;        // guarded by mu
  bool client_stopped = false;  // guarded by mu; no answer comes any more
  std::size_t in_flight = 0;    // guarded by mu
  std::atomic<bool> healthy{true};
  std::string last_store_error;  // worker thread only
  // What the answers of a batch being recorded count and log: done once its
  // transaction commits, never for one rolled back (and recorded again).
  std::vector<std::function<void()>> after_commit;  // worker thread only
  std::atomic<std::uint64_t> recorded{0};
  std::thread thread;

  void run();
  void store_failed(const char* what, const std::exception& e);
  void store_ok();
  void claim_and_send();
  void send(storage::OutboxRow row);
  bool record(std::deque<Done>& batch);
  void record_one(AnswerContext& c, const Done& d);
  void drop_answer(const AnswerContext& c, const Done& d);
  void report(const Done& d, const storage::OutboxUpdate& update, std::int64_t now);
  storage::OutboxUpdate decide(AnswerContext& c, const Done& d);
  void wait_for_work();
  // Stopping, and no call will answer any more: none in flight, or the
  // client abandoned them (their rows stay in_flight, resent on the next
  // start). Called with mu held.
  bool stop_done() const { return stopping && (in_flight == 0 || client_stopped); }
};

void OutboxWorker::Impl::run() {
  try {
    const auto released = store.release_in_flight_outbox(now_ms());
    if (released > 0) {
      log.warn("calls interrupted by the last stop are sent again with their keys",
               {{"count", released}});
    }
  } catch (const std::exception& e) {
    store_failed("cannot release interrupted calls", e);
  }
  std::deque<Done> batch;
  for (;;) {
    {
      std::lock_guard lock(mu);
      if (stop_done() && answers.empty() && batch.empty()) return;
      while (!answers.empty() && batch.size() < settings.record_batch) {
        batch.push_back(std::move(answers.front()));
        answers.pop_front();
      }
    }
    bool stop_now = false;
    {
      std::lock_guard lock(mu);
      stop_now = stopping;
    }
    if (!batch.empty() && !record(batch)) {
      // Storage failing. When stopping, the rows stay in_flight and are sent
      // again, with their keys, on the next start.
      if (stop_now) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    if (!stop_now) claim_and_send();
    wait_for_work();
  }
}

void OutboxWorker::Impl::wait_for_work() {
  std::unique_lock lock(mu);
  if (!answers.empty() || woken) {
    woken = false;
    return;
  }
  // A failing store waits the whole poll interval: due rows would otherwise
  // make the next pass start at once and fail again, a busy loop.
  auto wait = settings.poll_interval;
  if (in_flight < settings.concurrency && !stopping && healthy) {
    try {
      if (auto next = store.next_outbox_attempt()) {
        wait = std::clamp(std::chrono::milliseconds(*next - now_ms()), std::chrono::milliseconds(0),
                          settings.poll_interval);
      }
    } catch (const std::exception&) {
      // The store is busy: the poll interval is the fallback.
    }
  }
  cv.wait_for(lock, wait, [&] { return !answers.empty() || woken || stop_done(); });
  woken = false;
}

// A store that keeps failing (a full disk) fails every pass, several times a
// second: its error is logged when it starts or changes, and the recovery
// once; the metrics count every failure.
void OutboxWorker::Impl::store_failed(const char* what, const std::exception& e) {
  const bool was_healthy = healthy.exchange(false);
  std::string error = e.what();
  if (!was_healthy && error == last_store_error) return;
  log.error(what, {{"error", error}, {"repeats", "logged again only when the error changes"}});
  last_store_error = std::move(error);
}

void OutboxWorker::Impl::store_ok() {
  if (healthy.exchange(true)) return;
  last_store_error.clear();
  log.info("state store writable again; calls resume");
}

void OutboxWorker::Impl::claim_and_send() {
  std::size_t room = 0;
  {
    std::lock_guard lock(mu);
    room = settings.concurrency - std::min(settings.concurrency, in_flight);
  }
  if (room == 0) return;
  std::vector<storage::OutboxRow> rows;
  try {
    storage::WriteTransaction tx(store);
    rows = store.claim_due_outbox(storage::OutboxClaim{
        .now_ms = now_ms(), .limit = room, .lease_ms = settings.claim_lease.count()});
    tx.commit();
    store_ok();
  } catch (const std::exception& e) {
    metrics.store_errors.inc();
    store_failed("cannot claim due calls", e);
    return;
  }
  for (auto& row : rows) send(std::move(row));
}

void OutboxWorker::Impl::send(storage::OutboxRow row) {
  {
    std::lock_guard lock(mu);
    ++in_flight;
    metrics.in_flight.set(static_cast<double>(in_flight));
  }
  auto call = make_call(row, settings.follow_ups);
  std::string traceparent = call.traceparent;
  client.send(std::move(call), [this, row = std::move(row), traceparent = std::move(traceparent),
                                started = now_ms()](klarna::Answer answer) mutable {
    std::lock_guard lock(mu);
    --in_flight;
    metrics.in_flight.set(static_cast<double>(in_flight));
    answers.push_back({std::move(row), std::move(answer), std::move(traceparent), started});
    cv.notify_all();  // the worker thread, and stop() waiting for in_flight == 0
  });
}

bool OutboxWorker::Impl::record(std::deque<Done>& batch) {
  std::vector<storage::PublishRow> publications;
  after_commit.clear();
  try {
    storage::WriteTransaction tx(store);
    AnswerContext c{store, settings.follow_ups, settings.topics, now_ms(), publications};
    for (const auto& d : batch) record_one(c, d);
    tx.commit();
    store_ok();
  } catch (const storage::StoreError& e) {
    if (e.fault() == storage::StoreFault::conflict) {
      // Another processor changed the same rows at the same time (N
      // processors on PostgreSQL): not a store fault; recorded again.
      metrics.record_conflicts.inc();
      log.warn("recording answers rolled back: another processor changed the same rows; retried",
               {{"error", e.what()}, {"answers", batch.size()}});
      return false;
    }
    metrics.record_errors.inc();
    store_failed("recording answers failed; retrying", e);
    return false;
  } catch (const std::exception& e) {
    metrics.record_errors.inc();
    store_failed("recording answers failed; retrying", e);
    return false;
  }
  for (const auto& report : after_commit) report();
  after_commit.clear();
  recorded += batch.size();
  batch.clear();
  if (!publications.empty() && publish) publish(std::move(publications));
  return true;
}

// One attempt as the trace shows it (call_attempts, v11).
static storage::CallAttemptRow attempt_row(const storage::OutboxRow& row, const klarna::Answer& a,
                                           const std::string& outcome,
                                           const std::string& traceparent,
                                           std::int64_t started_at_ms, std::int64_t now) {
  storage::CallAttemptRow r;
  r.outbox_id = row.id;
  r.attempt = row.attempts;
  r.started_at_ms = started_at_ms;
  r.latency_us = static_cast<std::int64_t>(a.elapsed.count());
  r.outcome = outcome;
  if (a.status != 0) r.http_status = a.status;
  if (!a.transport_error.empty()) r.transport_error = a.transport_error;
  if (a.error && !a.error->error_id.empty()) r.klarna_error_id = a.error->error_id;
  if (a.error && !a.error->error_code.empty()) r.klarna_error_code = a.error->error_code;
  if (!a.klarna_correlation_id.empty()) r.klarna_correlation_id = a.klarna_correlation_id;
  r.summary = a.summary();
  r.traceparent = traceparent;
  r.recorded_at_ms = now;
  return r;
}

// The outcome of an answer as Klarna gave it, without acting on it.
static std::string answer_outcome(const klarna::Answer& a) {
  switch (a.disposition) {
    case klarna::Disposition::success:
      return "succeeded";
    case klarna::Disposition::conflict:
      return "conflict";
    case klarna::Disposition::permanent:
      return "failed";
    case klarna::Disposition::retryable:
      break;
  }
  return "retry";
}

// The claim on the call was lost (this processor stalled past its lease and
// another took the row over: it sends the call again with the same key and
// records its own answer). The attempt stays in the trace; nothing the
// answer would cause is written, or it would happen twice.
void OutboxWorker::Impl::drop_answer(const AnswerContext& c, const Done& d) {
  auto attempt = attempt_row(d.row, d.answer, answer_outcome(d.answer), d.traceparent,
                             d.started_at_ms, c.now_ms);
  attempt.summary =
      attempt.summary.value_or("") + " (answer dropped: another processor took over the call)";
  store.insert_call_attempt(attempt);
  after_commit.push_back([this, id = d.row.id,
                          op = std::string(storage::to_string(d.row.operation)),
                          trace_id = std::string(core::trace_id_of(d.traceparent))] {
    metrics.dropped.inc();
    log.warn("answer dropped: another processor took over the call",
             {{"outbox_id", id}, {"operation", op}, {"trace_id", trace_id}});
  });
}

void OutboxWorker::Impl::record_one(AnswerContext& c, const Done& d) {
  c.found = {};
  // First, in this transaction: is the call still this processor's? The row
  // lock keeps a claimer out until the answer and its effects are committed.
  if (!store.hold_outbox_claim(d.row.id)) {
    drop_answer(c, d);
    return;
  }
  // What the answer causes (state changes, command results, follow-up
  // calls) carries the trace of what caused the call.
  store.set_trace_context({d.row.traceparent, {}, {}});
  const auto first_publication = c.publications.size();
  const auto update = decide(c, d);
  if (!store.update_outbox(update)) {
    // Held above, in this transaction: should not happen. Roll the batch
    // back (its effects with it) and record it again.
    throw storage::StoreError(
        "outbox row " + std::to_string(d.row.id) + " changed while its claim was held", true);
  }
  finish_command(c, d.row, update);  // a command's final result, in this transaction
  using storage::OutboxStatus;
  const std::string attempt_outcome = d.answer.disposition == klarna::Disposition::conflict
                                          ? "conflict"
                                          : (update.status == OutboxStatus::pending
                                                 ? "retry"
                                                 : std::string(storage::to_string(update.status)));
  store.insert_call_attempt(
      attempt_row(d.row, d.answer, attempt_outcome, d.traceparent, d.started_at_ms, c.now_ms));
  store.set_trace_context({});
  for (auto i = first_publication; i < c.publications.size(); ++i) {
    if (c.publications[i].traceparent.empty()) c.publications[i].traceparent = d.row.traceparent;
  }
  // `d` stays in the batch until after the reports run.
  after_commit.push_back([this, &d, update, now = c.now_ms] { report(d, update, now); });
}

// An answer recorded (committed): its metrics and its log line.
void OutboxWorker::Impl::report(const Done& d, const storage::OutboxUpdate& update,
                                std::int64_t now) {
  using storage::OutboxStatus;
  const std::string op(storage::to_string(d.row.operation));
  const std::string_view trace_id = core::trace_id_of(d.traceparent);
  metrics.latency.with({op}).observe(std::chrono::duration<double>(d.answer.elapsed).count());
  const std::string outcome(
      update.status == OutboxStatus::pending ? "retry" : storage::to_string(update.status));
  metrics.calls.with({op, outcome}).inc();
  if (d.answer.status == 429) metrics.throttled.with({op}).inc();
  const std::string summary = update.last_error.value_or("");
  if (update.status == OutboxStatus::failed) {
    log.error("Klarna call failed", {{"operation", op},
                                     {"outbox_id", d.row.id},
                                     {"entity_id", d.row.entity_id},
                                     {"attempts", d.row.attempts},
                                     {"error", summary},
                                     {"trace_id", trace_id}});
  } else if (update.status == OutboxStatus::pending) {
    log.warn("Klarna call will be retried",
             {{"operation", op},
              {"outbox_id", d.row.id},
              {"attempts", d.row.attempts},
              {"next_attempt_in_ms", update.next_attempt_at_ms - now},
              {"error", summary},
              {"trace_id", trace_id}});
  } else {
    log.info("Klarna call succeeded", {{"operation", op},
                                       {"outbox_id", d.row.id},
                                       {"entity_id", d.row.entity_id},
                                       {"result", update.result.value_or("")},
                                       {"trace_id", trace_id}});
  }
}

storage::OutboxUpdate OutboxWorker::Impl::decide(AnswerContext& c, const Done& d) {
  const auto& a = d.answer;
  storage::OutboxUpdate u;
  u.id = d.row.id;
  u.now_ms = c.now_ms;
  if (a.status != 0) u.last_status = a.status;
  switch (a.disposition) {
    case klarna::Disposition::success:
      try {
        u.result = apply_success(c, d.row, a);
        u.status = storage::OutboxStatus::succeeded;
      } catch (const storage::StoreError&) {
        throw;  // the store failed, not the answer: the whole record is retried
      } catch (const std::runtime_error& e) {
        // Klarna executed it, but we cannot read what it did: an operator must look.
        u.status = storage::OutboxStatus::failed;
        u.last_error = std::string("unreadable answer: ") + e.what();
      }
      return u;
    case klarna::Disposition::conflict: {
      const auto read = queue_reread(c, d.row);
      u.status = storage::OutboxStatus::failed;
      u.result = "CONFLICT";
      u.last_error = a.summary() + (read.empty() ? "" : " (" + read + " queued)");
      return u;
    }
    case klarna::Disposition::permanent:
      u.status = storage::OutboxStatus::failed;
      u.last_error = a.summary();
      return u;
    case klarna::Disposition::retryable:
      break;
  }
  u.last_error = a.summary();
  if (d.row.attempts >= settings.max_attempts) {
    u.status = storage::OutboxStatus::failed;
    u.last_error = "gave up after " + std::to_string(d.row.attempts) + " attempts: " + a.summary();
    return u;
  }
  const auto delay =
      retry_delay(settings, d.row.attempts, a.retry_after.value_or(std::chrono::milliseconds(0)),
                  std::uniform_real_distribution<double>(0, 1)(rng));
  u.status = storage::OutboxStatus::pending;
  u.next_attempt_at_ms = c.now_ms + delay.count();
  return u;
}

OutboxWorker::OutboxWorker(WorkerSettings settings, storage::Store& store,
                           klarna::ApiClient& client, core::Registry& registry, Publish publish)
    : impl_(std::make_unique<Impl>(std::move(settings), store, client, registry,
                                   std::move(publish))) {}

OutboxWorker::~OutboxWorker() {
  stop(std::chrono::milliseconds(0));
}

void OutboxWorker::start() {
  if (!impl_->thread.joinable()) impl_->thread = std::thread([this] { impl_->run(); });
}

void OutboxWorker::wake() {
  std::lock_guard lock(impl_->mu);
  impl_->woken = true;
  impl_->cv.notify_one();
}

void OutboxWorker::stop(std::chrono::milliseconds budget) {
  if (!impl_->thread.joinable()) return;
  {
    std::unique_lock lock(impl_->mu);
    impl_->stopping = true;
    impl_->cv.notify_all();
    // Answers still coming are recorded if they arrive within the budget.
    impl_->cv.wait_for(lock, budget, [&] { return impl_->in_flight == 0; });
  }
  // What is still in flight is abandoned: cancel it so the thread can finish.
  // The cancelled calls' answers are recorded (retry, same key); a call the
  // client could not cancel never answers, so the thread must not wait for it.
  if (!impl_->client.shutdown()) {
    impl_->log.warn(
        "Klarna calls that could not be cancelled are left in flight; "
        "they are sent again, with their keys, on the next start");
  }
  {
    std::lock_guard lock(impl_->mu);
    impl_->client_stopped = true;
    impl_->cv.notify_all();
  }
  impl_->thread.join();
}

bool OutboxWorker::healthy() const {
  return impl_->healthy.load();
}

std::uint64_t OutboxWorker::calls_recorded() const {
  return impl_->recorded.load();
}

}  // namespace kpay::processor
