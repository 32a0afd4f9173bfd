#include "commands/sender_day_totals.hpp"

#include <algorithm>

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

namespace {

bool limits_per_day(const CommandPolicy& policy, const std::string& sender) {
  auto it = policy.senders.find(sender);
  if (it == policy.senders.end()) return false;
  return std::any_of(it->second.limits.begin(), it->second.limits.end(),
                     [](const auto& l) { return l.second.per_day.has_value(); });
}

}  // namespace

std::vector<std::string> day_total_keys(std::span<const DecodedMessage> batch,
                                        const CommandPolicy& policy,
                                        const std::function<bool(const DecodedMessage&)>& skipped) {
  std::vector<std::string> keys;
  for (const auto& d : batch) {
    const auto& sender = d.origin.sender;
    if (sender.empty() || !std::holds_alternative<Command>(d.decoded)) continue;
    if (skipped && skipped(d)) continue;
    std::string key = "sender-day-total:" + sender;
    if (std::find(keys.begin(), keys.end(), key) != keys.end()) continue;
    if (limits_per_day(policy, sender)) keys.push_back(std::move(key));
  }
  return keys;
}

}  // namespace kpay::processor::appliers
