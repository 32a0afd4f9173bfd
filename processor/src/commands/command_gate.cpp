#include "commands/command_gate.hpp"

#include <limits>

#include "kpay/core/log.hpp"

namespace kpay::processor::appliers {

namespace {

bool carries_account(const Command& c) {
  return std::holds_alternative<AuthorizeCommand>(c.body) ||
         std::holds_alternative<RegisterCommand>(c.body);
}

// The account, currency and amount an authorize / register names (views
// into the command: no copies on every command).
struct Carried {
  const std::string& account;
  const std::string& currency;
  std::int64_t amount = 0;
};
Carried carried(const Command& c) {
  if (const auto* a = std::get_if<AuthorizeCommand>(&c.body)) {
    return {a->partner_account_id, a->currency, a->amount};
  }
  const auto& r = std::get<RegisterCommand>(c.body);
  return {r.partner_account_id, r.currency, r.amount};
}

bool allows(const std::set<std::string>& names, const std::string& name) {
  return names.contains("*") || names.contains(name);
}

// "YYYY-MM-DD" of a UTC time, formatted once a day per thread.
const std::string& utc_day(std::int64_t now_ms) {
  constexpr std::int64_t kDayMs = 24LL * 3600 * 1000;
  thread_local std::int64_t cached_day = std::numeric_limits<std::int64_t>::min();
  thread_local std::string cached;
  const std::int64_t day = now_ms >= 0 ? now_ms / kDayMs : (now_ms - kDayMs + 1) / kDayMs;
  if (day != cached_day) {
    cached = core::rfc3339_ms(day * kDayMs).substr(0, 10);
    cached_day = day;
  }
  return cached;
}

}  // namespace

const SenderPermissions* CommandGate::permissions() const {
  auto it = policy_.senders.find(origin_.sender);
  return it == policy_.senders.end() ? nullptr : &it->second;
}

std::optional<std::string> CommandGate::before(storage::Store& store, const Command& c,
                                               std::int64_t now_ms) const {
  const std::string type(command_type_name(c.type()));
  if (origin_.issued_at_ms) {
    const auto max = policy_.max_age_for(type).count();
    const auto age = now_ms - *origin_.issued_at_ms;
    if (age > max) {
      return "expired: issued " + core::rfc3339_ms(*origin_.issued_at_ms) + ", " +
             std::to_string(age / 1000) + " s ago; a " + type + " may be at most " +
             std::to_string(max / 1000) + " s old";
    }
  }
  if (origin_.sender.empty()) return std::nullopt;  // unsigned, let in by allow_unsigned
  const auto* p = permissions();
  if (p == nullptr) {
    return "not_permitted: sender " + origin_.sender + " has no permissions ([senders." +
           origin_.sender + "])";
  }
  if (!allows(p->commands, type)) {
    return "not_permitted: sender " + origin_.sender + " may not send " + type;
  }
  if (!carries_account(c)) return std::nullopt;
  // Checked before the state check, which already keeps their context.
  const auto x = carried(c);
  if (auto why = permit_account(*p, x.account)) return why;
  return permit_amount(store, *p, x.currency, x.amount, now_ms);
}

std::optional<std::string> CommandGate::permit_account(const SenderPermissions& p,
                                                       const std::string& account) const {
  if (allows(p.partner_accounts, account)) return std::nullopt;
  return "not_permitted: sender " + origin_.sender + " may not act for partner account " + account;
}

std::optional<std::string> CommandGate::permit_amount(storage::Store& store,
                                                      const SenderPermissions& p,
                                                      const std::optional<std::string>& currency,
                                                      std::optional<std::int64_t> amount,
                                                      std::int64_t now_ms) const {
  if (p.limits.empty() || !amount) return std::nullopt;
  if (!currency) return "not_permitted: the payment's currency is not known yet";
  auto it = p.limits.find(*currency);
  if (it == p.limits.end()) {
    return "not_permitted: sender " + origin_.sender + " may not move " + *currency;
  }
  const auto& l = it->second;
  if (l.per_command && *amount > *l.per_command) {
    return "not_permitted: amount " + std::to_string(*amount) + " " + *currency +
           " exceeds the per-command limit " + std::to_string(*l.per_command);
  }
  if (l.per_day) {
    const auto spent = totals_.spent(store, origin_.sender, *currency, utc_day(now_ms));
    if (spent + *amount > *l.per_day) {
      return "not_permitted: amount " + std::to_string(*amount) + " " + *currency +
             " would take today's total to " + std::to_string(spent + *amount) +
             ", over the per-day limit " + std::to_string(*l.per_day);
    }
  }
  return std::nullopt;
}

std::optional<std::string> CommandGate::after(storage::Store& store, const Command& c,
                                              const std::string& account,
                                              std::optional<std::int64_t> amount,
                                              const std::string& entity_id, std::int64_t now_ms,
                                              std::optional<SenderCharge>& charge) const {
  charge.reset();
  if (origin_.sender.empty()) return std::nullopt;
  const auto* p = permissions();
  if (p == nullptr) return "not_permitted: sender " + origin_.sender + " has no permissions";
  std::optional<std::string> currency;
  if (carries_account(c)) {  // checked by before()
    const auto x = carried(c);
    currency = x.currency;
    amount = x.amount;
  } else {
    if (auto why = permit_account(*p, account)) return why;
    if (amount) {
      if (auto t = store.find_transaction(entity_id)) currency = t->currency;
    }
    if (auto why = permit_amount(store, *p, currency, amount, now_ms)) return why;
  }
  if (currency && amount) charge = SenderCharge{*currency, *amount};
  return std::nullopt;
}

void CommandGate::sign(storage::CommandRow& row) const {
  if (origin_.sender.empty()) return;
  row.sender = origin_.sender;
  row.sender_key_id = origin_.key_id;
}

void CommandGate::count(const SenderCharge& charge, std::int64_t now_ms) const {
  if (origin_.sender.empty()) return;
  totals_.add(origin_.sender, utc_day(now_ms), charge.currency, charge.amount);
}

std::optional<std::string> gate_refusal_kind(const std::string& reason) {
  for (const char* kind : {"expired", "not_permitted"}) {
    if (reason.starts_with(std::string(kind) + ": ")) return std::string(kind);
  }
  return std::nullopt;
}

}  // namespace kpay::processor::appliers
