// The processor's view of the command senders' keys (commands.senders_database,
// written by `klarnactl senders …`).
//
// Readers take an immutable snapshot (current()); a reload builds a whole new
// SenderKeyRing and swaps it in. Changes made by klarnactl are picked up by
// watching SQLite's data_version (commands.senders_poll_ms), and at once on
// SIGHUP (reload()). The file must be private to the service (like the
// receiver's key database): a lax mode is refused at start and on reload.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "kpay/core/log.hpp"
#include "kpay/processor/command_auth.hpp"

namespace kpay::processor {

class SenderKeySource {
 public:
  // Loads the keys; throws core::ConfigError (commands.senders_database) on a
  // file others may read or that cannot be opened. A missing file is an empty
  // ring (every signed command refused as unknown_sender), said in the log.
  SenderKeySource(std::string database_path, std::chrono::milliseconds poll_interval);
  ~SenderKeySource();  // stops the watcher

  std::shared_ptr<const SenderKeyRing> current() const { return ring_.load(); }
  // Re-reads the keys now; false (keeping the previous ring) on a file with a
  // lax mode or a storage error, which is logged.
  bool reload();
  void start_watching();

 private:
  void watch();

  std::string path_;
  std::chrono::milliseconds poll_interval_;
  core::Logger log_{"processor.senders"};
  std::atomic<std::shared_ptr<const SenderKeyRing>> ring_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread watcher_;
};

}  // namespace kpay::processor
