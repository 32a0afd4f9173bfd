// Ids of stored entities keyed by the moment they may next change on their own
// (a payment request or transaction expiring), so that the periodic tick visits
// only what is due instead of every stored entity. Entries are hints: the tick
// re-checks each due entity's own state and deadlines, so stale entries (the
// entity moved on, or was scheduled twice) are harmless and simply dropped.
// Not thread-safe: the API uses it under its own lock.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <utility>

namespace kpay::sim {

class DeadlineIndex {
 public:
  void add(std::int64_t at_ms, const std::string& id) { entries_.emplace(at_ms, id); }

  // Removes and returns the ids of every entry due at `now_ms`, in id order
  // (the order in which the tick used to walk the stored entities).
  std::set<std::string> take_due(std::int64_t now_ms) {
    std::set<std::string> due;
    auto it = entries_.begin();
    for (; it != entries_.end() && it->first <= now_ms; ++it) due.insert(it->second);
    entries_.erase(entries_.begin(), it);
    return due;
  }

  std::size_t size() const { return entries_.size(); }
  void clear() { entries_.clear(); }

 private:
  std::set<std::pair<std::int64_t, std::string>> entries_;
};

}  // namespace kpay::sim
