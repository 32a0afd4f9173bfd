#include "intake/storage_health.hpp"

#include <sys/statvfs.h>

#include <filesystem>
#include <vector>

namespace kpay::processor {

namespace {
// Less than this left on the filesystem: an I/O error there is a full disk
// (SQLite writes pages of 4 KiB and grows the WAL index by 32 KiB).
constexpr std::int64_t kNoRoom = 1 << 20;

const char* describe(const char* reason) {
  const std::string r = reason;
  if (r == "disk_full") return "disk full: the state database cannot grow";
  if (r == "io_error") return "I/O error on the state database";
  if (r == "busy") return "the state database is locked by another writer";
  if (r == "read_only") return "the state database is read-only";
  if (r == "cannot_open") return "the state database cannot be opened";
  if (r == "unreachable") return "the state database server is unreachable";
  return "the state database is failing";
}
}  // namespace

StorageHealth::StorageHealth(std::string database, core::Registry& registry)
    : database_(std::move(database)) {
  registry.gauge_callback(
      "kpay_processor_state_store_failing",
      "1 while the consumer's commits to the state database fail, by reason (disk_full, "
      "io_error, busy, read_only, cannot_open, unreachable, other); nothing is consumed meanwhile.",
      {"reason"}, [this] {
        std::lock_guard lock(mu_);
        std::vector<core::GaugeSample> out;
        for (const char* r : kReasons) {
          out.push_back({{r}, reason_ != nullptr && std::string(reason_) == r ? 1.0 : 0.0});
        }
        return out;
      });
}

const char* StorageHealth::classify(storage::StoreFault fault, std::int64_t free_bytes) {
  using storage::StoreFault;
  const bool no_room = free_bytes >= 0 && free_bytes < kNoRoom;
  switch (fault) {
    case StoreFault::disk_full:
      return "disk_full";
    case StoreFault::io_error:
      return no_room ? "disk_full" : "io_error";
    case StoreFault::busy:
    case StoreFault::conflict:  // not reported by the consumer (retried at once)
      return "busy";
    case StoreFault::read_only:
      return "read_only";
    case StoreFault::cannot_open:
      return no_room ? "disk_full" : "cannot_open";
    case StoreFault::unreachable:
      return "unreachable";
    case StoreFault::other:
      break;
  }
  return "other";
}

std::int64_t StorageHealth::free_bytes(const std::string& path) {
  if (path.empty()) return -1;
  struct statvfs s {};
  auto dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  if (::statvfs(dir.c_str(), &s) != 0) return -1;
  return static_cast<std::int64_t>(s.f_bavail) * static_cast<std::int64_t>(s.f_frsize);
}

bool StorageHealth::failed(const storage::StoreError& e) {
  const auto free = free_bytes(database_);
  const char* reason = classify(e.fault(), free);
  std::lock_guard lock(mu_);
  if (reason_ != reason) {
    if (reason_ == nullptr) since_ = std::chrono::steady_clock::now();
    reason_ = reason;
    log_.error(
        std::string(describe(reason)) + "; nothing is consumed until it can write again",
        {{"reason", reason}, {"database", database_}, {"free_bytes", free}, {"error", e.what()}});
  }
  detail_ = std::string(describe(reason)) + " (" + e.what() +
            (free >= 0 ? "; " + std::to_string(free) + " bytes free" : std::string()) + ")";
  return std::string(reason) == "disk_full";
}

void StorageHealth::succeeded() {
  std::lock_guard lock(mu_);
  if (reason_ == nullptr) return;
  const auto seconds =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - since_)
          .count();
  log_.info("state database writable again; consuming resumes",
            {{"was", reason_}, {"seconds", seconds}});
  reason_ = nullptr;
  detail_.clear();
}

bool StorageHealth::ok() const {
  std::lock_guard lock(mu_);
  return reason_ == nullptr;
}

std::string StorageHealth::reason() const {
  std::lock_guard lock(mu_);
  return reason_ == nullptr ? std::string() : "state store failing: " + detail_;
}

}  // namespace kpay::processor
