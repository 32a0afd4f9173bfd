// Downstream commands (klarna.commands) and the payment contexts they
// register (storage/README.md, "Command log").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kpay/storage/rows.hpp"

namespace kpay::storage {

class CommandLog {
 public:
  virtual ~CommandLog() = default;
  // false when the command_id exists already (unique across all processors;
  // then find_command tells a resend from a reused id by body_hash).
  virtual bool insert_command(const CommandRow& c) = 0;
  virtual std::optional<CommandRow> find_command(const std::string& command_id) = 0;
  // The command's final status (succeeded | failed) and reason.
  virtual void finish_command(const std::string& command_id, CommandStatus status,
                              const std::optional<std::string>& reason, std::int64_t now_ms) = 0;
  // Commands per type and status.
  virtual std::vector<CountRow> command_counts() = 0;

  // The newest context registered for a payment request, by its id or (when
  // Klarna had none yet) its reference.
  virtual void save_payment_context(const PaymentContextRow& c) = 0;
  virtual std::optional<PaymentContextRow> find_payment_context(
      const std::string& payment_request_id, const std::optional<std::string>& reference) = 0;
  // An authorize answered STEP_UP_REQUIRED: its context now belongs to the
  // payment request Klarna created. false when the command stored none.
  virtual bool attach_payment_context(const std::string& command_id,
                                      const std::string& payment_request_id) = 0;
};

}  // namespace kpay::storage
