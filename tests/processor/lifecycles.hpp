// Realistic Klarna event streams for the processor's tests and benchmark:
// whole lifecycles (Gen 1 and Gen 2/3 payment requests, transactions with
// partial/full captures, refunds, expiry, disputes in both frameworks with
// deadlines, settlements, partner accounts), as the receiver would put them on
// Kafka (key = entity id, value = the raw webhook body).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kpay/klarna/envelope.hpp"

namespace kpay::test {

struct TestEvent {
  std::string topic;
  std::string key;
  std::string body;
  std::string event_id;
  std::string event_type;
};

// `payments` lifecycles, each a different scenario (cycling through them),
// events in their true order per entity; entities interleaved by time.
std::vector<TestEvent> make_lifecycles(int payments, const klarna::Topics& topics,
                                       std::uint32_t seed = 1);

// The same events shuffled, with about `duplicate_ratio` of them delivered
// twice (same event_id and body) at random later positions.
std::vector<TestEvent> shuffle_with_duplicates(std::vector<TestEvent> events,
                                               double duplicate_ratio, std::uint32_t seed);

// A message that cannot be used: bad JSON, unknown version, missing capture id.
std::vector<TestEvent> make_poison(const klarna::Topics& topics);

}  // namespace kpay::test
