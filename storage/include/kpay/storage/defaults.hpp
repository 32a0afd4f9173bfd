// Where the processor's state database lives when the configuration does not
// say (processor.database): the packaged daemon's StateDirectory=, so the
// daemon, klarnactl and config/processor.toml agree on one file wherever they
// are started from. (The receiver's key database: kDefaultKeyDatabase in
// key_store.hpp.)
#pragma once

namespace kpay::storage {

inline constexpr const char* kDefaultStateDatabase = "/var/lib/klarna-processor/state.db";

}  // namespace kpay::storage
