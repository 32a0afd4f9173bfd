// kpay_processor_commands{type, status}: the downstream commands
// (klarna.commands, docs/klarna/COMMANDS.md) in the state database by type
// and status (accepted, rejected, succeeded, failed), counted at each scrape.
#pragma once

#include <mutex>

#include "kpay/core/metrics.hpp"
#include "kpay/storage/store.hpp"

namespace kpay::processor {

class CommandCounts {
 public:
  // `store`: a connection of its own (read-only is enough), used only by the
  // metric callback, serialized inside.
  explicit CommandCounts(storage::Store& store);

  void register_metrics(core::Registry& registry);

 private:
  storage::Store& store_;
  std::mutex mu_;
};

}  // namespace kpay::processor
