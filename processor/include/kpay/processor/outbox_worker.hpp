// The outbox worker: executes the follow-up calls the batches wrote into the
// outbox (confirm, final authorization, capture, reads) through the Klarna API
// client, and records each answer together with the state it causes.
//
// Guarantees:
//   - A row is claimed (in_flight, attempts+1) in a committed transaction
//     before its call is sent, with the idempotency key fixed when the row was
//     written; every retry, and a resend after a crash (rows found in_flight
//     at start-up become pending again), carries the same key, so Klarna
//     executes the operation once.
//   - An answer and the state it causes (transaction created and linked,
//     request authorized or declined, capture booked, further follow-ups) are
//     written in ONE transaction with the row's new status; the state-change
//     messages go through the store's publish queue in that transaction too.
//   - Retryable answers (429, 5xx, timeouts, resets) are retried with
//     exponential backoff and jitter, never sooner than Klarna's reset hint,
//     up to `max_attempts`; then the row is `failed`. Permanent answers
//     (400/401/403/404/413) fail at once. 409 reads the resource again.
//     Failed rows are counted, logged and retryable by an operator.
//   - At most `concurrency` calls are in flight; the worker never blocks the
//     consumer: it has its own thread and its own SQLite connection.
//   - stop() is bounded: calls still in flight are abandoned (their rows stay
//     in_flight and are resent with the same key on the next start).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kpay/core/metrics.hpp"
#include "kpay/klarna/api_client.hpp"
#include "kpay/klarna/envelope.hpp"
#include "kpay/processor/follow_ups.hpp"
#include "kpay/storage/store.hpp"

namespace kpay::processor {

struct WorkerSettings {
  bool enabled = true;
  std::size_t concurrency = 64;    // calls in flight at once
  std::int64_t max_attempts = 10;  // then `failed`
  std::chrono::milliseconds initial_backoff{1000};
  std::chrono::milliseconds max_backoff{5 * 60 * 1000};
  // How often the outbox is looked at when nobody said new rows were written.
  std::chrono::milliseconds poll_interval{500};
  std::size_t record_batch = 256;                // answers recorded per transaction at most
  std::chrono::milliseconds stop_timeout{5000};  // calls in flight at SIGTERM
  // Several processors on one store (PostgreSQL): a call claimed this long ago
  // and not answered is claimed again by another (its claimer presumed dead)
  // and sent with the same idempotency key. 0: one processor (SQLite), whose
  // start-up releases what it left in flight.
  std::chrono::milliseconds claim_lease{0};
  FollowUpSettings follow_ups;
  klarna::Topics topics;
};

// Reads `worker.*` (and the follow-up settings) from the configuration.
WorkerSettings worker_settings_from_config(const core::Config& c);
// Reads `klarna.*`: environment, base_url, ca_file, client_certificate,
// client_private_key, credentials_file, max_connections, request_timeout_ms,
// connect_timeout_ms, max_requests_per_second, io_threads.
klarna::ClientSettings client_settings_from_config(const core::Config& c);

class OutboxWorker {
 public:
  // `store`: a connection of the worker's own (read-write) to the processor's
  // database. `publish`: hands committed publish-queue rows to the producer
  // (Processor::publish_later); called on the worker's thread.
  using Publish = std::function<void(std::vector<storage::PublishRow>)>;
  OutboxWorker(WorkerSettings settings, storage::Store& store, klarna::ApiClient& client,
               core::Registry& registry, Publish publish);
  ~OutboxWorker();  // stop(0) if still running
  OutboxWorker(const OutboxWorker&) = delete;
  OutboxWorker& operator=(const OutboxWorker&) = delete;

  void start();
  // New rows may be due (the consumer committed a batch): look now.
  void wake();
  // Stops claiming; waits up to `budget` for calls in flight to be answered
  // and recorded; then leaves the rest in_flight (resent on the next start).
  void stop(std::chrono::milliseconds budget);

  // Readiness and `klarnactl status`: false while the store keeps failing.
  bool healthy() const;
  std::uint64_t calls_recorded() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The delay before attempt `attempts + 1` (attempts already made ≥ 1):
// initial × 2^(attempts−1), capped, with full jitter in [50 %, 100 %], and never
// less than `hint` (X-Ratelimit-Reset). `unit_random` in [0, 1).
std::chrono::milliseconds retry_delay(const WorkerSettings& s, std::int64_t attempts,
                                      std::chrono::milliseconds hint, double unit_random);

}  // namespace kpay::processor
