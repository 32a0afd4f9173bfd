// Scenarios: drive N customer journeys at a chosen rate through the sim's own
// API (the same handle() path as external calls, with the same credentials,
// so they show up in the introspection and trigger the same webhooks). By
// default a scenario plays the customer and the partner's start of a payment
// only; the merchant backend's follow-ups (final authorization / confirm,
// capture) are left to the system under test. With `merchant_actions` the
// scenario makes them too (self-driving).
//
// Journey kinds ((merchant) = only with merchant_actions):
//   approve  create → customer approves → (merchant) authorize or confirm → capture
//   decline  create → customer starts → declined
//   expire   create → customer starts → request expires
//   cancel   create → partner cancels (DELETE)
//   step-up  initial authorization without customer token → STEP_UP_REQUIRED →
//            customer approves the created request → (merchant) final authorization → capture
// A journey counts as ok once its last step above succeeded. Each journey uses
// the Gen 1 (v1: confirm) or Gen 2 (v2: final authorization) flow, taken in turn
// from `versions`. After the journeys, `disputes` captured transactions (captured
// by anyone, not yet disputed) are disputed (alternately won after
// representment, lost) and `settlements` settlement reports are produced.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kpay/sim/api.hpp"

namespace kpay::sim {

struct ScenarioOptions {
  int journeys = 0;
  double rate_per_second = 10;
  // (kind, weight); kinds are chosen deterministically in proportion to weight.
  std::vector<std::pair<std::string, int>> mix{{"approve", 1}};
  std::vector<std::string> versions{"v2"};
  int disputes = 0;
  int settlements = 0;
  bool merchant_actions = false;  // also make the merchant's follow-ups (self-driving)
  // Without merchant_actions, how long to wait after the journeys for someone
  // else to capture enough transactions to dispute.
  std::int64_t dispute_wait_ms = 5'000;
  bool repeat = false;  // run rounds (journeys, disputes, settlements) until stopped
  std::string account_id = "krn:partner:global:account:test:SIMACCOUNT";
};

// Parses "approve:40" style entries (weight defaults to 1). Throws
// std::invalid_argument for unknown kinds.
std::vector<std::pair<std::string, int>> parse_mix(const std::vector<std::string>& entries);
// Parses the JSON body of POST /_sim/scenarios into `out` (fields as in ScenarioOptions).
bool parse_scenario_json(const std::string& body, ScenarioOptions& out, std::string& error);

class ScenarioRunner {
 public:
  explicit ScenarioRunner(SimApi& api) : api_(api) {}
  ~ScenarioRunner();  // asks a running scenario to stop and joins it
  ScenarioRunner(const ScenarioRunner&) = delete;
  ScenarioRunner& operator=(const ScenarioRunner&) = delete;

  // False when a run is already in progress.
  bool start(ScenarioOptions options);
  bool running() const { return running_.load(); }
  bool finished_once() const { return finished_.load(); }
  std::string status_json() const;
  // Handles /_sim/scenarios (GET status, POST start, DELETE stop).
  ApiResponse control(const ApiRequest& req);

 private:
  struct Journey;  // one journey's account path, amount, reference and flow

  void run(ScenarioOptions options);
  void run_round(const ScenarioOptions& o, const std::vector<std::string>& wheel, int round);
  bool journey(const ScenarioOptions& o, const std::string& kind, const std::string& version,
               int index);
  std::string create_request(const Journey& j);
  std::string initial_authorization(const Journey& j);
  ApiResponse customer(const Journey& j, const std::string& request_id, const std::string& action);
  bool merchant_follow_up(const Journey& j, const ApiResponse& approved);
  std::string confirm(const Journey& j, const ApiResponse& approved);
  std::string final_authorization(const Journey& j, const ApiResponse& approved);
  bool capture_full(const Journey& j, const std::string& transaction_id);
  void run_disputes(const ScenarioOptions& o);
  std::vector<std::string> dispute_candidates(const ScenarioOptions& o);
  bool dispute(const std::string& transaction_id, bool win);
  ApiResponse call(const std::string& method, const std::string& path, const std::string& body,
                   std::map<std::string, std::string> headers = {});
  void count(const std::string& what);
  void fail(const std::string& error);

  SimApi& api_;
  std::atomic<bool> running_{false};
  std::atomic<bool> finished_{false};
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::map<std::string, std::uint64_t> counters_;
  std::string last_error_;
  std::uint64_t key_seq_ = 0;
  std::thread thread_;  // last member: joins before the state above is destroyed
};

}  // namespace kpay::sim
