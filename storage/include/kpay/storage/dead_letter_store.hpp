// Poison messages (the processor's dead letters) and their replays
// (storage/README.md, "Dead letters").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kpay/storage/rows.hpp"

namespace kpay::storage {

class DeadLetterStore {
 public:
  virtual ~DeadLetterStore() = default;
  // Once per (topic, partition, offset): a second insert changes nothing.
  virtual void insert_poison(const PoisonRow& p) = 0;
  // Newest first, without values.
  virtual std::vector<DeadLetterRow> list_poison(std::size_t limit) = 0;
  // With its value.
  virtual std::optional<DeadLetterRow> find_poison(const std::string& topic, std::int32_t partition,
                                                   std::int64_t offset) = 0;
  virtual std::optional<ReplayRow> find_replay(const std::string& topic, std::int32_t partition,
                                               std::int64_t offset) = 0;
  virtual std::vector<ReplayRow> replays() = 0;
  // Records one more replay (in the caller's transaction, if any).
  virtual void record_replay(const ReplayRow& r) = 0;
  // Takes back a replay recorded just before its message could not be
  // produced: the row as it was before (`before`), or none.
  virtual void restore_replay(const std::optional<ReplayRow>& before, const std::string& topic,
                              std::int32_t partition, std::int64_t offset) = 0;
  // Releases the inbox claim of a poison message's event_id (only when that
  // claim is the poison message's own). True when released.
  virtual bool release_poison_claim(const DeadLetterRow& p) = 0;
};

}  // namespace kpay::storage
