#include "kpay/storage/key_store.hpp"

#include <gtest/gtest.h>

#include <array>
#include <filesystem>

#include "kpay/storage/migrations.hpp"

using namespace kpay::storage;

namespace {
std::string temp_db(const char* name) {
  auto p = std::filesystem::temp_directory_path() /
           (std::string("kpay-") + name + "-" + std::to_string(getpid()) + ".db");
  std::filesystem::remove(p);
  std::filesystem::remove(p.string() + "-wal");
  std::filesystem::remove(p.string() + "-shm");
  return p.string();
}
}  // namespace

TEST(Sqlite, WalAndFullSync) {
  auto path = temp_db("pragma");
  auto db = Database::open(path);
  auto jm = db.prepare("PRAGMA journal_mode");
  ASSERT_TRUE(jm.step());
  EXPECT_EQ(jm.text(0), "wal");
  auto sync = db.prepare("PRAGMA synchronous");
  ASSERT_TRUE(sync.step());
  EXPECT_EQ(sync.int64(0), 2);  // FULL
}

TEST(Migrations, AppliesOnceAndRefusesNewerDatabase) {
  auto path = temp_db("migrations");
  constexpr std::array v2 = {Migration{1, "a", "CREATE TABLE a (x)"},
                             Migration{2, "b", "CREATE TABLE b (x)"}};
  constexpr std::array v1 = {Migration{1, "a", "CREATE TABLE a (x)"}};
  {
    auto db = Database::open(path);
    EXPECT_EQ(migrate(db, "demo", v2), 2);
    EXPECT_EQ(migrate(db, "demo", v2), 2);  // idempotent
  }
  auto db = Database::open(path);
  try {
    migrate(db, "demo", v1);
    FAIL();
  } catch (const SchemaTooNewError& e) {
    EXPECT_NE(std::string(e.what()).find("newer than this binary supports"), std::string::npos);
  }
}

TEST(KeyStore, AddListRetireAndSecretsStayByteExact) {
  auto path = temp_db("keys");
  auto db = Database::open(path);
  KeyStore keys(db);
  std::string secret = " secret with spaces and\nnewline ";
  EXPECT_EQ(keys.add("krn:k1", secret), KeyStore::AddResult::added);
  EXPECT_EQ(keys.add("krn:k1", "other"), KeyStore::AddResult::already_exists);
  EXPECT_EQ(keys.add("krn:k2", "two"), KeyStore::AddResult::added);
  EXPECT_EQ(keys.add("", "x"), KeyStore::AddResult::invalid);

  auto active = keys.active_keys();
  ASSERT_EQ(active.size(), 2u);
  EXPECT_EQ(active[0].secret, secret);

  EXPECT_TRUE(keys.retire("krn:k1"));
  EXPECT_FALSE(keys.retire("krn:k1"));
  EXPECT_FALSE(keys.retire("nope"));
  ASSERT_EQ(keys.active_keys().size(), 1u);
  auto listed = keys.list();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].status, "retired");
  EXPECT_TRUE(listed[0].retired_at_ms.has_value());
}

TEST(KeyStore, DataVersionSeesOtherConnections) {
  auto path = temp_db("dv");
  auto a = Database::open(path);
  KeyStore ka(a);
  auto before = a.data_version();
  auto b = Database::open(path);
  KeyStore kb(b);
  kb.add("k", "s");
  EXPECT_NE(a.data_version(), before);
}

TEST(KeyStore, AtMostFiftyActive) {
  auto path = temp_db("fifty");
  auto db = Database::open(path);
  KeyStore keys(db);
  for (int i = 0; i < 50; ++i) ASSERT_EQ(keys.add("k" + std::to_string(i), "s"), KeyStore::AddResult::added);
  EXPECT_EQ(keys.add("k50", "s"), KeyStore::AddResult::too_many_active);
  keys.retire("k0");
  EXPECT_EQ(keys.add("k50", "s"), KeyStore::AddResult::added);
}
