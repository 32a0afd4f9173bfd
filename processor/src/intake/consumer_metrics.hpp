// The consumer's own metrics (Processor::Metrics), shared by the consume
// loop's files: consumer.cpp, consumer_commit.cpp, consumer_publish.cpp.
#pragma once

#include "kpay/klarna/kafka_contract.hpp"
#include "kpay/processor/consumer.hpp"

namespace kpay::processor {

struct Processor::Metrics {
  explicit Metrics(core::Registry& r)
      : consumed(r.counter("kpay_processor_messages_consumed_total",
                           "Messages consumed from Kafka, per topic.", {"topic"})),
        events(r.counter("kpay_processor_events_total",
                         "Events by outcome: applied, duplicate, stale, rejected.", {"outcome"})),
        applied(events.with({"applied"})),
        duplicates(events.with({"duplicate"})),
        stale(events.with({"stale"})),
        rejected(events.with({"rejected"})),
        conflicts(r.counter("kpay_processor_event_conflicts_total",
                            "Messages with the event_id of an event applied before but another "
                            "body (SHA-256): dead-lettered as event_id_conflict, never applied.")
                      .with({})),
        poison(r.counter(klarna::contract::metric::processor_poison_messages,
                         "Unusable messages, recorded and copied to the dead-letter topic.",
                         {"reason"})),
        environment_mismatch(
            r.counter("kpay_processor_environment_mismatch_events_total",
                      "Events whose metadata.live contradicts klarna.environment: applied, but "
                      "never the cause of a Klarna call.")
                .with({})),
        account_mismatch(
            r.counter("kpay_processor_account_mismatch_events_total",
                      "Events whose metadata.subject_account_id disagrees with the account "
                      "stored for their entity or a dispute's transaction (stored one kept).")
                .with({})),
        payouts_failed(r.counter(klarna::contract::metric::processor_payouts_failed,
                                 "Payouts Klarna reported failed (settlement.payout.failed "
                                 "applied): money that did not arrive.")
                           .with({})),
        unrouted(r.counter("kpay_processor_unrouted_events_total",
                           "Events of types no state machine handles (recorded only).")
                     .with({})),
        batch_commit(r.histogram("kpay_processor_batch_commit_seconds",
                                 "Time to apply and durably commit one batch.", {},
                                 core::latency_buckets_seconds())
                         .with({})),
        batch_events(r.counter("kpay_processor_batches_total", "Batches committed.").with({})),
        storage_errors(r.counter("kpay_processor_storage_errors_total",
                                 "Batches rolled back on a storage error (then retried).")
                           .with({})),
        batch_conflicts(r.counter("kpay_processor_batch_conflicts_total",
                                  "Batches rolled back because another processor's transaction "
                                  "changed the same rows at the same time (then retried).")
                            .with({})),
        fenced(r.counter("kpay_processor_messages_fenced_total",
                         "Messages skipped because they lay below their partition's stored "
                         "offset: applied already by the processor that owns the partition "
                         "now (this one lost it) or by an earlier attempt of this batch.")
                   .with({})),
        published(r.counter("kpay_processor_published_total",
                            "Messages acknowledged by Kafka (state changes, dead letters).",
                            {"topic"})),
        publish_failures(r.counter("kpay_processor_publish_failures_total",
                                   "Publications that failed and will be retried.")
                             .with({})),
        in_flight(r.gauge("kpay_processor_publications_in_flight",
                          "Queued publications not yet acknowledged by Kafka.")
                      .with({})),
        commands_refused(r.counter("kpay_processor_commands_refused_total",
                                   "Commands refused for their signature, age (expired) or "
                                   "the sender's permissions (not_permitted), by reason.",
                                   {"reason"})) {}
  core::CounterFamily& consumed;
  core::CounterFamily& events;
  core::Counter& applied;
  core::Counter& duplicates;
  core::Counter& stale;
  core::Counter& rejected;
  core::Counter& conflicts;
  core::CounterFamily& poison;
  core::Counter& environment_mismatch;
  core::Counter& account_mismatch;
  core::Counter& payouts_failed;
  core::Counter& unrouted;
  core::Histogram& batch_commit;
  core::Counter& batch_events;
  core::Counter& storage_errors;
  core::Counter& batch_conflicts;
  core::Counter& fenced;
  core::CounterFamily& published;
  core::Counter& publish_failures;
  core::Gauge& in_flight;
  core::CounterFamily& commands_refused;
};

}  // namespace kpay::processor
