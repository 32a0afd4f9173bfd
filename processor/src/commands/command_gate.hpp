// A signed command's permissions and age, checked in the batch transaction
// (command_auth.hpp has the settings): `before` the state check (age, command
// type, and the account and amount a command carries: authorize, register),
// `after` it (the account and amount the stored payment gives: capture,
// refund, void, cancel, dispute operations), which also records who sent the
// accepted command and what it moves (per-day limits, audit trail).
// Reasons start "expired: " or "not_permitted: ". Internal to processor/src.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "kpay/processor/command_auth.hpp"
#include "kpay/processor/commands.hpp"
#include "kpay/storage/store.hpp"

namespace kpay::processor::appliers {

class CommandGate {
 public:
  CommandGate(const CommandPolicy& policy, const CommandOrigin& origin)
      : policy_(policy), origin_(origin) {}

  std::optional<std::string> before(storage::Store& store, const Command& c,
                                    std::int64_t now_ms) const;
  std::optional<std::string> after(storage::Store& store, const Command& c,
                                   const std::string& account, std::optional<std::int64_t> amount,
                                   const std::string& entity_id, std::int64_t now_ms) const;

 private:
  std::optional<std::string> permit_account(const SenderPermissions& p,
                                            const std::string& account) const;
  std::optional<std::string> permit_amount(storage::Store& store, const SenderPermissions& p,
                                           const std::optional<std::string>& currency,
                                           std::optional<std::int64_t> amount,
                                           std::int64_t now_ms) const;
  const SenderPermissions* permissions() const;

  const CommandPolicy& policy_;
  const CommandOrigin& origin_;
};

// "expired" / "not_permitted" when `reason` is one of the gate's, else nullopt.
std::optional<std::string> gate_refusal_kind(const std::string& reason);

}  // namespace kpay::processor::appliers
