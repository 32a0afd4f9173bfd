// The Kafka contract spelled once: default topic names, the headers the
// receiver writes and the processor and klarnactl read, and the metric names
// that klarnactl (and the alert rules in config/alerts/) read from the daemons.
// schemas/KAFKA-CONTRACT.md describes each; docs/OPERATIONS.md the metrics.
//
// Header-only constants in kpay_klarna, which the receiver, the processor and
// klarnactl all link: reaching it needs neither daemon's library.
#pragma once

namespace kpay::klarna::contract {

// Default topic names; kafka.topic_prefix is prepended, [topics] renames.
namespace topic {
inline constexpr char payment_requests[] = "klarna.payment-requests";
inline constexpr char payment_transactions[] = "klarna.payment-transactions";
inline constexpr char disputes[] = "klarna.disputes";
inline constexpr char settlements[] = "klarna.settlements";
inline constexpr char accounts[] = "klarna.accounts";
inline constexpr char unrouted[] = "klarna.unrouted";
inline constexpr char dead_letter[] = "klarna.dead-letter";
inline constexpr char payment_states[] = "klarna.payment-states";
inline constexpr char processor_dead_letter[] = "klarna.processor-dead-letter";
inline constexpr char commands[] = "klarna.commands";
inline constexpr char command_results[] = "klarna.command-results";
// Settlement reconciliation findings (schemas/reconciliation-finding.schema.json).
inline constexpr char reconciliation[] = "klarna.reconciliation";
}  // namespace topic

// Message headers (UTF-8 values).
namespace header {
// On every message the receiver writes.
inline constexpr char signing_key_id[] = "klarna-signing-key-id";
inline constexpr char signature[] = "klarna-signature";
inline constexpr char received_at[] = "received-at";
inline constexpr char content_type[] = "content-type";
// W3C trace context (kpay/core/traceparent.hpp): the receiver's span of the
// webhook on its messages; the processor's on what it publishes (state
// changes, command results, dead letters); a command's sender may set one.
inline constexpr char traceparent[] = "traceparent";
// On the routed topics.
inline constexpr char event_id[] = "klarna-event-id";
inline constexpr char event_type[] = "klarna-event-type";
inline constexpr char event_version[] = "klarna-event-version";
// On the receiver's dead-letter topic.
inline constexpr char dead_letter_reason[] = "dead-letter-reason";
// On the processor's dead-letter topic.
inline constexpr char processor_dead_letter_reason[] = "kpay-dead-letter-reason";
// On a dead letter klarnactl replayed: the topic/partition/offset it came from.
inline constexpr char replayed_from[] = "kpay-replayed-from";
}  // namespace header

// Metrics read by something other than the daemon that registers them.
namespace metric {
inline constexpr char receiver_requests[] = "kpay_receiver_requests_total";  // label outcome
inline constexpr char receiver_signing_keys[] = "kpay_receiver_signing_keys";
inline constexpr char processor_consumer_lag[] = "kpay_processor_consumer_lag";
inline constexpr char processor_call_deadlines[] = "kpay_processor_call_deadlines";  // status
inline constexpr char processor_poison_messages[] = "kpay_processor_poison_messages_total";
inline constexpr char processor_dispute_deadlines[] = "kpay_processor_dispute_deadlines";
// Settlement reconciliation (klarnactl top reads them).
inline constexpr char processor_settlement_findings[] = "kpay_processor_settlement_findings";
inline constexpr char processor_settlement_unsettled_amount[] =
    "kpay_processor_settlement_unsettled_amount";
inline constexpr char processor_payouts_failed[] = "kpay_processor_settlement_payouts_failed_total";
}  // namespace metric

}  // namespace kpay::klarna::contract
