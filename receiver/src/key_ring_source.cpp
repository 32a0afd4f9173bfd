#include "kpay/receiver/key_ring_source.hpp"

#include <unistd.h>

#include "kpay/core/config.hpp"
#include "kpay/core/secret_files.hpp"
#include "kpay/storage/key_store.hpp"

namespace kpay::receiver {

namespace {
// Never create the key database here: a mistyped path must not turn into an
// empty key ring that refuses every webhook. klarnactl keys add creates it.
storage::Database open_existing(const std::string& path) {
  storage::Database::Options options;
  options.create = false;
  return storage::Database::open(path, options);
}

std::shared_ptr<const klarna::KeyRing> load_ring(storage::Database& db) {
  storage::KeyStore store(db);
  auto ring = std::make_shared<klarna::KeyRing>();
  for (auto& k : store.active_keys()) ring->add(k.id, k.secret);
  return ring;
}
}  // namespace

KeyRingSource::KeyRingSource(std::string database_path, std::chrono::milliseconds poll_interval)
    : path_(std::move(database_path)), poll_interval_(poll_interval) {
  // The database holds the signing secrets in clear: nobody but this service
  // may read it (its own group is allowed: docs/RECEIVER.md "Signing keys").
  // A missing file is left to the open below, which says how to create it.
  if (::access(path_.c_str(), F_OK) == 0) {
    if (auto why = core::service_private_file_problem(path_); !why.empty()) {
      throw core::ConfigError("keys.database", why);
    }
  }
  try {
    auto db = open_existing(path_);
    ring_.store(load_ring(db));
  } catch (const storage::SqliteError& e) {
    throw core::ConfigError("keys.database",
                            "cannot open '" + path_ + "' (" + e.what() +
                                "); register a signing key first: klarnactl keys add");
  }
  if (ring_.load()->size() == 0) {
    log_.error("no active signing keys: every webhook will be refused until one is added");
  }
}

KeyRingSource::~KeyRingSource() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (watcher_.joinable()) watcher_.join();
}

bool KeyRingSource::reload() {
  std::lock_guard lock(mu_);
  try {
    auto db = open_existing(path_);
    auto ring = load_ring(db);
    auto size = ring->size();
    ring_.store(std::move(ring));
    reloads_.fetch_add(1);
    if (size == 0) {
      log_.error("no active signing keys: every webhook will be refused until one is added");
    } else {
      log_.info("signing keys loaded", {{"active_keys", size}});
    }
    return true;
  } catch (const std::exception& e) {
    log_.error("signing keys reload failed; keeping the previous keys", {{"error", e.what()}});
    return false;
  }
}

void KeyRingSource::start_watching() { watcher_ = std::thread([this] { watch(); }); }

void KeyRingSource::watch() {
  // One long-lived connection: data_version only reports commits made by
  // *other* connections, which is exactly what klarnactl's are.
  std::optional<storage::Database> db;
  std::int64_t seen = -1;
  std::unique_lock lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, poll_interval_, [&] { return stop_; });
    if (stop_) break;
    lock.unlock();
    bool changed = false;
    try {
      if (!db) db = open_existing(path_);
      auto v = db->data_version();
      // The first poll reloads too: a change between the initial load and this
      // connection's first data_version would otherwise go unseen.
      changed = seen == -1 || v != seen;
      seen = v;
    } catch (const std::exception& e) {
      log_.warn("cannot poll the signing key database", {{"error", e.what()}});
      db.reset();
    }
    if (changed) reload();
    lock.lock();
  }
}

}  // namespace kpay::receiver
