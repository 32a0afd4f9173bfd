// The fence of a batch (docs/OPERATIONS.md, "Running on PostgreSQL"). A
// message below its partition's stored next offset was applied already, by
// the processor that owns the partition now (this one lost it: a lapsed
// session, a stall) or by an attempt of this one whose commit it did not see;
// it is skipped, nothing is written for it, and the batch result says so
// (BatchResult::fenced). Two reads:
//
// 1. Before any lock, the committed offsets (storage::OffsetStore::
//    committed_offsets, a plain read of its own; PostgreSQL only). A batch
//    lying wholly below them is finished without its write transaction: a
//    stale processor never waits on the owner's open transaction, and so
//    never keeps losing to the owner's next batches under load.
// 2. First in the write transaction, the stored offsets of the partitions
//    with messages left, locked (OffsetStore::fence_offsets): what the batch
//    then applies and skips.
#pragma once

#include <map>
#include <span>
#include <vector>

#include "kpay/processor/batch_applier.hpp"

namespace kpay::processor {

class BatchFence {
 public:
  // Reads the committed offsets of the batch's partitions without a lock
  // (outside any transaction; no statement on SQLite).
  BatchFence(storage::OffsetStore& store, std::span<const DecodedMessage> batch);
  // Every message of a non-empty batch lies below its partition's committed
  // offset: the batch needs no write transaction and no lock().
  bool nothing_left() const { return !empty_ && left_.empty(); }
  // `m` lies below its partition's committed offset (read before any lock).
  bool below_committed(const InputMessage& m) const;
  // First in the write transaction: the stored offsets of the partitions
  // with messages left, their rows locked (on PostgreSQL it takes the
  // snapshot); they replace the committed ones read before.
  void lock(storage::OffsetStore& store);
  // True when `m` lies below its partition's stored offset: recorded in
  // out.fenced, to be skipped.
  bool holds_back(const InputMessage& m, BatchResult& out) const;
  // Saves the next offset of each partition the batch moved past its stored
  // one, and raises out.next_offsets to the stored ones (a batch entirely
  // below them writes no offset and reports where the partition is).
  void save_offsets(storage::OffsetStore& store, BatchResult& out) const;

 private:
  bool empty_ = true;
  std::vector<storage::TopicPartition> left_;  // partitions with messages left
  std::map<storage::TopicPartition, std::int64_t> stored_;
};

// Adds `r` to `into`, widening the range of its partition when there is one.
void add_fenced(std::vector<FencedRange>& into, const FencedRange& r);

}  // namespace kpay::processor
