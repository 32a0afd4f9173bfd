// The keys of downstream command senders (docs/OPERATIONS.md, "Command
// senders"): sender id -> its signing keys, each active or retired.
//
// A sender holds several active keys while it rotates (the old one until
// every producer signs with the new). Secrets are stored byte-exact and leave
// this class only through active_keys(), for the processor's verifier;
// list() never returns them. Its own SQLite file (schema "senders"), like the
// receiver's key database.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kpay/storage/sqlite.hpp"

namespace kpay::storage {

struct SenderKeyInfo {
  std::string sender;
  std::string key_id;
  std::string status;  // "active" | "retired"
  std::int64_t created_at_ms = 0;
  std::optional<std::int64_t> retired_at_ms;
};

struct SenderKeySecret {
  std::string sender;
  std::string key_id;
  std::string secret;
};

// One default for the processor and klarnactl, so both find the same keys.
inline constexpr const char* kDefaultSenderDatabase = "/var/lib/klarna-processor/senders.db";

class SenderStore {
 public:
  static constexpr std::size_t kMaxActiveKeysPerSender = 10;

  // Migrates the schema on first use; the Database must outlive the store.
  explicit SenderStore(Database& db);

  // Sender and key ids: 1-64 of A-Z a-z 0-9 _ - (they travel in Kafka
  // headers, in the signature header's grammar and as TOML table names).
  static bool valid_id(std::string_view id) {
    if (id.empty() || id.size() > 64) return false;
    for (char c : id) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '-';
      if (!ok) return false;
    }
    return true;
  }

  enum class AddResult { added, already_exists, too_many_active, invalid };
  AddResult add(const std::string& sender, const std::string& key_id, const std::string& secret);
  // False when the sender has no active key of that id.
  bool retire(const std::string& sender, const std::string& key_id);
  std::size_t active_count(const std::string& sender);
  // Every key, retired ones included (their ids let a retired-key signature
  // be told from a forged one); `sender` empty: all senders.
  std::vector<SenderKeyInfo> list(const std::string& sender = "");
  std::vector<SenderKeySecret> active_keys();

 private:
  Database& db_;
};

}  // namespace kpay::storage
