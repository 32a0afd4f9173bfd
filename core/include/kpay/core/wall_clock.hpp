// Wall-clock time as the databases store it: milliseconds since the Unix
// epoch (system_clock; not monotonic, so never for measuring durations).
#pragma once

#include <chrono>
#include <cstdint>

namespace kpay::core {

inline std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace kpay::core
