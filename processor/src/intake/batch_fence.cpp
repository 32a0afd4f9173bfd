// The fence of a batch (batch_fence.hpp).
#include "intake/batch_fence.hpp"

#include <algorithm>
#include <vector>

namespace kpay::processor {

namespace {

void sort_unique(std::vector<storage::TopicPartition>& v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
}

std::vector<storage::TopicPartition> partitions_of(std::span<const DecodedMessage> batch) {
  std::vector<storage::TopicPartition> out;
  for (const auto& d : batch) out.emplace_back(d.message.topic, d.message.partition);
  sort_unique(out);
  return out;
}

}  // namespace

BatchFence::BatchFence(storage::OffsetStore& store, std::span<const DecodedMessage> batch)
    : empty_(batch.empty()) {
  if (empty_) return;
  stored_ = store.committed_offsets(partitions_of(batch));
  for (const auto& d : batch) {
    if (!below_committed(d.message)) left_.emplace_back(d.message.topic, d.message.partition);
  }
  sort_unique(left_);
}

bool BatchFence::below_committed(const InputMessage& m) const {
  const auto it = stored_.find({m.topic, m.partition});
  return it != stored_.end() && m.offset < it->second;
}

void BatchFence::lock(storage::OffsetStore& store) {
  if (left_.empty()) return;
  auto locked = store.fence_offsets(left_);
  // What the transaction reads is the truth for these partitions (an
  // operator may have lowered an offset since: reset_offset).
  for (const auto& tp : left_) {
    const auto it = locked.find(tp);
    if (it == locked.end()) {
      stored_.erase(tp);
    } else {
      stored_[tp] = it->second;
    }
  }
}

bool BatchFence::holds_back(const InputMessage& m, BatchResult& out) const {
  const auto it = stored_.find({m.topic, m.partition});
  if (it == stored_.end() || m.offset >= it->second) return false;
  add_fenced(out.fenced, {m.topic, m.partition, m.offset, m.offset, it->second, 1});
  return true;
}

void BatchFence::save_offsets(storage::OffsetStore& store, BatchResult& out) const {
  for (auto& [tp, next] : out.next_offsets) {
    const auto it = stored_.find(tp);
    if (it != stored_.end() && next <= it->second) {
      next = it->second;  // nothing applied here: the stored offset stands
      continue;
    }
    store.save_offset(tp.first, tp.second, next);
  }
}

void add_fenced(std::vector<FencedRange>& into, const FencedRange& r) {
  for (auto& f : into) {
    if (f.topic != r.topic || f.partition != r.partition) continue;
    f.first = std::min(f.first, r.first);
    f.last = std::max(f.last, r.last);
    f.stored = std::max(f.stored, r.stored);
    f.count += r.count;
    return;
  }
  into.push_back(r);
}

}  // namespace kpay::processor
