// Operators' actions in the audit trail (no Kafka): `klarnactl actions retry`
// requeues a failed call and records, in the same transaction, one `operator`
// event with who did it (--operator, else $SUDO_USER, $USER) and what it acted
// on; a refused retry records nothing; `audit list --by` finds them, and the
// database keeps them append-only. Dead-letter replays: klarnactl_dead_letters_test.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "child_process.hpp"
#include "klarnactl_run.hpp"
#include "kpay/core/wall_clock.hpp"
#include "kpay/storage/state_store.hpp"

using namespace kpay;
using kpay::test::klarnactl;

namespace {

class KlarnactlAudit : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::make_temp_dir("klarnactl-audit");
    db_ = dir_ + "/state.db";
    std::ofstream(dir_ + "/ctl.toml") << "[processor]\ndatabase = \"" << db_ << "\"\n";
    store_.emplace(db_);
    storage::CommandRow c;
    c.command_id = "cmd-refund-1";
    c.type = "refund";
    c.key = c.command_id;
    c.body_hash = "hash-refund-1";
    c.created_at_ms = c.updated_at_ms = core::now_ms();
    c.sender = "refund-service";
    c.sender_key_id = "k1";
    ASSERT_TRUE(store_->insert_command(c));
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // A refund call Klarna refused for good (failed after one attempt).
  std::int64_t failed_call(const std::string& command_id) {
    storage::OutboxRow o;
    o.operation = storage::OutboxOperation::refund_transaction;
    o.entity_id = "krn:payment:eu1:transaction:" + command_id;
    o.idempotency_key = "idem-" + command_id;
    o.request_body = R"({"amount":500})";
    o.created_by_event_id = "command:" + command_id;
    o.account_id = "krn:partner:global:account:test:A1";
    o.path = "/v2/accounts/A1/payment/transactions/T/refunds";
    o.command_id = command_id;
    o.amount = 500;
    const auto now = core::now_ms();
    o.created_at_ms = o.updated_at_ms = o.next_attempt_at_ms = now;
    EXPECT_TRUE(store_->insert_outbox(o));
    auto claimed = store_->claim_due_outbox(now, 10);
    EXPECT_EQ(claimed.size(), 1u);
    const auto id = claimed.at(0).id;
    store_->update_outbox(
        {id, storage::OutboxStatus::failed, 0, now, 403, "403 FORBIDDEN (error_id=e-1)", {}});
    return id;
  }
  test::CliResult run(std::vector<std::string> args) { return klarnactl(dir_, std::move(args)); }
  long long count(const std::string& where) {
    auto s = store_->database().prepare("SELECT COUNT(*) FROM audit_events WHERE " + where);
    s.step();
    return s.int64(0);
  }

  std::string dir_, db_;
  std::optional<storage::StateStore> store_;
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at < text.size()) {
    auto end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    if (end > at) out.push_back(text.substr(at, end - at));
    at = end + 1;
  }
  return out;
}

// setenv/unsetenv for one scope (klarnactl inherits the test's environment).
class EnvVar {
 public:
  EnvVar(const char* name, const char* value) : name_(name) {
    if (const char* v = std::getenv(name)) old_ = v;
    value ? setenv(name, value, 1) : unsetenv(name);
  }
  ~EnvVar() { old_ ? setenv(name_, old_->c_str(), 1) : unsetenv(name_); }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST_F(KlarnactlAudit, ActionsRetryIsAuditedWithTheOperatorAndWhatItActedOn) {
  const auto id = failed_call("cmd-refund-1");
  const auto sid = std::to_string(id);
  EnvVar sudo("SUDO_USER", nullptr);
  EnvVar user("USER", "os-carol");
  auto r = run({"--operator", "alice", "actions", "retry", sid});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("operator alice"), std::string::npos) << r.output;

  r = run({"audit", "list", "--json"});
  ASSERT_EQ(r.status, 0) << r.output;
  simdjson::dom::parser p;
  int operator_events = 0;
  for (const auto& line : lines_of(r.output)) {
    auto e = p.parse(line).value();
    if (std::string_view(e["kind"].get_string().value()) != "operator") continue;
    ++operator_events;
    EXPECT_EQ(std::string_view(e["operator"].get_string().value()), "alice") << line;
    EXPECT_EQ(std::string_view(e["status"].get_string().value()), "requeued") << line;
    EXPECT_EQ(e["outbox_id"].get_int64().value(), id) << line;
    EXPECT_EQ(std::string_view(e["command_id"].get_string().value()), "cmd-refund-1") << line;
    EXPECT_EQ(std::string_view(e["sender"].get_string().value()), "refund-service") << line;
    EXPECT_EQ(std::string_view(e["operation"].get_string().value()), "refund_transaction");
    EXPECT_EQ(e["attempt"].get_int64().value(), 1) << line;
    const std::string detail(e["detail"].get_string().value());
    EXPECT_NE(detail.find("actions retry"), std::string::npos) << line;
    EXPECT_NE(detail.find("(OS user os-carol)"), std::string::npos) << line;
  }
  EXPECT_EQ(operator_events, 1) << r.output;

  // Nothing to retry: exit 1, nothing recorded.
  r = run({"--operator", "alice", "actions", "retry", sid});
  EXPECT_EQ(r.status, 1) << r.output;
  r = run({"--operator", "alice", "actions", "retry", "999999"});
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_EQ(count("kind = 'operator'"), 1);

  // The row cannot be changed afterwards.
  EXPECT_THROW(store_->database().exec("UPDATE audit_events SET operator = 'mallory'"),
               storage::SqliteError);
}

TEST_F(KlarnactlAudit, WithoutOperatorTheOsUserIsRecordedSudoUserFirst) {
  const auto a = failed_call("cmd-a");
  const auto b = failed_call("cmd-b");
  {
    EnvVar sudo("SUDO_USER", "bob");
    EnvVar user("USER", "root");
    auto r = run({"actions", "retry", std::to_string(a)});
    ASSERT_EQ(r.status, 0) << r.output;
  }
  {
    EnvVar sudo("SUDO_USER", nullptr);
    EnvVar user("USER", "dave");
    auto r = run({"actions", "retry", std::to_string(b)});
    ASSERT_EQ(r.status, 0) << r.output;
  }
  EXPECT_EQ(count("kind = 'operator' AND operator = 'bob' AND outbox_id = " + std::to_string(a) +
                  " AND detail NOT LIKE '%OS user%'"),
            1);
  EXPECT_EQ(count("kind = 'operator' AND operator = 'dave' AND outbox_id = " + std::to_string(b)),
            1);
  // One event per retry: no second (trigger) row without an operator.
  EXPECT_EQ(count("kind = 'operator'"), 2);
  EXPECT_EQ(count("kind = 'operator' AND operator IS NULL"), 0);

  auto r = run({"audit", "list", "--by", "dave"});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("OPERATOR"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("dave"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("bob"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("cmd-a"), std::string::npos) << r.output;
}

TEST_F(KlarnactlAudit, AnEmptyOrControlCharacterOperatorIsAUsageError) {
  const auto id = std::to_string(failed_call("cmd-c"));
  EXPECT_EQ(run({"--operator", "", "actions", "retry", id}).status, 2);
  EXPECT_EQ(run({"--operator", "eve\nrequeued", "actions", "retry", id}).status, 2);
  EXPECT_EQ(count("kind = 'operator'"), 0);
  auto row = store_->find_outbox(std::stoll(id));
  EXPECT_EQ(row->status, storage::OutboxStatus::failed);
}

}  // namespace
