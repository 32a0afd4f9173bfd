#include "commands/sender_day_totals.hpp"

namespace kpay::processor::appliers {

SenderDayTotals::Total& SenderDayTotals::at(const std::string& sender, const std::string& day,
                                            const std::string& currency) {
  // Sender ids, days and currency codes hold no NUL: the key is unambiguous.
  std::string key;
  key.reserve(sender.size() + day.size() + currency.size() + 2);
  key.append(sender).push_back('\0');
  key.append(day).push_back('\0');
  key.append(currency);
  auto it = totals_.find(key);
  if (it == totals_.end()) {
    it = totals_.emplace(std::move(key), Total{sender, day, currency, std::nullopt, 0}).first;
  }
  return it->second;
}

std::int64_t SenderDayTotals::spent(storage::Store& store, const std::string& sender,
                                    const std::string& currency, const std::string& day) {
  Total& t = at(sender, day, currency);
  if (!t.stored) t.stored = store.spent(sender, currency, day);
  return *t.stored + t.added;
}

void SenderDayTotals::add(const std::string& sender, const std::string& day,
                          const std::string& currency, std::int64_t amount) {
  at(sender, day, currency).added += amount;
}

void SenderDayTotals::flush(storage::Store& store) {
  for (const auto& [key, t] : totals_) {
    if (t.added != 0) store.add_sender_day_total(t.sender, t.day, t.currency, t.added);
  }
  totals_.clear();
}

}  // namespace kpay::processor::appliers
