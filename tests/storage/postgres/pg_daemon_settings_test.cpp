// klarna-processor's PostgreSQL settings (daemon_settings.cpp): processor.store,
// postgresql.dsn (required), postgresql.password_file (private), and the
// claim lease the outbox worker then uses; settlements.fetch is accepted there.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "child_process.hpp"
#include "kpay/processor/daemon_settings.hpp"

using namespace kpay;

namespace {

// The key of the ConfigError that reading and checking `toml` throws ("" if none).
std::string refused_key(const std::string& toml) {
  try {
    auto config = core::Config::from_string(toml);
    auto s = processor::daemon_settings_from_config(config);
    processor::check_daemon_settings(config, s);
  } catch (const core::ConfigError& e) {
    return e.key();
  }
  return "";
}

}  // namespace

TEST(PostgresDaemonSettings, RefusedUntilComplete) {
  EXPECT_EQ(refused_key("[processor]\nstore = \"postgres\"\n"), "processor.store");
  EXPECT_EQ(refused_key("[processor]\nstore = \"postgresql\"\n[worker]\nenabled = false\n"),
            "postgresql.dsn");
  const auto dir = test::make_temp_dir("pg-daemon-settings");
  const std::string pw = dir + "/pg.password";
  std::ofstream(pw) << "secret\n";
  ::chmod(pw.c_str(), 0644);
  const std::string toml =
      "[processor]\nstore = \"postgresql\"\n[worker]\nenabled = false\n[postgresql]\n"
      "dsn = \"host=/tmp dbname=kpay\"\npassword_file = \"" +
      pw + "\"\nclaim_lease_ms = 5000\n";
  EXPECT_EQ(refused_key(toml), "postgresql.password_file");
  ::chmod(pw.c_str(), 0600);
  EXPECT_EQ(refused_key(toml), "");
  auto config = core::Config::from_string(toml);
  auto s = processor::daemon_settings_from_config(config);
  EXPECT_EQ(s.store, storage::StoreBackend::postgresql);
  EXPECT_EQ(s.worker.claim_lease, std::chrono::milliseconds(5000));
  EXPECT_EQ(s.postgresql.dsn, "host=/tmp dbname=kpay");
  EXPECT_EQ(s.postgresql.idle_in_transaction_timeout, std::chrono::seconds(30)) << "the default";
  auto idle = processor::daemon_settings_from_config(
      core::Config::from_string(toml + "idle_in_transaction_timeout_ms = 5000\n"));
  EXPECT_EQ(idle.postgresql.idle_in_transaction_timeout, std::chrono::milliseconds(5000));
  EXPECT_EQ(refused_key(toml + "idle_in_transaction_timeout_ms = -1\n"),
            "postgresql.idle_in_transaction_timeout_ms");
  // SQLite (the default) keeps the single-processor life: no lease.
  auto plain = processor::daemon_settings_from_config(core::Config::from_string(""));
  EXPECT_EQ(plain.store, storage::StoreBackend::sqlite);
  EXPECT_EQ(plain.worker.claim_lease, std::chrono::milliseconds(0));
  std::filesystem::remove_all(dir);
}

// Settlement reconciliation works on PostgreSQL (its ledger,
// pg_settlement_ledger.cpp): fetching reports with a worker is accepted.
TEST(PostgresDaemonSettings, SettlementFetchingIsAccepted) {
  const std::string toml =
      "[processor]\nstore = \"postgresql\"\n[postgresql]\ndsn = \"host=/tmp dbname=kpay\"\n"
      "[klarna]\nenvironment = \"custom\"\nbase_url = \"https://127.0.0.1:1\"\n"
      "[settlements]\nfetch = true\n";
  EXPECT_EQ(refused_key(toml), "");
  auto s = processor::daemon_settings_from_config(core::Config::from_string(toml));
  EXPECT_TRUE(s.worker.enabled);
  EXPECT_TRUE(s.worker.follow_ups.settlements.fetch);
}

// A claimed call must not be taken over while it can still be waiting for
// Klarna's answer: the lease is refused below 1.5 × the request timeout
// (the old default, 30 s against a 30 s timeout, was such a lease).
TEST(PostgresDaemonSettings, ClaimLeaseMustOutlastARequest) {
  const auto with = [](const std::string& lease, const std::string& timeout,
                       const std::string& worker) {
    return "[processor]\nstore = \"postgresql\"\n[postgresql]\ndsn = \"host=/tmp dbname=kpay\"\n" +
           lease + "[klarna]\nenvironment = \"custom\"\nbase_url = \"https://127.0.0.1:1\"\n" +
           timeout + "[worker]\nenabled = " + worker + "\n";
  };
  EXPECT_EQ(refused_key(with("claim_lease_ms = 30000\n", "", "true")), "postgresql.claim_lease_ms");
  EXPECT_EQ(refused_key(with("claim_lease_ms = 5000\n", "request_timeout_ms = 4000\n", "true")),
            "postgresql.claim_lease_ms");
  EXPECT_EQ(refused_key(with("claim_lease_ms = 6000\n", "request_timeout_ms = 4000\n", "true")),
            "");
  EXPECT_EQ(refused_key(with("", "", "true")), "");  // the defaults: 45 s against 30 s
  // No worker, no calls to cover.
  EXPECT_EQ(refused_key(with("claim_lease_ms = 5000\n", "", "false")), "");
  auto s = processor::daemon_settings_from_config(core::Config::from_string(with("", "", "true")));
  EXPECT_EQ(s.worker.claim_lease, std::chrono::milliseconds(45000));
}
