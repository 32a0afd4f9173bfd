// The fence of a batch (batch_fence.hpp).
#include "intake/batch_fence.hpp"

#include <algorithm>
#include <vector>

namespace kpay::processor {

namespace {

std::vector<storage::TopicPartition> partitions_of(std::span<const DecodedMessage> batch) {
  std::vector<storage::TopicPartition> out;
  for (const auto& d : batch) out.emplace_back(d.message.topic, d.message.partition);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace

BatchFence::BatchFence(storage::OffsetStore& store, std::span<const DecodedMessage> batch) {
  if (!batch.empty()) stored_ = store.fence_offsets(partitions_of(batch));
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
