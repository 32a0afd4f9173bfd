#include "kpay/processor/command_counts.hpp"

namespace kpay::processor {

CommandCounts::CommandCounts(storage::Store& store) : store_(store) {}

void CommandCounts::register_metrics(core::Registry& registry) {
  registry.gauge_callback(
      "kpay_processor_commands",
      "Downstream commands in the state database by type and status (accepted, rejected, "
      "succeeded, failed).",
      {"type", "status"}, [this]() -> std::vector<core::GaugeSample> {
        std::lock_guard lock(mu_);
        try {
          std::vector<core::GaugeSample> out;
          for (const auto& c : store_.command_counts()) {
            out.push_back({{c.group, c.status}, static_cast<double>(c.count)});
          }
          return out;
        } catch (const std::exception&) {
          return {};  // the store is busy or failing; /readyz reports storage
        }
      });
}

}  // namespace kpay::processor
