#include "kpay/processor/sender_keys.hpp"

#include <unistd.h>

#include <optional>

#include "kpay/core/config.hpp"
#include "kpay/core/secret_files.hpp"
#include "kpay/storage/sender_store.hpp"

namespace kpay::processor {

namespace {

storage::Database open_existing(const std::string& path) {
  storage::Database::Options options;
  options.create = false;
  return storage::Database::open(path, options);
}

// Throws core::ConfigError on a lax mode; nullptr when there is no file.
std::shared_ptr<const SenderKeyRing> load_ring(const std::string& path) {
  auto ring = std::make_shared<SenderKeyRing>();
  if (::access(path.c_str(), F_OK) != 0) return ring;
  if (auto why = core::service_private_file_problem(path); !why.empty()) {
    throw core::ConfigError("commands.senders_database", why);
  }
  auto db = open_existing(path);
  storage::SenderStore store(db);
  for (const auto& k : store.active_keys()) ring->add_active(k.sender, k.key_id, k.secret);
  for (const auto& k : store.list()) {
    if (k.status == "retired") ring->add_retired(k.sender, k.key_id);
  }
  return ring;
}

}  // namespace

SenderKeySource::SenderKeySource(std::string database_path, std::chrono::milliseconds poll_interval)
    : path_(std::move(database_path)), poll_interval_(poll_interval) {
  try {
    ring_.store(load_ring(path_));
  } catch (const storage::SqliteError& e) {
    throw core::ConfigError("commands.senders_database",
                            "cannot open '" + path_ + "': " + e.what());
  }
  const auto ring = ring_.load();
  if (ring->active_keys() == 0) {
    log_.warn(
        "no active command sender keys: every signed command is refused until "
        "`klarnactl senders add` registers one",
        {{"database", path_}});
  } else {
    log_.info("command sender keys loaded",
              {{"senders", ring->senders()}, {"active_keys", ring->active_keys()}});
  }
}

SenderKeySource::~SenderKeySource() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (watcher_.joinable()) watcher_.join();
}

bool SenderKeySource::reload() {
  std::lock_guard lock(mu_);
  try {
    auto ring = load_ring(path_);
    log_.info("command sender keys loaded",
              {{"senders", ring->senders()}, {"active_keys", ring->active_keys()}});
    ring_.store(std::move(ring));
    return true;
  } catch (const std::exception& e) {
    log_.error("command sender keys reload refused; keeping the previous keys",
               {{"database", path_}, {"error", e.what()}});
    return false;
  }
}

void SenderKeySource::start_watching() {
  watcher_ = std::thread([this] { watch(); });
}

void SenderKeySource::watch() {
  // One long-lived connection: data_version reports commits made by other
  // connections, which klarnactl's are.
  std::optional<storage::Database> db;
  std::int64_t seen = -1;
  std::unique_lock lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, poll_interval_, [&] { return stop_; });
    if (stop_) break;
    lock.unlock();
    bool changed = false;
    try {
      if (!db && ::access(path_.c_str(), F_OK) == 0) db = open_existing(path_);
      if (db) {
        const auto v = db->data_version();
        changed = seen == -1 || v != seen;
        seen = v;
      }
    } catch (const std::exception& e) {
      log_.warn("cannot poll the sender key database", {{"error", e.what()}});
      db.reset();
    }
    if (changed) reload();
    lock.lock();
  }
}

}  // namespace kpay::processor
