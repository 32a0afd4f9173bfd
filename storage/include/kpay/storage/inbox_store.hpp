// Inbox and history: which events were seen, what each did (storage/README.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kpay/storage/rows.hpp"

namespace kpay::storage {

class InboxStore {
 public:
  virtual ~InboxStore() = default;

  // The duplicate check: false when event_id was recorded before (by anyone:
  // unique on event_id across all processors sharing the store).
  virtual bool insert_inbox(const InboxEntry& e) = 0;
  // The first delivery of an event_id (digest empty when recorded before v8).
  virtual std::optional<InboxEntry> find_inbox(const std::string& event_id) = 0;

  // A message whose event_id was applied before with another body.
  virtual void insert_conflict(const EventConflictRow& c) = 0;
  virtual std::vector<EventConflictRow> list_conflicts(std::size_t limit) = 0;  // newest first

  // Appends one row (seq assigned by the store, increasing in commit order of
  // one processor).
  virtual void append_history(const HistoryRow& h) = 0;
  // Every history row of an entity, oldest (lowest seq) first.
  virtual std::vector<HistoryRow> history(const std::string& entity_id) = 0;
  // Bulk index maintenance inside the caller's transaction; a backend with no
  // such need returns false. true when it indexed.
  virtual bool index_history_if_due(std::int64_t max_unindexed = kHistoryIndexEvery) = 0;
  static constexpr std::int64_t kHistoryIndexEvery = 50000;
};

}  // namespace kpay::storage
