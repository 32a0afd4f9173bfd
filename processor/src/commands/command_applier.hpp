// Downstream commands in the batch transaction (commands.hpp): the command
// inbox (command_id), the check against the stored state, the outbox row of
// the Klarna call, and the result to publish (`accepted`, `rejected`, or, for
// `register`, `succeeded`). The final result of a call is the outbox worker's
// (call_answers.cpp). Internal to processor/src.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "kpay/processor/commands.hpp"
#include "kpay/processor/state_machines.hpp"
#include "kpay/storage/store.hpp"

namespace kpay::processor::appliers {

struct CommandEffects {
  Outcome outcome = Outcome::rejected;  // applied = accepted (or registered)
  std::string reason;                   // for the history row
  std::string entity_id;                // what the history row is filed under
  std::optional<CommandResult> result;  // nothing for a resent command
};

class CommandGate;  // command_gate.hpp: the sender's permissions, the command's age

// `key`: the message's Kafka key (results go out under it). `gate`: none lets
// every command through (no sender checks).
CommandEffects apply_command(storage::Store& store, const Command& c, const std::string& key,
                             std::int64_t now_ms, const CommandGate* gate = nullptr);
// A message that is not a valid command: rejected, and remembered under its
// command_id when it has one (a resend is then a duplicate, not a second result).
CommandEffects apply_rejection(storage::Store& store, const CommandRejection& r,
                               const std::string& key, std::int64_t now_ms);

}  // namespace kpay::processor::appliers
