// The senders' per-day totals while one batch is applied (command_gate.hpp,
// the per-day limits): each total is read from the store once per batch, kept
// here as the batch's accepted commands add to it, and written once when the
// batch commits (flush, before the commit, in the batch's transaction). A
// signed command thus costs no read and no write of its own. What a batch that
// failed added goes with its transaction (clear). Internal to processor/src.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

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

}  // namespace kpay::processor::appliers
