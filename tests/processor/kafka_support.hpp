// Producing test events to the embedded Kafka exactly as the receiver does
// (key = entity id, value = raw body, the receiver's headers), and reading
// back where each message landed so a reference run can use the same
// coordinates.
#pragma once

#include <string>
#include <vector>

#include "kpay/processor/batch_applier.hpp"
#include "lifecycles.hpp"

namespace kpay::test {

// Produces in order (idempotent producer, acks=all) and waits for every
// delivery report; returns the messages with their partition and offset.
std::vector<processor::InputMessage> produce_events(const std::string& bootstrap,
                                                    const std::vector<TestEvent>& events);

// Sum of the high watermarks of a topic's partitions (messages in it).
long long topic_message_count(const std::string& bootstrap, const std::string& topic,
                              int partitions);

// Applies `messages` in order through a BatchApplier into a fresh database:
// the uninterrupted reference run.
void apply_reference(const std::string& db_path, const klarna::Topics& topics,
                     const std::vector<processor::InputMessage>& messages, std::size_t batch_size);

}  // namespace kpay::test
