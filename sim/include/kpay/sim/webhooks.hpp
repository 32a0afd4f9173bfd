// Webhook delivery as Klarna does it (docs/klarna/WEBHOOKS.md §2): POST the signed body to
// the subscription's URL; success is 200/201/202/204; anything else, a
// connection error or a timeout is retried after 10 s, 2 min, 15 min, 3 h,
// 6 h, 12 h (simulated time), then the delivery is permanently failed.
//
// On top of that, for testing receivers, the dispatcher can
//   - duplicate a delivery (a second, independent delivery of the same bytes,
//     same event_id, same signature), as at-least-once delivery does;
//   - reorder: hold a delivery back for a while so later ones overtake it.
// Every delivery and every attempt is kept for introspection (/_sim/webhooks).
//
// The dispatcher never calls back into the API; the API only enqueues.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kpay/sim/clock.hpp"

namespace kpay::sim {

// One signed message for one subscription. `body` is final: it is sent
// byte for byte, and `signature` is the HMAC over exactly these bytes.
struct Delivery {
  std::string webhook_id;
  std::string url;
  std::string signing_key_id;
  std::string signature;
  std::string body;
  std::string event_id;
  std::string event_type;
  std::string event_version;
};

// Which deliveries introspection lists: those in `state` ("pending",
// "delivered", "failed"; empty = all), the newest `limit` of them (0 = all).
struct DeliveryFilter {
  std::string state;
  std::size_t limit = 0;
};

class DeliverySink {
 public:
  virtual ~DeliverySink() = default;
  virtual void enqueue(Delivery d) = 0;
  // JSON object describing the deliveries and their attempts, plus a summary of all.
  virtual std::string introspect_json(const DeliveryFilter& filter) const = 0;
  virtual void reset() = 0;
};

// The result of one HTTP POST. status 0 means no HTTP response (connect
// error, timeout, connection closed); `error` says which.
struct PostResult {
  int status = 0;
  std::string error;
};
using PostHeaders = std::vector<std::pair<std::string, std::string>>;
using Transport =
    std::function<PostResult(const std::string& url, const PostHeaders& headers,
                             const std::string& body, std::chrono::milliseconds timeout)>;

struct DispatcherOptions {
  int workers = 2;
  std::chrono::milliseconds timeout{10'000};  // real time, per attempt
  // Simulated milliseconds after attempt 1, 2, …; size = number of retries.
  std::vector<std::int64_t> retry_schedule_ms{10'000,       120'000,      900'000,
                                              3 * 3600'000, 6 * 3600'000, 12 * 3600'000};
  int duplicate_percent = 0;  // chance a delivery is also sent a second time
  int reorder_percent = 0;    // chance a delivery is held back before its first attempt
  std::chrono::milliseconds reorder_delay{300};  // real time a held delivery waits
  std::uint64_t seed = 0;                        // 0: random
  // Memory bound for long runs: beyond this many records, the oldest finished
  // (delivered or failed) ones are forgotten (counted in summary.pruned).
  std::size_t max_records = 200'000;
};

bool is_success_status(int status);

class WebhookDispatcher final : public DeliverySink {
 public:
  WebhookDispatcher(DispatcherOptions options, const SimClock& clock, Transport transport);
  ~WebhookDispatcher() override;  // stops workers; pending deliveries are abandoned
  WebhookDispatcher(const WebhookDispatcher&) = delete;
  WebhookDispatcher& operator=(const WebhookDispatcher&) = delete;

  void enqueue(Delivery d) override;
  std::string introspect_json(const DeliveryFilter& filter) const override;
  void reset() override;

  struct Counts {
    std::size_t pending = 0, delivered = 0, failed = 0, attempts = 0;
  };
  Counts counts() const;

 private:
  struct Attempt {
    std::int64_t at_ms = 0;
    std::uint64_t send_seq = 0;  // global order in which attempts started
    int status = 0;
    std::string error;
  };
  enum class State { pending, delivered, failed };
  struct Record {
    std::uint64_t id = 0;
    Delivery delivery;
    std::optional<std::uint64_t> duplicate_of;
    bool held_back = false;
    State state = State::pending;
    bool in_flight = false;
    std::int64_t created_at_ms = 0;
    std::int64_t next_at_ms = 0;
    std::vector<Attempt> attempts;
  };

  void add_locked(Delivery d, std::optional<std::uint64_t> duplicate_of);
  void worker_loop();

  DispatcherOptions options_;
  const SimClock& clock_;
  Transport transport_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::uint64_t next_id_ = 1;
  std::uint64_t next_send_seq_ = 1;
  std::uint64_t pruned_ = 0;
  std::mt19937_64 rng_;
  std::map<std::uint64_t, Record> records_;
  std::set<std::pair<std::int64_t, std::uint64_t>> due_;  // (next_at_ms, id)
  std::vector<std::thread> workers_;  // last: started after every member above exists
};

// Blocking HTTP/1.1 POST over plain TCP or TLS (OpenSSL), one connection per
// call. `verify_tls` = false accepts any certificate (self-signed test setups).
Transport make_http_transport(bool verify_tls);

}  // namespace kpay::sim
