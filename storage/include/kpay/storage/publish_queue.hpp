// Messages that must reach Kafka, and the offsets consumed, both written in
// the batch transaction (storage/README.md, "Publish queue and offsets").
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "kpay/storage/rows.hpp"

namespace kpay::storage {

class PublishQueue {
 public:
  virtual ~PublishQueue() = default;
  // Returns the row's seq: increasing in the order rows were enqueued (and
  // committed) through this store object.
  virtual std::int64_t enqueue_publish(const PublishRow& p) = 0;
  // After the broker acknowledged it. Deleting a seq already gone is a no-op.
  virtual void delete_published(std::int64_t seq) = 0;
  // Every row not deleted yet, by seq. With several processors on one
  // database: the rows this processor may publish (its own, and those whose
  // claimer's lease ran out), claimed for it; what a starting processor
  // republishes.
  virtual std::vector<PublishRow> pending_publications() = 0;
  // Several processors: renews this processor's claims on the rows it
  // enqueued and has not deleted yet, and claims (returns, by seq) the rows
  // of a processor whose lease ran out, for this one to publish. Called
  // periodically, at least once per lease. One processor: nothing to take.
  virtual std::vector<PublishRow> take_over_publications() { return {}; }
};

// A Kafka partition: topic, partition number.
using TopicPartition = std::pair<std::string, std::int32_t>;

// Next offset to consume per partition, and the gaps found in them.
class OffsetStore {
 public:
  virtual ~OffsetStore() = default;
  // The fence of a batch (storage/README.md, "Publish queue and offsets"): the
  // stored next offset of each of `partitions` that has one, read inside the
  // caller's write transaction, so that messages below it (applied by
  // another processor, or by an attempt of this one whose commit it did not
  // see) are skipped. PostgreSQL locks the rows (one statement, FOR UPDATE
  // in (topic, partition) order): a second processor's batch on the same
  // partition waits here for the first's commit, then fails with a conflict
  // (StoreFault::conflict) and is retried on a new snapshot. SQLite has one
  // writer at a time: its reads in the transaction are the fence already.
  virtual std::map<TopicPartition, std::int64_t> fence_offsets(
      std::span<const TopicPartition> partitions) {
    std::map<TopicPartition, std::int64_t> out;
    for (const auto& [topic, partition] : partitions) {
      if (auto next = stored_offset(topic, partition)) out[{topic, partition}] = *next;
    }
    return out;
  }
  // The stored next offset of each of `partitions` that has one, as
  // committed, read without a lock: called outside any write transaction,
  // before a batch takes any lock (storage/README.md, "Publish queue and
  // offsets"). Messages below it were applied already: a batch holding only
  // such messages is finished without a transaction, so a processor that
  // lost its partitions never waits on (nor conflicts with) the owner's
  // open transaction. Only a backend several processors write (PostgreSQL)
  // reads them (one statement); one with a single writer (SQLite) answers
  // nothing at no cost, its fence_offsets never waiting on another processor.
  virtual std::map<TopicPartition, std::int64_t> committed_offsets(
      std::span<const TopicPartition> partitions) {
    (void)partitions;
    return {};
  }
  // Never moves backwards (the larger of stored and given is kept).
  virtual void save_offset(const std::string& topic, std::int32_t partition,
                           std::int64_t next_offset) = 0;
  virtual std::optional<std::int64_t> stored_offset(const std::string& topic,
                                                    std::int32_t partition) = 0;
  // Sets the next offset, even backwards (a recreated log starts again at 0).
  virtual void reset_offset(const std::string& topic, std::int32_t partition,
                            std::int64_t next_offset) = 0;

  // Records a gap once per (topic, partition, expected): the row as stored
  // and whether this call inserted it (false: detected before).
  virtual std::pair<OffsetGapRow, bool> record_gap(const OffsetGapRow& g) = 0;
  virtual std::optional<OffsetGapRow> find_gap(std::int64_t id) = 0;
  // By status (none: all), newest first.
  virtual std::vector<OffsetGapRow> list_gaps(std::optional<GapStatus> status,
                                              std::size_t limit) = 0;
  // The open gap that holds a partition, if any.
  virtual std::optional<OffsetGapRow> open_gap(const std::string& topic,
                                               std::int32_t partition) = 0;
  virtual std::int64_t count_open_gaps() = 0;
  // open → accepted, and the partition's stored offset set to the gap's
  // resume_at (unless already past it). false when not open.
  virtual bool accept_gap(std::int64_t id, std::int64_t now_ms) = 0;
  virtual void mark_gap_repaired(std::int64_t id, std::int64_t reads, std::int64_t now_ms) = 0;
  // Payment requests, transactions and disputes with a history row on this
  // partition, with their state.
  virtual std::vector<RepairTarget> repair_targets(const std::string& topic, std::int32_t partition,
                                                   std::size_t limit = 100000) = 0;
};

}  // namespace kpay::storage
