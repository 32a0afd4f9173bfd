// A signed command's permissions and age, checked in the batch transaction
// (command_auth.hpp has the settings): `before` the state check (age, command
// type, and the account and amount a command carries: authorize, register),
// `after` it (the account and amount the stored payment gives: capture,
// refund, void, cancel, dispute operations), which also tells what an accepted
// command moves. Who sent a command is written in its own row (`sign`, the
// audit trail reads it there); what an accepted one moves is added to the
// sender's day total (`count`, per-day limits) once its row is in; the day
// totals are the batch's (sender_day_totals.hpp), written when it commits.
// Reasons start "expired: " or "not_permitted: ". Internal to processor/src.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "commands/sender_day_totals.hpp"
#include "kpay/processor/command_auth.hpp"
#include "kpay/processor/commands.hpp"
#include "kpay/storage/store.hpp"

namespace kpay::processor::appliers {

// What an accepted command of a sender moves (its day total counts it).
struct SenderCharge {
  std::string currency;
  std::int64_t amount = 0;
};

class CommandGate {
 public:
  // `totals`: the senders' day totals of the batch (sender_day_totals.hpp).
  CommandGate(const CommandPolicy& policy, const CommandOrigin& origin, SenderDayTotals& totals)
      : policy_(policy), origin_(origin), totals_(totals) {}

  std::optional<std::string> before(storage::Store& store, const Command& c,
                                    std::int64_t now_ms) const;
  // On acceptance, `charge` is what the command moves when it names an amount
  // in a known currency (else nullopt).
  std::optional<std::string> after(storage::Store& store, const Command& c,
                                   const std::string& account, std::optional<std::int64_t> amount,
                                   const std::string& entity_id, std::int64_t now_ms,
                                   std::optional<SenderCharge>& charge) const;
  // Writes the sender and its key into the command's row (none: unsigned).
  void sign(storage::CommandRow& row) const;
  // Adds an accepted command's charge to its sender's total of the UTC day.
  void count(const SenderCharge& charge, std::int64_t now_ms) const;

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
  SenderDayTotals& totals_;
};

// "expired" / "not_permitted" when `reason` is one of the gate's, else nullopt.
std::optional<std::string> gate_refusal_kind(const std::string& reason);

}  // namespace kpay::processor::appliers
