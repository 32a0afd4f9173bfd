// The backends the storage contract suite runs against. A new backend adds
// its factory to backends() below.
#include <unistd.h>

#include <atomic>
#include <filesystem>

#include "kpay/storage/open_store.hpp"
#include "store_contract.hpp"

namespace kpay::storage::contract {

namespace {

// SQLite: a fresh file in the temp directory per test.
class SqliteBackend final : public Backend {
 public:
  std::string name() const override { return "sqlite"; }
  std::unique_ptr<Store> open_fresh() override {
    static std::atomic<int> n{0};
    path_ = (std::filesystem::temp_directory_path() /
             ("kpay-contract-" + std::to_string(getpid()) + "-" + std::to_string(n++) + ".db"))
                .string();
    clean_up();
    return open_store(path_, {.read_only = false, .cache_mib = 2});
  }
  std::unique_ptr<Store> open_again() override {
    return open_store(path_, {.read_only = false, .cache_mib = 2});
  }
  void clean_up() override {
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path_ + suffix);
  }

 private:
  std::string path_;
};

}  // namespace

std::vector<NamedFactory> backends() {
  return {
      {"sqlite", [] { return std::unique_ptr<Backend>(std::make_unique<SqliteBackend>()); }},
  };
}

}  // namespace kpay::storage::contract
