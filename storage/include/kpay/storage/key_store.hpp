// The registered Klarna signing keys: signing_key_id -> secret, with status.
//
// Several keys are active at once during rotation (Klarna allows up to 50).
// Secrets are stored byte-exact (no trimming, no decoding) and only leave this
// class through active_keys(), for the verifier; list() never returns them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kpay/storage/sqlite.hpp"

namespace kpay::storage {

struct SigningKeyInfo {
  std::string id;
  std::string status;  // "active" | "retired"
  std::int64_t created_at_ms = 0;
  std::optional<std::int64_t> retired_at_ms;
};

struct SigningKeySecret {
  std::string id;
  std::string secret;
};

// One default for the receiver and klarnactl, so both find the same keys.
inline constexpr const char* kDefaultKeyDatabase = "/var/lib/klarna-receiver/keys.db";

class KeyStore {
 public:
  static constexpr std::size_t kMaxActiveKeys = 50;

  // Migrates the schema on first use; the Database must outlive the store.
  explicit KeyStore(Database& db);

  enum class AddResult { added, already_exists, too_many_active, invalid };
  // Key ids are printable ASCII without spaces: HTTP trims header values, so
  // an id with surrounding blanks could never match a request.
  static bool valid_id(std::string_view id);
  std::size_t active_count();
  AddResult add(const std::string& id, const std::string& secret);
  // False when no active key has that id.
  bool retire(const std::string& id);
  std::vector<SigningKeyInfo> list();
  std::vector<SigningKeySecret> active_keys();

 private:
  Database& db_;
};

}  // namespace kpay::storage
