// Fault injection per route, in chosen proportions. A rule is written
//   ROUTE:KIND:PERCENT[:PARAM]
// ROUTE   an operation name (see SimApi::route_name, e.g. payment.transactions.capture),
//         a prefix ending in '*' (payment.transactions.*), or '*' for every route
// KIND    latency    add PARAM ms (default 200) before answering
//         429        answer 429 RATE_LIMITED with X-Ratelimit-* headers (PARAM = reset s, default
//         1) 5xx        answer PARAM (500, 502, 503 or 504; default 503), TECHNICAL_ERROR body
//         timeout    hold the request PARAM ms (default 59000), then 500 error_code TIMEOUT
//         drop       close the connection without answering
//         drop-after execute the operation, then close without answering (tests that
//                    a client retries with the same idempotency key)
//         close      answer normally (kept alive, no "Connection: close"), then close the
//                    connection at once: a server ending a kept-alive connection (its idle
//                    timeout or request limit) while the client holds it as reusable
// PERCENT 0..100: each matching request draws once per rule.
//
// A real rate limit instead of a random one:
//   ROUTE:limit:N[:WINDOW_S]   at most N requests per WINDOW_S seconds (default 1,
//                              fixed windows, real time) for the routes matching
//                              ROUTE together; beyond, 429 RATE_LIMITED. Every
//                              answer on those routes carries X-Ratelimit-Limit,
//                              X-Ratelimit-Remaining and X-Ratelimit-Reset (seconds).
// Faults other than drop-after and close are decided before the operation runs:
// it does not execute, and nothing is stored under its idempotency key.
// Thread-safe.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace kpay::sim {

enum class FaultKind {
  none,
  latency,
  rate_limit,
  server_error,
  timeout,
  drop,
  drop_after,
  close,
  limit
};

struct FaultRule {
  std::string route;  // exact, prefix*, or *
  FaultKind kind = FaultKind::none;
  int percent = 0;  // for `limit`: N requests per window
  std::int64_t param = 0;
  std::string text;  // as written
};

// The X-Ratelimit-* values for one answer.
struct RateLimitHeaders {
  std::int64_t limit = 0, remaining = 0, reset_s = 0;
};

struct FaultDecision {
  std::int64_t added_latency_ms = 0;
  FaultKind kind = FaultKind::none;  // the failure to apply (never latency or limit)
  std::int64_t param = 0;
  std::optional<RateLimitHeaders> rate;  // set when a `limit` rule matched
};

// Throws std::invalid_argument naming the problem.
FaultRule parse_fault_rule(std::string_view text);
// Parses {"rules":["…", …]}; throws std::invalid_argument.
std::vector<FaultRule> parse_fault_rules_json(const std::string& body);

class FaultPlan {
 public:
  explicit FaultPlan(std::uint64_t seed = 0);
  void set_rules(std::vector<FaultRule> rules);
  std::vector<FaultRule> rules() const;
  FaultDecision decide(std::string_view route);
  static bool route_matches(std::string_view pattern, std::string_view route);

 private:
  struct Window {
    std::int64_t start_ms = 0;
    std::int64_t used = 0;
  };
  mutable std::mutex mu_;
  std::vector<FaultRule> rules_;
  std::vector<Window> windows_;  // one per rule (used by `limit` rules)
  std::mt19937_64 rng_;
};

}  // namespace kpay::sim
