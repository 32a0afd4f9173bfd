// The listener's metrics, registered once; the hot path only touches the
// resolved series (atomics). Documented in docs/OPERATIONS.md.
// Internal to the receiver; not installed.
#pragma once

#include "kpay/core/metrics.hpp"

namespace kpay::receiver {

struct ReceiverMetrics {
  explicit ReceiverMetrics(core::Registry& registry);

  core::CounterFamily& requests;
  core::Counter& accepted;
  core::Counter& dead_lettered;
  core::Counter& rejected;
  core::Counter& unavailable;
  core::Histogram& publish_latency;
  core::Gauge& in_flight;
  core::Gauge& open_connections;
  core::Counter& refused_connections;
  core::Counter& tls_failures;
};

}  // namespace kpay::receiver
