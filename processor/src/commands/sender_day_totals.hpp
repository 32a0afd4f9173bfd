// The senders' per-day totals while one batch is applied (command_gate.hpp,
// the per-day limits): each total is read from the store once per batch, kept
// here as the batch's accepted commands add to it, and written once when the
// batch commits (flush, before the commit, in the batch's transaction). A
// signed command thus costs no read and no write of its own. What a batch that
// failed added goes with its transaction (clear). Internal to processor/src.
//
// Several processors on one PostgreSQL state (commands of one sender arrive
// on several partitions, so on several processors) must not each read the
// same total and together pass the limit: a batch that may read a sender's
// total begins its transaction serialised on that sender
// (day_total_keys, storage::WriteTransaction), so it begins only after
// another processor's batch that holds the sender committed, and reads what
// it added.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kpay/processor/batch_applier.hpp"
#include "kpay/storage/store.hpp"

namespace kpay::processor::appliers {

class SenderDayTotals {
 public:
  // What `sender`'s accepted commands moved in `currency` on UTC `day`,
  // this batch's included.
  std::int64_t spent(storage::Store& store, const std::string& sender, const std::string& currency,
                     const std::string& day);
  void add(const std::string& sender, const std::string& day, const std::string& currency,
           std::int64_t amount);
  // Writes what this batch added (one row per sender, day and currency);
  // then forgets everything (the next batch reads afresh).
  void flush(storage::Store& store);
  void clear() { totals_.clear(); }

 private:
  struct Total {
    std::string sender, day, currency;
    std::optional<std::int64_t> stored;  // read on first need
    std::int64_t added = 0;
  };
  Total& at(const std::string& sender, const std::string& day, const std::string& currency);

  std::map<std::string, Total, std::less<>> totals_;  // by sender, day, currency
};

// The serialisation keys of a batch (UnitOfWork::begin_write_serialised):
// one per sender of a signed command in it whose permissions set a per-day
// limit; none for a batch without such commands (the common case costs
// nothing). Messages `skipped` (the batch's fence) need none.
std::vector<std::string> day_total_keys(
    std::span<const DecodedMessage> batch, const CommandPolicy& policy,
    const std::function<bool(const DecodedMessage&)>& skipped = {});

}  // namespace kpay::processor::appliers
