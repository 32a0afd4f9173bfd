#include "kpay/storage/sender_store.hpp"

#include <array>
#include <chrono>

#include "kpay/core/wall_clock.hpp"
#include "kpay/storage/migrations.hpp"

namespace kpay::storage {

namespace {
constexpr std::array kMigrations = {
    Migration{1, "command sender keys",
              "CREATE TABLE sender_keys ("
              " sender TEXT NOT NULL,"
              " key_id TEXT NOT NULL,"
              " secret BLOB NOT NULL,"
              " status TEXT NOT NULL CHECK (status IN ('active', 'retired')),"
              " created_at INTEGER NOT NULL,"
              " retired_at INTEGER,"
              " PRIMARY KEY (sender, key_id))"},
};

using core::now_ms;
}  // namespace

SenderStore::SenderStore(Database& db) : db_(db) {
  migrate(db_, "senders", kMigrations);
}

std::size_t SenderStore::active_count(const std::string& sender) {
  auto count =
      db_.prepare("SELECT COUNT(*) FROM sender_keys WHERE sender = ? AND status = 'active'");
  count.bind(1, sender);
  count.step();
  return static_cast<std::size_t>(count.int64(0));
}

SenderStore::AddResult SenderStore::add(const std::string& sender, const std::string& key_id,
                                        const std::string& secret) {
  if (!valid_id(sender) || !valid_id(key_id) || secret.size() < 16) return AddResult::invalid;
  Transaction tx(db_);
  auto exists = db_.prepare("SELECT 1 FROM sender_keys WHERE sender = ? AND key_id = ?");
  exists.bind(1, sender).bind(2, key_id);
  if (exists.step()) return AddResult::already_exists;
  if (active_count(sender) >= kMaxActiveKeysPerSender) return AddResult::too_many_active;
  auto ins = db_.prepare(
      "INSERT INTO sender_keys (sender, key_id, secret, status, created_at)"
      " VALUES (?, ?, ?, 'active', ?)");
  ins.bind(1, sender).bind(2, key_id).bind_blob(3, secret).bind(4, now_ms());
  ins.run();
  tx.commit();
  return AddResult::added;
}

bool SenderStore::retire(const std::string& sender, const std::string& key_id) {
  auto s = db_.prepare(
      "UPDATE sender_keys SET status = 'retired', retired_at = ?"
      " WHERE sender = ? AND key_id = ? AND status = 'active'");
  s.bind(1, now_ms()).bind(2, sender).bind(3, key_id);
  s.run();
  return db_.changes() == 1;
}

std::vector<SenderKeyInfo> SenderStore::list(const std::string& sender) {
  auto s = db_.prepare(
      "SELECT sender, key_id, status, created_at, retired_at FROM sender_keys"
      " WHERE ? = '' OR sender = ? ORDER BY sender, created_at, key_id");
  s.bind(1, sender).bind(2, sender);
  std::vector<SenderKeyInfo> out;
  while (s.step()) {
    out.push_back({s.text(0), s.text(1), s.text(2), s.int64(3), s.optional_int64(4)});
  }
  return out;
}

std::vector<SenderKeySecret> SenderStore::active_keys() {
  auto s = db_.prepare(
      "SELECT sender, key_id, secret FROM sender_keys WHERE status = 'active'"
      " ORDER BY sender, key_id");
  std::vector<SenderKeySecret> out;
  while (s.step()) out.push_back({s.text(0), s.text(1), s.blob(2)});
  return out;
}

}  // namespace kpay::storage
