// One client connection, written as the protocol reads:
// [TLS handshake] → loop { wait for a request → read it (deadline, size
// limits, body budget) → decide → publish and await Kafka's report → answer }
// → close. The socket-free part of reading a request (parser limits, framing
// rules, header extraction) is in http_request.cpp, which the fuzz target
// runs on raw bytes.
//
// Cancellation (the connection runs as a child of the receiver's TaskGroup):
// `total` closes the connection while it waits for its next request and
// nowhere else, so a request already read gets its real answer; `terminal`
// ends it wherever it is. Internal to the receiver; not installed.
#pragma once

#include <atomic>
#include <boost/asio/ssl/context.hpp>
#include <cstddef>

#include "delivery.hpp"
#include "io_types.hpp"
#include "kpay/core/log.hpp"
#include "kpay/receiver/key_ring_source.hpp"
#include "kpay/receiver/publisher.hpp"
#include "kpay/receiver/settings.hpp"
#include "kpay/receiver/webhook_handler.hpp"
#include "receiver_metrics.hpp"

namespace kpay::receiver {

// What every connection shares; owned by the Receiver, outlives them all.
struct ConnectionServices {
  const ListenerSettings& listener;
  const KafkaSettings& kafka;
  KeyRingSource& keys;
  const WebhookHandler& handler;
  KafkaPublisher& publisher;
  ReceiverMetrics& metrics;
  asio::ssl::context* tls;  // null: plain HTTP
  const std::atomic<bool>& stopping;
  // Bytes of request bodies all connections hold now (listener.max_body_bytes_in_flight).
  std::atomic<std::size_t>& body_bytes_reserved;
  core::Logger& log;
};

// Serves `socket` until the client leaves, an error, or cancellation. Runs on
// the socket's context, whose delivery mailbox is `mailbox`.
Task<void> run_connection(Socket socket, const ConnectionServices& services,
                          DeliveryMailbox& mailbox);

}  // namespace kpay::receiver
