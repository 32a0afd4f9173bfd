#include "kpay/storage/key_store.hpp"

#include <array>
#include <chrono>

#include "kpay/core/wall_clock.hpp"
#include "kpay/storage/migrations.hpp"

namespace kpay::storage {

namespace {
constexpr std::array kMigrations = {
    Migration{1, "signing keys",
              "CREATE TABLE signing_keys ("
              " id TEXT PRIMARY KEY,"
              " secret BLOB NOT NULL,"
              " status TEXT NOT NULL CHECK (status IN ('active', 'retired')),"
              " created_at INTEGER NOT NULL,"
              " retired_at INTEGER)"},
};

using core::now_ms;
}  // namespace

KeyStore::KeyStore(Database& db) : db_(db) {
  migrate(db_, "keys", kMigrations);
}

bool KeyStore::valid_id(std::string_view id) {
  if (id.empty() || id.size() > 512) return false;
  for (char c : id) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

std::size_t KeyStore::active_count() {
  auto count = db_.prepare("SELECT COUNT(*) FROM signing_keys WHERE status = 'active'");
  count.step();
  return static_cast<std::size_t>(count.int64(0));
}

KeyStore::AddResult KeyStore::add(const std::string& id, const std::string& secret) {
  if (!valid_id(id) || secret.empty()) return AddResult::invalid;
  Transaction tx(db_);
  auto exists = db_.prepare("SELECT 1 FROM signing_keys WHERE id = ?");
  exists.bind(1, id);
  if (exists.step()) return AddResult::already_exists;
  if (active_count() >= kMaxActiveKeys) return AddResult::too_many_active;
  auto ins = db_.prepare(
      "INSERT INTO signing_keys (id, secret, status, created_at) VALUES (?, ?, 'active', ?)");
  ins.bind(1, id).bind_blob(2, secret).bind(3, now_ms());
  ins.run();
  tx.commit();
  return AddResult::added;
}

bool KeyStore::retire(const std::string& id) {
  auto s = db_.prepare(
      "UPDATE signing_keys SET status = 'retired', retired_at = ? WHERE id = ? AND status = "
      "'active'");
  s.bind(1, now_ms()).bind(2, id);
  s.run();
  return db_.changes() == 1;
}

std::vector<SigningKeyInfo> KeyStore::list() {
  auto s = db_.prepare(
      "SELECT id, status, created_at, retired_at FROM signing_keys ORDER BY created_at, id");
  std::vector<SigningKeyInfo> out;
  while (s.step()) out.push_back({s.text(0), s.text(1), s.int64(2), s.optional_int64(3)});
  return out;
}

std::vector<SigningKeySecret> KeyStore::active_keys() {
  auto s = db_.prepare("SELECT id, secret FROM signing_keys WHERE status = 'active' ORDER BY id");
  std::vector<SigningKeySecret> out;
  while (s.step()) out.push_back({s.text(0), s.blob(1)});
  return out;
}

}  // namespace kpay::storage
