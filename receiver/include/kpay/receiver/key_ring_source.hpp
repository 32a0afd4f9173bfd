// The receiver's view of the registered signing keys.
//
// Readers take an immutable snapshot (current()) per request; a reload builds a
// whole new KeyRing and swaps it in, so rotation never exposes a half-loaded
// ring. Changes made by `klarnactl keys …` in another process are picked up by
// watching SQLite's data_version, and at once on SIGHUP (reload()).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "kpay/core/log.hpp"
#include "kpay/klarna/signature.hpp"

namespace kpay::receiver {

class KeyRingSource {
 public:
  // Opens (creating if needed) the key database and loads it; throws on a
  // database that cannot be opened or migrated (start-up error).
  KeyRingSource(std::string database_path, std::chrono::milliseconds poll_interval);
  ~KeyRingSource();  // stops the watcher

  std::shared_ptr<const klarna::KeyRing> current() const { return ring_.load(); }
  // Re-reads the keys now. Returns false (keeping the previous ring) on a
  // storage error, which is logged.
  bool reload();
  void start_watching();
  std::uint64_t reloads() const { return reloads_.load(); }

 private:
  void watch();

  std::string path_;
  std::chrono::milliseconds poll_interval_;
  core::Logger log_{"receiver.keys"};
  std::atomic<std::shared_ptr<const klarna::KeyRing>> ring_;
  std::atomic<std::uint64_t> reloads_{0};
  std::mutex mu_;  // serialises reloads and guards stop_
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread watcher_;
};

}  // namespace kpay::receiver
