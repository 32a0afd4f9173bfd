#include "receiver_metrics.hpp"

#include "kpay/klarna/kafka_contract.hpp"

namespace kpay::receiver {

ReceiverMetrics::ReceiverMetrics(core::Registry& registry)
    : requests(registry.counter(klarna::contract::metric::receiver_requests,
                                "Webhook requests by outcome (accepted, dead_lettered, "
                                "rejected, unavailable).",
                                {"outcome"})),
      accepted(requests.with({"accepted"})),
      dead_lettered(requests.with({"dead_lettered"})),
      rejected(requests.with({"rejected"})),
      unavailable(requests.with({"unavailable"})),
      publish_latency(registry
                          .histogram("kpay_receiver_publish_latency_seconds",
                                     "Time from publish to Kafka's delivery report.", {},
                                     core::latency_buckets_seconds())
                          .with({})),
      in_flight(
          registry.gauge("kpay_receiver_in_flight_requests", "Requests read and not yet answered.")
              .with({})),
      open_connections(
          registry.gauge("kpay_receiver_connections", "Open client connections.").with({})),
      refused_connections(registry
                              .counter("kpay_receiver_connections_refused_total",
                                       "Connections closed at once: max_connections reached.")
                              .with({})),
      tls_failures(registry
                       .counter("kpay_receiver_tls_handshake_failures_total",
                                "TLS handshakes that failed or timed out.")
                       .with({})) {}

}  // namespace kpay::receiver
