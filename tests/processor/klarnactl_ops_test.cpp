// klarnactl's strictness against a database the applier wrote (no Kafka):
// unknown configuration keys refused (exit 2, the key named) unless the
// receiver or the processor reads them; --limit below 1 refused; payments list
// filters; --json on listings; --help everywhere; the processor's poison
// messages listed and shown as dead letters (replay: klarnactl_dead_letters_test).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "child_process.hpp"
#include "klarnactl_run.hpp"
#include "kpay/processor/batch_applier.hpp"
#include "kpay/storage/state_store.hpp"
#include "lifecycles.hpp"

using namespace kpay;
using kpay::test::klarnactl;

namespace {

constexpr std::string_view kTokenPoison =
    R"({"metadata":{"event_type":"payment.request.state-change.completed","event_id":"tok-1",)"
    R"("event_version":"v9","occurred_at":"2026-01-01T00:00:00Z"},"payload":{)"
    R"("payment_request_id":"krn:payment:eu1:request:tok","state_context":{)"
    R"("klarna_network_session_token":"kns-very-secret","Payment_Token" : "pt-secret",)"
    R"("note":"token"}}})";

class KlarnactlOps : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::make_temp_dir("klarnactl-ops");
    db_ = dir_ + "/state.db";
    events_ = test::make_lifecycles(6, topics_, 3);
    storage::StateStore store(db_);
    processor::BatchApplier applier(store, topics_);
    std::vector<processor::InputMessage> batch;
    std::int64_t offset = 0;
    for (const auto& e : events_) batch.push_back({e.topic, 0, offset++, e.key, e.body});
    for (const auto& p : test::make_poison(topics_)) {
      batch.push_back({p.topic, 1, offset++, p.key, p.body});
    }
    // Poison carrying tokens (an event_version no applier knows), one cut short.
    batch.push_back({topics_.payment_requests, 2, offset++, "krn:payment:eu1:request:tok",
                     std::string(kTokenPoison)});
    batch.push_back({topics_.payment_requests, 2, offset++, "cut",
                     R"({"klarna_network_session_token" : "kns-cut-secre)"});
    applier.apply(batch);
    write_config("");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void write_config(const std::string& extra) {
    std::ofstream(dir_ + "/ctl.toml") << "[processor]\ndatabase = \"" << db_ << "\"\n" << extra;
  }
  test::CliResult run(std::vector<std::string> args) { return klarnactl(dir_, std::move(args)); }

  static std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
  }

  std::string dir_, db_;
  klarna::Topics topics_;
  std::vector<test::TestEvent> events_;
};

// Every row's value in `column` starts under the header's column name.
void expect_aligned(const std::string& output, const std::string& column) {
  std::istringstream lines(output);
  std::string header, line;
  std::getline(lines, header);
  const auto col = header.find(column);
  ASSERT_NE(col, std::string::npos) << output;
  while (std::getline(lines, line)) {
    ASSERT_GT(line.size(), col) << line;
    EXPECT_EQ(line[col - 1], ' ') << line;
    EXPECT_NE(line[col], ' ') << line;
  }
}

}  // namespace

TEST_F(KlarnactlOps, UnknownConfigurationKeysAreRefusedNamingTheKey) {
  write_config("databse_typo = 1\n");
  auto typo = run({"payments", "list"});
  EXPECT_EQ(typo.status, 2) << typo.output;
  EXPECT_NE(typo.output.find("processor.databse_typo"), std::string::npos) << typo.output;
  EXPECT_NE(typo.output.find("unknown key"), std::string::npos) << typo.output;

  write_config("");
  auto set_typo = run({"payments", "list", "--set", "kafka.bootstrap_server=x:1"});
  EXPECT_EQ(set_typo.status, 2) << set_typo.output;
  EXPECT_NE(set_typo.output.find("kafka.bootstrap_server"), std::string::npos) << set_typo.output;

  // Keys of either program are known: a receiver key in the processor's file,
  // the processor's own keys, librdkafka's pass-through table.
  write_config(
      "sqlite_cache_mib = 16\n[keys]\ndatabase = \"/nonexistent/keys.db\"\n"
      "[worker]\ndeadline_warning_ms = 600000\n[kafka.properties]\n\"socket.timeout.ms\" = 9000\n"
      "[topics]\ndead_letter = \"klarna.dead-letter\"\n");
  auto known = run({"payments", "list"});
  EXPECT_EQ(known.status, 0) << known.output;
}

TEST_F(KlarnactlOps, TheShippedConfigurationFilesAreAccepted) {
  for (const char* file : {"processor.toml", "receiver.toml"}) {
    const std::string path = std::string(KPAY_SOURCE_DIR) + "/config/" + file;
    const std::string out = dir_ + "/shipped-" + file + ".txt";
    test::ChildProcess ctl({test::binary("tools/klarnactl"), "--config", path, "--set",
                            "processor.database=" + db_, "payments", "list"},
                           out);
    EXPECT_EQ(ctl.wait(std::chrono::seconds(20)), 0) << file << ": " << test::read_file(out);
  }
}

TEST_F(KlarnactlOps, LimitsBelowOneAreUsageErrors) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"payments", "list", "--limit", "-1"},
        {"payments", "list", "--limit", "0"},
        {"disputes", "list", "--limit", "-1"},
        {"dead-letters", "list", "--limit", "0"},
        {"actions", "list", "--limit", "0"},
        {"actions", "retry", "0"},
        {"disputes", "due", "--window-hours", "0"}}) {
    auto r = run(args);
    EXPECT_EQ(r.status, 2) << args[0] << " " << args[1] << " " << args.back() << ": " << r.output;
  }
  auto one = run({"payments", "list", "--limit", "1"});
  ASSERT_EQ(one.status, 0) << one.output;
  EXPECT_EQ(lines(one.output).size(), 2u) << one.output;  // header + one row
}

TEST_F(KlarnactlOps, BadTimesAndOptionsWithoutTheirModeAreUsageErrors) {
  auto now = run({"disputes", "due", "--now", "yesterday"});
  EXPECT_EQ(now.status, 2) << now.output;
  auto since = run({"payments", "list", "--since", "last week"});
  EXPECT_EQ(since.status, 2) << since.output;
  auto kind = run({"payments", "list", "--kind", "refund"});
  EXPECT_EQ(kind.status, 2) << kind.output;
  auto remote_only = run({"disputes", "list", "--state", "INITIATED"});
  EXPECT_EQ(remote_only.status, 2) << remote_only.output;
  auto bad_id = run({"dead-letters", "show", "no-coordinates"});
  EXPECT_EQ(bad_id.status, 2) << bad_id.output;
  auto unknown = run({"dead-letters", "show", topics_.payment_requests + "/0/999"});
  EXPECT_EQ(unknown.status, 1) << unknown.output;
  auto neither = run({"dead-letters", "replay"});
  EXPECT_EQ(neither.status, 2) << neither.output;
}

TEST_F(KlarnactlOps, PaymentsListFiltersByKindStateAndSince) {
  auto all = run({"payments", "list", "--limit", "1000"});
  ASSERT_EQ(all.status, 0) << all.output;
  expect_aligned(all.output, "STATE");
  expect_aligned(all.output, "AMOUNT");

  auto transactions = run({"payments", "list", "--kind", "payment_transaction"});
  ASSERT_EQ(transactions.status, 0) << transactions.output;
  auto rows = lines(transactions.output);
  ASSERT_GT(rows.size(), 1u);
  for (std::size_t i = 1; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i].rfind("payment_transaction ", 0), 0u) << rows[i];
  }

  auto authorized = run({"payments", "list", "--state", "authorized", "--json"});
  ASSERT_EQ(authorized.status, 0) << authorized.output;
  rows = lines(authorized.output);
  ASSERT_FALSE(rows.empty());
  for (const auto& r : rows) {
    EXPECT_EQ(r.front(), '{') << r;
    EXPECT_NE(r.find(R"("state":"AUTHORIZED")"), std::string::npos) << r;
  }
  EXPECT_LT(rows.size(), lines(all.output).size() - 1);

  auto future = run({"payments", "list", "--since", "2100-01-01T00:00:00Z"});
  ASSERT_EQ(future.status, 0) << future.output;
  EXPECT_EQ(lines(future.output).size(), 1u) << future.output;  // the header only
  auto past = run({"payments", "list", "--since", "2000-01-01T00:00:00Z", "--limit", "1000"});
  std::size_t dated = 0;  // rows whose time is known ("-" when never stated)
  for (const auto& l : lines(all.output)) dated += l.back() != '-';
  EXPECT_EQ(lines(past.output).size(), dated) << past.output << all.output;
}

TEST_F(KlarnactlOps, PoisonMessagesAreListedAndShownAsDeadLetters) {
  auto list = run({"dead-letters", "list", "--source", "processor"});
  ASSERT_EQ(list.status, 0) << list.output;
  expect_aligned(list.output, "SOURCE");
  expect_aligned(list.output, "REASON");
  EXPECT_EQ(lines(list.output).size(), 6u) << list.output;  // header + 5 poison messages
  EXPECT_NE(list.output.find("not_json"), std::string::npos) << list.output;

  auto json = run({"dead-letters", "list", "--source", "processor", "--json"});
  ASSERT_EQ(json.status, 0) << json.output;
  for (const auto& l : lines(json.output)) {
    EXPECT_EQ(l.front(), '{') << l;
    EXPECT_NE(l.find(R"("source":"processor")"), std::string::npos) << l;
    EXPECT_NE(l.find(R"("replayed":null)"), std::string::npos) << l;
    EXPECT_EQ(l.find(R"("bytes":0,)"), std::string::npos) << "the size of the bytes kept: " << l;
  }

  // The envelope-less one: id TOPIC/1/OFFSET; its raw bytes and key.
  std::string id;
  for (const auto& l : lines(list.output)) {
    if (l.find("not_json") != std::string::npos && l.find("/1/") != std::string::npos) {
      id = l.substr(0, l.find(' '));
    }
  }
  ASSERT_EQ(id.rfind(topics_.payment_requests + "/1/", 0), 0u) << list.output;
  auto show = run({"dead-letters", "show", id});
  ASSERT_EQ(show.status, 0) << show.output;
  EXPECT_NE(show.output.find("reason:   not_json"), std::string::npos) << show.output;
  EXPECT_NE(show.output.find("key:      garbage"), std::string::npos) << show.output;
  EXPECT_NE(show.output.find("{not json"), std::string::npos) << show.output;
  auto show_json = run({"dead-letters", "show", id, "--json"});
  ASSERT_EQ(show_json.status, 0) << show_json.output;
  EXPECT_NE(show_json.output.find(R"("message":"{not json")"), std::string::npos)
      << show_json.output;
  EXPECT_NE(show_json.output.find(R"("key":"garbage")"), std::string::npos) << show_json.output;
}

TEST_F(KlarnactlOps, EveryListingAndShowingHasJsonAndEveryCommandHasHelp) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"payments", "list", "--json"},
        {"payments", "show", events_.front().key, "--json"},
        {"actions", "list", "--json"},
        {"actions", "overdue", "--json"},
        {"disputes", "list", "--json"},
        {"disputes", "due", "--json"},
        {"dead-letters", "list", "--source", "processor", "--json"}}) {
    auto r = run(args);
    EXPECT_EQ(r.status, 0) << args[0] << " " << args[1] << ": " << r.output;
    for (const auto& l : lines(r.output)) EXPECT_EQ(l.front(), '{') << args[0] << ": " << l;
  }
  for (const std::vector<std::string>& args : {std::vector<std::string>{"--help"},
                                               {"payments", "--help"},
                                               {"payments", "list", "--help"},
                                               {"payments", "show", "--help"},
                                               {"actions", "retry", "--help"},
                                               {"disputes", "due", "--help"},
                                               {"dead-letters", "--help"},
                                               {"dead-letters", "list", "--help"},
                                               {"dead-letters", "show", "--help"},
                                               {"dead-letters", "replay", "--help"},
                                               {"capture", "--help"},
                                               {"authorize", "--help"}}) {
    auto r = run(args);
    EXPECT_EQ(r.status, 0) << args[0] << ": " << r.output;
    EXPECT_NE(r.output.find("Usage:"), std::string::npos) << r.output;
  }
}

TEST_F(KlarnactlOps, ShownDeadLettersNeverPrintTokenValues) {
  auto list = run({"dead-letters", "list", "--source", "processor", "--json"});
  ASSERT_EQ(list.status, 0) << list.output;
  std::vector<std::string> ids;  // partition 2: the two carrying tokens
  for (const auto& l : lines(list.output)) {
    const auto at = l.find(R"("id":")") + 6;
    const auto id = l.substr(at, l.find('"', at) - at);
    if (id.rfind(topics_.payment_requests + "/2/", 0) == 0) ids.push_back(id);
  }
  ASSERT_EQ(ids.size(), 2u) << list.output;
  for (const auto& id : ids) {
    for (const bool json : {false, true}) {
      std::vector<std::string> args = {"dead-letters", "show", id};
      if (json) args.push_back("--json");
      auto show = run(args);
      ASSERT_EQ(show.status, 0) << show.output;
      EXPECT_EQ(show.output.find("secre"), std::string::npos) << show.output;
      EXPECT_NE(show.output.find("[redacted]"), std::string::npos) << show.output;
      if (!json && show.output.find("tok-1") != std::string::npos) {
        // Only token members: other strings (even the word "token") stay.
        EXPECT_NE(show.output.find(R"("note":"token")"), std::string::npos) << show.output;
        EXPECT_NE(show.output.find(R"("Payment_Token" : "[redacted]")"), std::string::npos)
            << show.output;
      }
    }
  }
}
