// The fence of a batch (docs/OPERATIONS.md, "Running on PostgreSQL"): before a
// batch is applied, the stored next offset of every partition it holds is
// read in its transaction (storage::OffsetStore::fence_offsets). A message
// below it was applied already, by the processor that owns the partition now
// (this one lost it: a lapsed session, a stall) or by an attempt of this one
// whose commit it did not see; it is skipped, nothing is written for it, and
// the batch result says so (BatchResult::fenced).
#pragma once

#include <map>
#include <span>

#include "kpay/processor/batch_applier.hpp"

namespace kpay::processor {

class BatchFence {
 public:
  // Reads the stored offsets of the batch's partitions (one statement).
  BatchFence(storage::OffsetStore& store, std::span<const DecodedMessage> batch);
  // True when `m` lies below its partition's stored offset: recorded in
  // out.fenced, to be skipped.
  bool holds_back(const InputMessage& m, BatchResult& out) const;
  // Saves the next offset of each partition the batch moved past its stored
  // one, and raises out.next_offsets to the stored ones (a batch entirely
  // below them writes no offset and reports where the partition is).
  void save_offsets(storage::OffsetStore& store, BatchResult& out) const;

 private:
  std::map<storage::TopicPartition, std::int64_t> stored_;
};

// Adds `r` to `into`, widening the range of its partition when there is one.
void add_fenced(std::vector<FencedRange>& into, const FencedRange& r);

}  // namespace kpay::processor
