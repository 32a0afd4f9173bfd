#include "kpay/storage/open_store.hpp"

#include <sqlite3.h>

#include "kpay/storage/state_store.hpp"

namespace kpay::storage {

void configure_process() {
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

std::unique_ptr<Store> open_store(const std::string& location, const StoreOptions& options) {
  return std::make_unique<StateStore>(location, options.read_only, options.cache_mib,
                                      options.checkpoint_mib);
}

}  // namespace kpay::storage
