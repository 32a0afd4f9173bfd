// klarnactl against Klarna's Notification API: klarna-sim as a separate
// process over HTTPS with an API key, klarnactl as a process with the
// processor's `[klarna]` settings.
//   - keys create stores the secret the sim signs with (a simulated webhook's
//     signature verifies with the stored secret), never printing it;
//   - webhooks subscribe/list/get/update/simulate/delete round trip;
//   - Klarna's refusals (exit 1, error_code and message shown), unreachable
//     Klarna (exit 1), missing credentials and bad usage (exit 2, nothing sent);
//   - keys add creates the key database owner-only; keys retire of an unknown
//     id says so.
#include <gtest/gtest.h>
#include <simdjson.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "child_process.hpp"
#include "http_client.hpp"
#include "kpay/klarna/signature.hpp"
#include "kpay/storage/key_store.hpp"
#include "kpay/storage/state_store.hpp"
#include "tls_cert.hpp"

using namespace kpay;
using namespace kpay::test;

namespace {

const std::string kApiKey = "ctl-webhooks-api-key";

struct CtlRun {
  int status = -1;
  std::string out, err;
  std::string all() const { return out + err; }
};

std::string field(const std::string& json, std::string_view key) {
  simdjson::dom::parser p;
  std::string_view v;
  if (p.parse(json)[key].get_string().get(v) != simdjson::SUCCESS) return "";
  return std::string(v);
}

std::string first_line(const std::string& s) {
  return s.substr(0, s.find('\n'));
}

unsigned file_mode(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<unsigned>(st.st_mode & 07777) : 0;
}

class KlarnactlKlarna : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = make_temp_dir("ctl-webhooks");
    cert_ = write_self_signed_cert(dir_);
    std::ofstream(dir_ + "/api-key") << kApiKey << "\n";
    ::chmod((dir_ + "/api-key").c_str(), 0600);
    sim_ = new ChildProcess(
        {binary("sim/klarna-sim"), "--port", "0", "--port-file", dir_ + "/sim.port", "--set",
         "sim.tls=true", "--set", "sim.tls_certificate=" + cert_.certificate, "--set",
         "sim.tls_private_key=" + cert_.private_key, "--set", "sim.api_key=" + kApiKey},
        dir_ + "/sim.log");
    wait_until([] { return read_file(dir_ + "/sim.port").find("port") != std::string::npos; },
               std::chrono::seconds(20));
    const auto text = read_file(dir_ + "/sim.port");
    const auto at = text.find(':');
    if (at != std::string::npos) port_ = static_cast<std::uint16_t>(std::stoi(text.substr(at + 1)));
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
    std::filesystem::remove_all(dir_);
  }
  void SetUp() override {
    ASSERT_NE(port_, 0) << read_file(dir_ + "/sim.log");
    case_dir_ = make_temp_dir("ctl-webhooks-case");
    write_config(case_dir_ + "/ctl.toml", "https://127.0.0.1:" + std::to_string(port_),
                 dir_ + "/api-key");
  }
  void TearDown() override { std::filesystem::remove_all(case_dir_); }

  static void write_config(const std::string& path, const std::string& base_url,
                           const std::string& credentials,
                           const std::string& environment = "custom") {
    std::ofstream(path) << "[klarna]\nenvironment = \"" << environment << "\"\nbase_url = \""
                        << base_url << "\"\nca_file = \"" << cert_.certificate << "\"\n"
                        << (credentials.empty() ? ""
                                                : "credentials_file = \"" + credentials + "\"\n")
                        << "request_timeout_ms = 5000\n[keys]\ndatabase = \"" << keys_db()
                        << "\"\n";
  }
  static std::string keys_db() { return case_dir_ + "/keys.db"; }

  // klarnactl with this case's configuration (or `config`); stdout and stderr apart.
  static CtlRun ctl(std::vector<std::string> args, const std::string& config = "") {
    static int n = 0;
    const std::string stem = case_dir_ + "/run-" + std::to_string(n++);
    std::vector<std::string> argv{"/bin/sh",
                                  "-c",
                                  "exec \"$@\" >\"$0.out\" 2>\"$0.err\"",
                                  stem,
                                  binary("tools/klarnactl"),
                                  "--config",
                                  config.empty() ? case_dir_ + "/ctl.toml" : config};
    argv.insert(argv.end(), args.begin(), args.end());
    ChildProcess child(argv);
    CtlRun r;
    r.status = child.wait(std::chrono::seconds(30)).value_or(-1);
    r.out = read_file(stem + ".out");
    r.err = read_file(stem + ".err");
    return r;
  }
  static std::optional<HttpResponse> sim(const std::string& method, const std::string& path,
                                         const std::string& body = "") {
    return http_request(port_, method, path, body, {{"Authorization", "Basic " + kApiKey}}, true);
  }
  // How many calls the sim received (every route).
  static std::size_t sim_calls() {
    auto r = sim("GET", "/_sim/calls");
    if (!r) return 0;
    simdjson::dom::parser p;
    simdjson::dom::array calls;
    if (p.parse(r->body)["calls"].get_array().get(calls) != simdjson::SUCCESS) return 0;
    return calls.size();
  }
  // A signing key made at the sim directly (for the webhook tests).
  static std::string sim_key() {
    auto r = sim("POST", "/v2/notification/signing-keys", "");
    return r ? field(r->body, "signing_key_id") : "";
  }

  static inline std::string dir_, case_dir_;
  static inline CertFiles cert_;
  static inline ChildProcess* sim_ = nullptr;
  static inline std::uint16_t port_ = 0;
};

// The delivery of `event_id` as the sim recorded it: {body, signature, key id}.
struct Delivery {
  std::string body, signature, signing_key_id;
};
std::optional<Delivery> delivery_of(const std::string& deliveries_json,
                                    const std::string& event_id) {
  simdjson::dom::parser p;
  simdjson::dom::array all;
  if (p.parse(deliveries_json)["deliveries"].get_array().get(all) != simdjson::SUCCESS) return {};
  for (auto d : all) {
    std::string_view id, body, sig, key;
    if (d["event_id"].get_string().get(id) != simdjson::SUCCESS || id != event_id) continue;
    if (d["body"].get_string().get(body) || d["signature"].get_string().get(sig) ||
        d["signing_key_id"].get_string().get(key)) {
      return {};
    }
    return Delivery{std::string(body), std::string(sig), std::string(key)};
  }
  return {};
}

TEST_F(KlarnactlKlarna, KeysCreateStoresTheSecretKlarnaSignsWith) {
  auto created = ctl({"keys", "create", "--json"});
  ASSERT_EQ(created.status, 0) << created.all();
  const auto key_id = field(created.out, "signing_key_id");
  ASSERT_EQ(key_id.rfind("krn:partner:global:notification:signing-key:", 0), 0u) << created.out;
  EXPECT_EQ(field(created.out, "status"), "active");
  EXPECT_EQ(file_mode(keys_db()), 0600u) << "a new key database is owner-only";

  std::string secret;
  {
    auto db = storage::Database::open(keys_db());
    storage::KeyStore store(db);
    for (const auto& k : store.active_keys()) {
      if (k.id == key_id) secret = k.secret;
    }
  }
  ASSERT_FALSE(secret.empty()) << "the key is in the local store, active";

  // The sim signs a simulated event with its copy: the stored copy verifies it.
  // (Delivery to port 1 fails; the signed bytes are in the sim's delivery log.)
  auto sub = ctl({"webhooks", "subscribe", "--url", "https://127.0.0.1:1/created-key",
                  "--event-type", "payment.*", "--signing-key-id", key_id});
  ASSERT_EQ(sub.status, 0) << sub.all();
  const auto webhook_id = first_line(sub.out);
  auto simulated =
      ctl({"webhooks", "simulate", webhook_id, "--event-type", "payment.transaction.captured"});
  ASSERT_EQ(simulated.status, 0) << simulated.all();
  const auto event_id = first_line(simulated.out);
  std::optional<Delivery> d;
  ASSERT_TRUE(wait_until([&] {
    auto r = sim("GET", "/_sim/webhooks");
    d = r ? delivery_of(r->body, event_id) : std::nullopt;
    return d.has_value();
  })) << event_id;
  EXPECT_EQ(d->signing_key_id, key_id);
  klarna::KeyRing ring;
  ring.add(key_id, secret);
  EXPECT_TRUE(ring.find(key_id)->verify(d->body, d->signature)) << "stored secret == Klarna's";

  // Klarna's keys next to the local ones.
  auto remote = ctl({"keys", "list", "--remote"});
  ASSERT_EQ(remote.status, 0) << remote.all();
  std::istringstream lines(remote.out);
  std::string line;
  bool listed = false;
  while (std::getline(lines, line)) {
    if (line.rfind(key_id, 0) != 0) continue;
    listed = true;
    EXPECT_NE(line.find("active"), std::string::npos) << line;
    EXPECT_NE(line.find("yes"), std::string::npos) << line;
  }
  EXPECT_TRUE(listed) << remote.out;

  for (const CtlRun* r : {&created, &sub, &simulated, &remote}) {
    EXPECT_EQ(r->all().find(secret), std::string::npos) << "the secret is never printed";
  }
}

TEST_F(KlarnactlKlarna, KeysCreateRepeatedWithItsIdempotencyKeyIsOneKey) {
  auto first = ctl({"keys", "create", "--idempotency-key", "ctl-test-create-once"});
  ASSERT_EQ(first.status, 0) << first.all();
  auto again = ctl({"keys", "create", "--idempotency-key", "ctl-test-create-once"});
  ASSERT_EQ(again.status, 0) << again.all();
  EXPECT_EQ(first_line(again.out), first_line(first.out));
  auto db = storage::Database::open(keys_db());
  storage::KeyStore store(db);
  EXPECT_EQ(store.active_count(), 1u);
}

TEST_F(KlarnactlKlarna, KeysCreateWithoutAUsableKeyStoreAsksKlarnaNothing) {
  const auto before = sim_calls();
  auto r = ctl({"keys", "create", "--set", "keys.database=" + case_dir_ + "/no/such/dir/keys.db"});
  EXPECT_EQ(r.status, 1) << r.all();
  EXPECT_NE(r.err.find("cannot create key database"), std::string::npos) << r.err;
  EXPECT_EQ(sim_calls(), before) << "no key is created at Klarna that could not be stored";
}

TEST_F(KlarnactlKlarna, WebhooksRoundTrip) {
  const auto key = sim_key();
  ASSERT_FALSE(key.empty());
  std::ofstream(case_dir_ + "/secret") << "another-secret\n";  // a local store without `key`
  ASSERT_EQ(ctl({"keys", "add", "--id", "other", "--secret-file", case_dir_ + "/secret"}).status,
            0);
  auto sub =
      ctl({"webhooks", "subscribe", "--url", "https://127.0.0.1:1/round-trip", "--event-type",
           "payment.request.state-change.*", "--event-type", "payment.transaction.*",
           "--event-version", "v1", "--signing-key-id", key, "--json"});
  ASSERT_EQ(sub.status, 0) << sub.all();
  const auto id = field(sub.out, "webhook_id");
  ASSERT_FALSE(id.empty()) << sub.out;
  EXPECT_EQ(field(sub.out, "event_version"), "v1");
  EXPECT_NE(sub.err.find("not an active key"), std::string::npos)
      << "a key the local store lacks is warned about: " << sub.err;

  auto list = ctl({"webhooks", "list"});
  ASSERT_EQ(list.status, 0) << list.all();
  {  // Aligned: the row's values start under their headers.
    std::istringstream lines(list.out);
    std::string header, line, row;
    std::getline(lines, header);
    while (std::getline(lines, line)) {
      if (line.rfind(id, 0) == 0) row = line;
    }
    ASSERT_FALSE(row.empty()) << list.out;
    EXPECT_EQ(row.find("ENABLED"), header.find("STATUS")) << list.out;
    EXPECT_EQ(row.find("https://127.0.0.1:1/round-trip"), header.find("URL")) << list.out;
    EXPECT_NE(row.find("payment.request.state-change.*,payment.transaction.*"), std::string::npos);
  }
  auto list_json = ctl({"webhooks", "list", "--json"});
  ASSERT_EQ(list_json.status, 0);
  EXPECT_NE(list_json.out.find("\"webhook_id\":\"" + id + "\""), std::string::npos)
      << list_json.out;

  auto got = ctl({"webhooks", "get", id});
  ASSERT_EQ(got.status, 0) << got.all();
  EXPECT_NE(got.out.find("signing_key_id: " + key), std::string::npos) << got.out;
  EXPECT_NE(got.out.find("status: ENABLED"), std::string::npos) << got.out;

  auto upd = ctl({"webhooks", "update", id, "--status", "DISABLED", "--event-version", "v2"});
  ASSERT_EQ(upd.status, 0) << upd.all();
  auto got_json = ctl({"webhooks", "get", id, "--json"});
  ASSERT_EQ(got_json.status, 0);
  EXPECT_EQ(field(got_json.out, "status"), "DISABLED");
  EXPECT_EQ(field(got_json.out, "event_version"), "v2");

  auto simulated = ctl({"webhooks", "simulate", id, "--event-type",
                        "payment.request.state-change.completed", "--json"});
  ASSERT_EQ(simulated.status, 0) << simulated.all();
  EXPECT_FALSE(field(simulated.out, "event_id").empty()) << simulated.out;
  EXPECT_EQ(field(simulated.out, "event_version"), "v2");

  auto del = ctl({"webhooks", "delete", id});
  ASSERT_EQ(del.status, 0) << del.all();
  auto gone = ctl({"webhooks", "get", id});
  EXPECT_EQ(gone.status, 1);
  EXPECT_NE(gone.err.find("404 RESOURCE_ERROR/RESOURCE_NOT_FOUND"), std::string::npos) << gone.err;
}

TEST_F(KlarnactlKlarna, KlarnasRefusalsAreShownWithExit1) {
  auto unknown = ctl({"webhooks", "get", "krn:partner:global:notification:webhook:nope"});
  EXPECT_EQ(unknown.status, 1);
  EXPECT_NE(unknown.err.find("RESOURCE_NOT_FOUND"), std::string::npos) << unknown.err;
  EXPECT_NE(unknown.err.find("webhook not found"), std::string::npos) << unknown.err;

  const auto key = sim_key();
  auto bad_url = ctl({"webhooks", "subscribe", "--url", "ftp://example.invalid/hook",
                      "--event-type", "payment.*", "--signing-key-id", key});
  EXPECT_EQ(bad_url.status, 1);
  EXPECT_NE(bad_url.err.find("VALIDATION_ERROR"), std::string::npos) << bad_url.err;
  EXPECT_NE(bad_url.err.find("url: must be an http(s) URL"), std::string::npos) << bad_url.err;

  auto bad_key = ctl({"webhooks", "subscribe", "--url", "https://127.0.0.1:1/bad-key",
                      "--event-type", "payment.*", "--signing-key-id", "krn:no-such-key"});
  EXPECT_EQ(bad_key.status, 1);
  EXPECT_NE(bad_key.err.find("signing_key_id: unknown signing key"), std::string::npos)
      << bad_key.err;

  auto once = ctl({"webhooks", "subscribe", "--url", "https://127.0.0.1:1/twice", "--event-type",
                   "payment.*", "--signing-key-id", key});
  ASSERT_EQ(once.status, 0) << once.all();
  auto twice = ctl({"webhooks", "subscribe", "--url", "https://127.0.0.1:1/twice", "--event-type",
                    "payment.*", "--signing-key-id", key});
  EXPECT_EQ(twice.status, 1);
  EXPECT_NE(twice.err.find("409 RESOURCE_ERROR/RESOURCE_CONFLICT"), std::string::npos) << twice.err;

  std::ofstream(case_dir_ + "/wrong-key") << "not-the-key\n";
  ::chmod((case_dir_ + "/wrong-key").c_str(), 0600);
  write_config(case_dir_ + "/wrong.toml", "https://127.0.0.1:" + std::to_string(port_),
               case_dir_ + "/wrong-key");
  auto unauthorized = ctl({"webhooks", "list"}, case_dir_ + "/wrong.toml");
  EXPECT_EQ(unauthorized.status, 1);
  EXPECT_NE(unauthorized.err.find("401 ACCESS_ERROR/UNAUTHORIZED"), std::string::npos)
      << unauthorized.err;
  EXPECT_EQ(unauthorized.all().find("not-the-key"), std::string::npos);
}

TEST_F(KlarnactlKlarna, UnreachableKlarnaIsExit1WithTheAddress) {
  // Port 1 on loopback: nobody listens there (connection refused).
  const auto config = case_dir_ + "/unreachable.toml";
  write_config(config, "https://127.0.0.1:1", dir_ + "/api-key");
  auto list = ctl({"webhooks", "list"}, config);
  EXPECT_EQ(list.status, 1);
  EXPECT_NE(list.err.find("cannot reach Klarna at https://127.0.0.1:1"), std::string::npos)
      << list.err;
  auto create = ctl({"keys", "create"}, config);
  EXPECT_EQ(create.status, 1);
  EXPECT_NE(create.err.find("cannot reach Klarna"), std::string::npos) << create.err;
  EXPECT_NE(create.err.find("--idempotency-key klarnactl-"), std::string::npos)
      << "a POST whose fate is unknown says how to repeat it safely: " << create.err;
}

TEST_F(KlarnactlKlarna, MissingCredentialsAndBadUsageAreExit2BeforeAnythingIsSent) {
  const auto before = sim_calls();
  const auto base = "https://127.0.0.1:" + std::to_string(port_);
  write_config(case_dir_ + "/test-env.toml", base, "", "test");
  auto no_key = ctl({"keys", "create"}, case_dir_ + "/test-env.toml");
  EXPECT_EQ(no_key.status, 2) << no_key.all();
  EXPECT_NE(no_key.err.find("klarna.credentials_file"), std::string::npos) << no_key.err;

  write_config(case_dir_ + "/missing.toml", base, case_dir_ + "/no-such-api-key");
  auto missing = ctl({"webhooks", "list"}, case_dir_ + "/missing.toml");
  EXPECT_EQ(missing.status, 2) << missing.all();
  EXPECT_NE(missing.err.find("configuration error"), std::string::npos) << missing.err;

  EXPECT_EQ(
      ctl({"webhooks", "subscribe", "--event-type", "payment.*", "--signing-key-id", "k"}).status,
      2)
      << "--url is required";
  EXPECT_EQ(ctl({"webhooks", "subscribe", "--url", "https://127.0.0.1:1/x", "--event-type", "p",
                 "--signing-key-id", "k", "--event-version", "v3"})
                .status,
            2);
  EXPECT_EQ(ctl({"webhooks", "simulate", "some-id"}).status, 2) << "--event-type is required";
  EXPECT_EQ(ctl({"webhooks", "update", "some-id"}).status, 2) << "nothing to change";
  EXPECT_EQ(ctl({"webhooks"}).status, 2);
  EXPECT_EQ(sim_calls(), before) << "nothing reached Klarna";

  for (auto sub : {"subscribe", "list", "get", "update", "delete", "simulate"}) {
    auto help = ctl({"webhooks", sub, "--help"});
    EXPECT_EQ(help.status, 0) << sub;
    EXPECT_NE(help.out.find("--json"), std::string::npos) << sub << ": " << help.out;
  }
  for (auto sub : {"create", "add", "list", "retire", "remote-delete"}) {
    auto help = ctl({"keys", sub, "--help"});
    EXPECT_EQ(help.status, 0) << sub;
    EXPECT_NE(help.out.find("--json"), std::string::npos) << sub << ": " << help.out;
  }
}

TEST_F(KlarnactlKlarna, KeysAddCreatesTheDatabaseOwnerOnly) {
  const mode_t old_umask = ::umask(022);  // an operator's usual umask
  std::ofstream(case_dir_ + "/secret") << "local-secret\n";
  auto add = ctl({"keys", "add", "--id", "k1", "--secret-file", case_dir_ + "/secret"});
  ASSERT_EQ(add.status, 0) << add.all();
  EXPECT_EQ(file_mode(keys_db()), 0600u);

  // Run as root into the receiver's state directory: the new file is the
  // directory owner's (the receiver's service user), still 0600.
  if (::geteuid() == 0) {
    const auto state_dir = case_dir_ + "/var-lib-klarna-receiver";
    std::filesystem::create_directory(state_dir);
    ASSERT_EQ(::chown(state_dir.c_str(), 65534, 65534), 0);
    auto as_root = ctl({"keys", "add", "--id", "k1", "--secret-file", case_dir_ + "/secret",
                        "--set", "keys.database=" + state_dir + "/keys.db"});
    ASSERT_EQ(as_root.status, 0) << as_root.all();
    struct stat st {};
    ASSERT_EQ(::stat((state_dir + "/keys.db").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 65534u);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
  }
  ::umask(old_umask);
}

TEST_F(KlarnactlKlarna, KeysRetireOfAnUnknownIdSaysItIsUnknown) {
  std::ofstream(case_dir_ + "/secret") << "local-secret\n";
  ASSERT_EQ(ctl({"keys", "add", "--id", "k1", "--secret-file", case_dir_ + "/secret"}).status, 0);
  auto one = ctl({"keys", "retire", "no-such-key"});
  EXPECT_EQ(one.status, 1);
  EXPECT_NE(one.err.find("unknown signing key no-such-key"), std::string::npos) << one.err;
  EXPECT_EQ(one.err.find("last active key"), std::string::npos) << one.err;

  ASSERT_EQ(ctl({"keys", "add", "--id", "k2", "--secret-file", case_dir_ + "/secret"}).status, 0);
  auto retired = ctl({"keys", "retire", "k1", "--json"});
  ASSERT_EQ(retired.status, 0) << retired.all();
  EXPECT_EQ(field(retired.out, "status"), "retired");
  auto again = ctl({"keys", "retire", "k1"});
  EXPECT_EQ(again.status, 1);
  EXPECT_NE(again.err.find("signing key k1 is already retired"), std::string::npos) << again.err;
  auto last = ctl({"keys", "retire", "k2"});
  EXPECT_EQ(last.status, 1);
  EXPECT_NE(last.err.find("last active key"), std::string::npos) << "the last-key rule stays";
}

}  // namespace
