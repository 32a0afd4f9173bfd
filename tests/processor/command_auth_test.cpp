// Signed commands below the Kafka layer: the kpay-signature grammar, every
// authentication outcome, the [commands]/[senders.*] settings checked at
// start (the binary exits 2 naming the key), the sender key database's file
// mode, the audit trail's append-only rule, and the batch applier refusing a
// command (result, dead letter, no inbox row, nothing queued).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "child_process.hpp"
#include "kpay/core/config.hpp"
#include "kpay/core/log.hpp"
#include "kpay/core/wall_clock.hpp"
#include "kpay/klarna/signature.hpp"
#include "kpay/processor/batch_applier.hpp"
#include "kpay/processor/command_auth.hpp"
#include "kpay/processor/sender_keys.hpp"
#include "kpay/storage/audit_log.hpp"
#include "kpay/storage/sender_store.hpp"
#include "kpay/storage/state_store.hpp"

using namespace kpay;
using namespace kpay::processor;

namespace {

const std::string kBody = R"({"command_id":"c-1","type":"void","payment_transaction_id":"t-1"})";

SenderKeyRing ring() {
  SenderKeyRing r;
  r.add_active("refunds", "k1", "refunds-secret-one");
  r.add_active("refunds", "k2", "refunds-secret-two");
  r.add_retired("refunds", "k0");
  return r;
}

std::string reason(const std::variant<Authenticated, AuthFailure>& v) {
  if (const auto* f = std::get_if<AuthFailure>(&v)) return f->reason;
  return "ok:" + std::get<Authenticated>(v).sender + "/" + std::get<Authenticated>(v).key_id;
}

CommandHeaders headers(std::optional<std::string> sender, std::optional<std::string> sig) {
  return {std::move(sender), std::move(sig)};
}

TEST(CommandSignature, HeaderGrammarIsExact) {
  const std::string hex(64, 'a');
  auto ok = parse_signature_header("kid=k1;v1=" + hex);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->key_id, "k1");
  EXPECT_EQ(ok->hex, hex);
  const std::vector<std::string> bad_values = {"",
                                               "v1=" + hex,
                                               "kid=k1",
                                               "kid=k1;v1=" + std::string(63, 'a'),
                                               "kid=k1;v1=" + std::string(64, 'A'),
                                               "kid=;v1=" + hex,
                                               "kid=k 1;v1=" + hex,
                                               "kid=k1;v1=" + hex + ";",
                                               " kid=k1;v1=" + hex,
                                               "kid=k1;v2=" + hex,
                                               "v1=" + hex + ";kid=k1"};
  for (const auto& bad : bad_values) {
    EXPECT_FALSE(parse_signature_header(bad)) << bad;
  }
  EXPECT_EQ(sign_command("k1", "s", kBody), "kid=k1;v1=" + klarna::hmac_sha256_hex("s", kBody));
}

TEST(CommandSignature, EveryOutcomeOfAuthentication) {
  const auto r = ring();
  const auto good1 = sign_command("k1", "refunds-secret-one", kBody);
  const auto good2 = sign_command("k2", "refunds-secret-two", kBody);
  EXPECT_EQ(reason(authenticate(r, headers("refunds", good1), kBody, false)), "ok:refunds/k1");
  EXPECT_EQ(reason(authenticate(r, headers("refunds", good2), kBody, false)), "ok:refunds/k2");
  EXPECT_EQ(reason(authenticate(r, headers({}, {}), kBody, false)), "unsigned");
  EXPECT_EQ(reason(authenticate(r, headers({}, {}), kBody, true)), "ok:/");
  EXPECT_EQ(reason(authenticate(r, headers("refunds", {}), kBody, true)), "malformed_signature")
      << "allow_unsigned never lets a half-signed command through";
  EXPECT_EQ(reason(authenticate(r, headers({}, good1), kBody, true)), "malformed_signature");
  EXPECT_EQ(reason(authenticate(r, headers("nobody", good1), kBody, false)), "unknown_sender");
  EXPECT_EQ(
      reason(authenticate(r, headers("refunds", sign_command("k9", "x", kBody)), kBody, false)),
      "unknown_key");
  EXPECT_EQ(
      reason(authenticate(r, headers("refunds", sign_command("k0", "old", kBody)), kBody, false)),
      "retired_key");
  EXPECT_EQ(reason(authenticate(r, headers("refunds", good1), kBody + " ", false)), "bad_signature")
      << "one byte more in the value";
  EXPECT_EQ(
      reason(authenticate(r, headers("refunds", sign_command("k1", "guess", kBody)), kBody, false)),
      "bad_signature");
}

TEST(CommandSignature, IssuedAtIsReadWhenPresent) {
  EXPECT_FALSE(std::get<std::optional<std::int64_t>>(command_issued_at(kBody)));
  auto at = command_issued_at(R"({"command_id":"c","issued_at":"2026-12-06T10:00:00Z"})");
  ASSERT_TRUE(std::get<std::optional<std::int64_t>>(at));
  EXPECT_EQ(*std::get<std::optional<std::int64_t>>(at), 1796551200000);
  EXPECT_TRUE(std::holds_alternative<std::string>(
      command_issued_at(R"({"command_id":"c","issued_at":"yesterday"})")));
}

core::Config config(const std::string& toml) {
  return core::Config::from_string(toml);
}

std::string config_error(const std::string& toml) {
  try {
    auto c = config(toml);
    command_policy_from_config(c);
    c.reject_unknown_keys();
  } catch (const core::ConfigError& e) {
    return e.key();
  }
  return "";
}

TEST(CommandPolicySettings, ReadsPermissionsLimitsAndAges) {
  auto p = command_policy_from_config(config(R"(
[commands]
senders = ["refunds"]
[commands.max_age_s]
authorize = 120
sdk_token = 60
[senders.refunds]
commands = ["refund", "sdk_token"]
partner_accounts = ["*"]
[senders.refunds.limits.EUR]
per_command = 100
per_day = 1000
)"));
  EXPECT_FALSE(p.allow_unsigned);
  ASSERT_TRUE(p.senders.contains("refunds"));
  EXPECT_EQ(p.senders["refunds"].commands, (std::set<std::string>{"refund", "sdk_token"}));
  EXPECT_EQ(*p.senders["refunds"].limits["EUR"].per_day, 1000);
  EXPECT_EQ(p.max_age_for("authorize"), std::chrono::seconds(120));
  EXPECT_EQ(p.max_age_for("sdk_token"), std::chrono::seconds(60));
  EXPECT_EQ(p.max_age_for("capture"), std::chrono::hours(24 * 7));
  EXPECT_EQ(command_policy_from_config(config("")).max_age_for("authorize"),
            std::chrono::minutes(15));
}

TEST(CommandPolicySettings, BadSettingsNameTheirKey) {
  const std::string head =
      "[commands]\nsenders = [\"s\"]\n[senders.s]\npartner_accounts = [\"*\"]\n";
  EXPECT_EQ(config_error(head + "commands = [\"refund\", \"teleport\"]\n"), "senders.s.commands");
  EXPECT_EQ(config_error(head + "commands = []\n"), "senders.s.commands");
  EXPECT_EQ(config_error(head + "commands = [\"*\"]\n[senders.s.limits.EUR]\nper_command = 0\n"),
            "senders.s.limits.EUR.per_command");
  EXPECT_EQ(
      config_error(head +
                   "commands = [\"*\"]\n[senders.s.limits.EUR]\nper_command = 10\nper_day = 5\n"),
      "senders.s.limits.EUR.per_command");
  EXPECT_EQ(config_error(head + "commands = [\"*\"]\n[senders.s.limits.EUR]\nper_comand = 10\n"),
            "senders.s.limits.EUR.per_comand");
  EXPECT_EQ(config_error(head + "commands = [\"*\"]\n[senders.s.limits.XXX]\nper_day = 10\n"),
            "senders.s.limits.XXX.per_day");
  EXPECT_EQ(config_error("[commands.max_age_s]\nteleport = 5\n"), "commands.max_age_s.teleport");
  EXPECT_EQ(config_error("[commands.max_age_s]\nauthorize = 0\n"), "commands.max_age_s.authorize");
  EXPECT_EQ(config_error("[senders.unlisted]\ncommands = [\"*\"]\n"), "senders.unlisted.commands")
      << "a section not in commands.senders is refused";
  EXPECT_EQ(config_error("[commands]\nsenders = [\"bad id\"]\n"), "commands.senders");
  EXPECT_EQ(config_error(head + "commands = [\"*\"]\n"), "");
}

TEST(CommandPolicySettings, TheBinaryExitsTwoNamingTheKey) {
  const auto dir = test::make_temp_dir("command-auth-binary");
  auto run = [&](std::vector<std::string> args, const std::string& log) {
    args.insert(args.begin(), test::binary("processor/klarna-processor"));
    args.insert(args.end(), {"--set", "processor.database=" + dir + "/state.db", "--set",
                             "worker.enabled=false", "--set",
                             "commands.senders_database=" + dir + "/senders.db"});
    test::ChildProcess child(args, log);
    return child.wait(std::chrono::seconds(30));
  };
  EXPECT_EQ(run({"--set", "commands.max_age_s.teleport=5"}, dir + "/a.log"), 2);
  EXPECT_NE(test::read_file(dir + "/a.log").find("commands.max_age_s.teleport"), std::string::npos)
      << test::read_file(dir + "/a.log");
  // A sender key database others may read is refused at start.
  {
    storage::Database::Options o;
    auto db = storage::Database::open(dir + "/senders.db", o);
    storage::SenderStore(db).add("s", "k1", "secret-0123456789abcdef");
  }
  ::chmod((dir + "/senders.db").c_str(), 0644);
  EXPECT_EQ(run({}, dir + "/b.log"), 2);
  EXPECT_NE(test::read_file(dir + "/b.log").find("commands.senders_database"), std::string::npos)
      << test::read_file(dir + "/b.log");
  EXPECT_EQ(test::read_file(dir + "/b.log").find("secret-0123456789abcdef"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(SenderKeys, ALaxFileIsRefusedOnReloadAndTheOldKeysKept) {
  const auto dir = test::make_temp_dir("sender-keys");
  const auto path = dir + "/senders.db";
  {
    storage::Database::Options o;
    auto db = storage::Database::open(path, o);
    storage::SenderStore(db).add("s", "k1", "secret-0123456789abcdef");
  }
  ::chmod(path.c_str(), 0600);
  SenderKeySource source(path, std::chrono::seconds(60));
  EXPECT_EQ(source.current()->active_keys(), 1u);
  {
    auto db = storage::Database::open(path, {});
    storage::SenderStore store(db);
    store.add("s", "k2", "secret-2-0123456789abcdef");
    store.retire("s", "k1");
  }
  ::chmod(path.c_str(), 0644);
  EXPECT_FALSE(source.reload());
  EXPECT_EQ(source.current()->active_keys(), 1u);
  ASSERT_NE(source.current()->find("s", "k1"), nullptr);
  EXPECT_TRUE(source.current()->find("s", "k1")->key) << "the old ring is kept";
  ::chmod(path.c_str(), 0600);
  EXPECT_TRUE(source.reload());
  EXPECT_FALSE(source.current()->find("s", "k1")->key) << "k1 retired";
  EXPECT_TRUE(source.current()->find("s", "k2")->key);
  std::filesystem::remove_all(dir);
}

TEST(AuditTrail, RowsCannotBeChangedOrDeleted) {
  const auto dir = test::make_temp_dir("audit");
  storage::StateStore store(dir + "/state.db");
  storage::AuditLog log(store.database());
  storage::AuditEvent e;
  e.at_ms = 1;
  e.kind = "operator";
  e.status = "requeued";
  const auto seq = log.append(e);
  EXPECT_THROW(store.database().exec("UPDATE audit_events SET status = 'x'"), storage::SqliteError);
  EXPECT_THROW(store.database().exec("DELETE FROM audit_events"), storage::SqliteError);
  auto rows = log.list({});
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].seq, seq);
  EXPECT_EQ(rows[0].status, "requeued");
  std::filesystem::remove_all(dir);
}

TEST(CommandRefusal, ARefusedCommandIsAnsweredDeadLetteredAndNeverQueued) {
  const auto dir = test::make_temp_dir("refusal");
  storage::StateStore store(dir + "/state.db");
  klarna::Topics topics;
  BatchApplier applier(store, topics);
  auto security = std::make_shared<CommandSecurity>();
  auto keys = std::make_shared<const SenderKeyRing>(ring());
  security->keys = [keys] { return keys; };
  applier.secure_commands(security);

  InputMessage m;
  m.topic = topics.commands;
  m.offset = 7;
  m.key = "t-1";
  m.value = kBody;
  m.headers = headers("refunds", sign_command("k1", "wrong", kBody));
  auto out = applier.apply(std::span<const InputMessage>(&m, 1));
  EXPECT_EQ(out.commands_refused["bad_signature"], 1u);
  ASSERT_EQ(out.publications.size(), 2u);
  EXPECT_EQ(out.publications[0].topic, topics.processor_dead_letter);
  EXPECT_EQ(out.publications[0].value, kBody) << "the raw message is kept";
  EXPECT_NE(out.publications[1].value.find(R"("status":"rejected")"), std::string::npos);
  EXPECT_NE(out.publications[1].value.find(R"("command_id":"c-1")"), std::string::npos);
  EXPECT_NE(out.publications[1].value.find("bad_signature"), std::string::npos);
  EXPECT_FALSE(store.find_command("c-1")) << "the forger does not take the command_id";
  EXPECT_TRUE(store.outbox("t-1").empty());

  // The same message, signed: it reaches the command applier (which rejects
  // the void of an unknown transaction, but as a command of its sender).
  m.offset = 8;
  m.headers = headers("refunds", sign_command("k1", "refunds-secret-one", kBody));
  out = applier.apply(std::span<const InputMessage>(&m, 1));
  EXPECT_TRUE(out.commands_refused.empty() ||
              out.commands_refused.begin()->first == "not_permitted");
  EXPECT_TRUE(store.find_command("c-1"));
  std::filesystem::remove_all(dir);
}

// The authorize of a sender with a per-day limit of 1500 EUR, signed.
InputMessage limited_authorize(const klarna::Topics& topics, const std::string& id,
                               std::int64_t amount, std::int64_t offset) {
  InputMessage m;
  m.topic = topics.commands;
  m.offset = offset;
  m.key = "ref-" + id;
  m.value = R"({"command_id":")" + id +
            R"(","type":"authorize","partner_account_id":"krn:partner:global:account:test:L1",)"
            R"("amount":)" +
            std::to_string(amount) + R"(,"currency":"EUR","payment_transaction_reference":"ref-)" +
            id + R"(","capture":"LATER","customer_token":"ctok-)" + id + R"("})";
  m.headers = headers("limited", sign_command("l1", "limited-secret-0123456789", m.value));
  return m;
}

// Who sent a command is kept in its row, and the call it queues is audited
// with that sender; the per-day total counts every accepted command, within
// one batch as across batches, and is in the database once the batch commits.
TEST(CommandSenders, TheSenderIsInTheCommandRowAndTheDayTotalCountsEveryBatch) {
  const auto dir = test::make_temp_dir("senders");
  storage::StateStore store(dir + "/state.db");
  klarna::Topics topics;
  BatchApplier applier(store, topics);
  auto security = std::make_shared<CommandSecurity>();
  security->policy.senders["limited"] = {{"authorize"}, {"*"}, {}};
  security->policy.senders["limited"].limits["EUR"] = {1000, 1500};
  auto r = std::make_shared<SenderKeyRing>();
  r->add_active("limited", "l1", "limited-secret-0123456789");
  std::shared_ptr<const SenderKeyRing> keys = r;
  security->keys = [keys] { return keys; };
  applier.secure_commands(security);

  const std::vector<InputMessage> first{limited_authorize(topics, "a-1", 600, 1),
                                        limited_authorize(topics, "a-2", 600, 2),
                                        limited_authorize(topics, "a-3", 600, 3)};
  auto out = applier.apply(std::span<const InputMessage>(first));
  EXPECT_EQ(out.commands_refused["not_permitted"], 1u) << "a-3 takes the day to 1800";
  const auto day = core::rfc3339_ms(core::now_ms()).substr(0, 10);
  EXPECT_EQ(store.spent("limited", "EUR", day), 1200);
  const auto accepted = store.find_command("a-1");
  ASSERT_TRUE(accepted);
  EXPECT_EQ(accepted->sender, "limited");
  EXPECT_EQ(accepted->sender_key_id, "l1");
  EXPECT_EQ(store.find_command("a-3")->status, storage::CommandStatus::rejected);
  EXPECT_EQ(store.sender_of("a-3"), "limited") << "a refused command's sender is kept too";
  const auto calls = store.outbox("ref-a-1");
  ASSERT_EQ(calls.size(), 1u);
  const auto audit = store.audit_of_outbox(calls[0].id);
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0].kind, "call_queued");
  EXPECT_EQ(audit[0].sender, "limited");

  const std::vector<InputMessage> second{limited_authorize(topics, "a-4", 300, 4),
                                         limited_authorize(topics, "a-5", 1, 5)};
  out = applier.apply(std::span<const InputMessage>(second));
  EXPECT_EQ(out.commands_refused["not_permitted"], 1u) << "a-5 takes the day to 1501";
  EXPECT_EQ(store.find_command("a-4")->status, storage::CommandStatus::accepted);
  EXPECT_EQ(store.spent("limited", "EUR", day), 1500);
  std::filesystem::remove_all(dir);
}

}  // namespace
