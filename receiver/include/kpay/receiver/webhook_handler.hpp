// The receiver's decision for one webhook request, independent of sockets:
//   1 route (path, method) and size checks
//   2 key ring lookup by Klarna-Signing-Key-Id
//   3 HMAC-SHA256 over the raw body, constant-time compare
//   4 envelope parse (only after the signature holds) and routing to a topic
// The result is either an immediate answer (a rejection) or a message to
// publish plus the answers for "Kafka confirmed" and "Kafka did not".
#pragma once

#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kpay/core/metrics.hpp"
#include "kpay/klarna/envelope.hpp"
#include "kpay/klarna/signature.hpp"

namespace kpay::receiver {

struct IncomingRequest {
  std::string_view method;  // "POST"
  std::string_view path;    // target without the query string
  std::string_view signing_key_id;
  std::string_view signature;
  std::string_view content_type;
  std::string_view body;  // raw bytes as received
  // W3C trace context Klarna's request carried, if any (not validated here).
  std::string_view traceparent;
  bool has_signing_key_id = false;
  bool has_signature = false;
};

struct Answer {
  int status = 200;
  std::string body;                // JSON
  std::string reason;              // metric label: "accepted", "bad_signature", …
  bool allow_post_header = false;  // 405 carries "Allow: POST"
};

struct PublishPlan {
  const std::string* topic = nullptr;
  std::string key;
  std::string event_id, event_type, event_version;
  std::string received_at;
  bool dead_letter = false;
  std::string dead_letter_reason;
  Answer on_success;
};

struct Decision {
  std::optional<Answer> reject;  // set: answer at once, publish nothing
  PublishPlan publish;           // used when reject is empty
};

// The bytes of the HTTP/1.x response carrying `a` (a JSON body), in one
// buffer. Beast's serializer walks a concatenation of buffer sequences on
// every write (~6% of the receiver's CPU in a profile under load); the
// receiver's answers are a few fixed headers, so they are preformatted.
// `keep_alive` false adds "Connection: close" (HTTP/1.1); true on HTTP/1.0
// adds "Connection: keep-alive". `retry_after` adds Retry-After (503s).
std::string serialize_response(const Answer& a, unsigned http_version, bool keep_alive,
                               std::optional<std::chrono::seconds> retry_after = {});

class WebhookHandler {
 public:
  WebhookHandler(std::string path, const klarna::Topics& topics, core::Registry& metrics);

  // `keys` is the snapshot to verify against (never null).
  Decision decide(const IncomingRequest& req, const klarna::KeyRing& keys) const;

  // Counts a rejection that happened before decide() could run (HTTP-level:
  // malformed request, body too large while reading, timeouts).
  void count_rejection(std::string_view reason) const;
  Answer error_answer(int status, std::string_view reason, std::string_view message) const;

 private:
  std::string path_;
  const klarna::Topics& topics_;
  core::CounterFamily& rejections_;
  core::CounterFamily& routed_;
  // Per family (indexed by EventFamily), then dead letters: resolved once.
  std::array<core::Counter*, 7> routed_by_family_{};
};

}  // namespace kpay::receiver
