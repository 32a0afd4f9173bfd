// Files holding secrets that others can read are refused at start-up, by the
// daemon that would use them, with a configuration error (exit 2) naming the
// setting, the file and its mode, never its contents:
//   receiver: receiver.tls_private_key (owner only), keys.database (no access
//             for others; its group only when it is the service's own group)
//   processor: klarna.credentials_file and klarna.client_private_key (owner only)
#include <grp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "security_support.hpp"

using namespace kpay::test;
using namespace kpay::test::security;
using namespace std::chrono_literals;

namespace {

// Starts the receiver with `sets`; its exit status (nullopt: still running
// after the bound, i.e. it started) and its output.
std::pair<std::optional<int>, std::string> receiver_exit(const ReceiverProcess::Options& o) {
  ReceiverProcess r({o.sets, o.cert, false, {}});
  // Refused: it exits. Started: it writes its port file.
  wait_until([&] { return !r.process().running() || !read_file(r.dir() + "/ports.json").empty(); },
             10s);
  auto status = r.process().wait(100ms);
  return {status, r.log()};
}

std::string pem_body_line(const std::string& pem_file) {
  std::istringstream in(read_file(pem_file));
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line[0] != '-') return line;
  }
  return "<none>";
}

void expect_refused(const std::pair<std::optional<int>, std::string>& run,
                    const std::string& setting, const std::string& path, const std::string& mode) {
  ASSERT_TRUE(run.first) << "started although " << path << " is " << mode << "\n" << run.second;
  EXPECT_EQ(*run.first, 2) << run.second;
  EXPECT_NE(run.second.find(setting), std::string::npos) << run.second;
  EXPECT_NE(run.second.find(path), std::string::npos) << run.second;
  EXPECT_NE(run.second.find(mode), std::string::npos) << run.second;
}

}  // namespace

TEST(SecretFileModes, ReceiverRefusesATlsPrivateKeyOthersCanRead) {
  const auto dir = make_temp_dir("sec-tls-mode");
  auto cert = write_self_signed_cert(dir);
  for (const mode_t mode : {0640, 0604, 0644}) {
    ::chmod(cert.private_key.c_str(), mode);
    char text[8];
    std::snprintf(text, sizeof text, "%04o", mode);
    auto run = receiver_exit({{}, cert, false, {}});
    expect_refused(run, "receiver.tls_private_key", cert.private_key, text);
    EXPECT_EQ(run.second.find(pem_body_line(cert.private_key)), std::string::npos)
        << "key material in the error";
  }
  ::chmod(cert.private_key.c_str(), 0400);  // control: owner-only starts
  ReceiverProcess ok({{}, cert, true, {}});
  EXPECT_NE(ok.port(), 0) << ok.log();
  std::filesystem::remove_all(dir);
}

TEST(SecretFileModes, ReceiverRefusesAKeyDatabaseOthersOrAForeignGroupCanRead) {
  // Each run makes its own database (ReceiverProcess adds the key, 0600);
  // the mode is changed before the receiver opens it, through a wrapper
  // that chmods then execs (so the database the receiver sees is that mode).
  struct Mode {
    mode_t mode;
    bool foreign_group;
    bool refused;
  };
  const gid_t foreign = ::getegid() == 65534 ? 0 : 65534;
  for (const Mode m : {Mode{0644, false, true}, Mode{0604, false, true}, Mode{0606, false, true},
                       Mode{0640, true, true}, Mode{0660, true, true}, Mode{0640, false, false},
                       Mode{0600, false, false}}) {
    const auto dir = make_temp_dir("sec-keydb-mode");
    const auto db = dir + "/keys.db";
    add_signing_key(dir, db);
    ASSERT_EQ(::chmod(db.c_str(), m.mode), 0);
    if (m.foreign_group) {
      ASSERT_EQ(::chown(db.c_str(), static_cast<uid_t>(-1), foreign), 0);
    }
    char text[8];
    std::snprintf(text, sizeof text, "%04o", m.mode);
    auto run = receiver_exit({{"keys.database=" + db}, std::nullopt, false, {}});
    if (m.refused) {
      expect_refused(run, "keys.database", db, text);
      EXPECT_EQ(run.second.find(kSecret), std::string::npos);
    } else {
      EXPECT_FALSE(run.first) << text << " was refused:\n" << run.second;
    }
    std::filesystem::remove_all(dir);
  }
}

TEST(SecretFileModes, ProcessorRefusesCredentialsAndMtlsKeyOthersCanRead) {
  const auto dir = make_temp_dir("sec-proc-mode");
  const auto cert = write_self_signed_cert(dir);
  const auto ca = write_ca_cert(dir, "ca", "sec test ca");
  const auto client = write_cert_signed_by(ca, dir, "client", "sec-client");
  const std::string api_key = "sec-API-key-0b7e4d2a-NOT-REAL";
  std::ofstream(dir + "/api-key") << api_key << "\n";
  auto run = [&](const std::vector<std::string>& sets) {
    std::vector<std::string> argv{binary("processor/klarna-processor"),
                                  "--set", "processor.database=" + dir + "/p.db",
                                  "--set", "kafka.bootstrap_servers=" + shared_kafka().bootstrap_servers(),
                                  "--set", "klarna.environment=custom",
                                  "--set", "klarna.base_url=https://127.0.0.1:9",
                                  "--set", "klarna.ca_file=" + cert.certificate,
                                  "--set", "klarna.credentials_file=" + dir + "/api-key",
                                  "--set", "admin.port=0"};
    for (const auto& s : sets) argv.insert(argv.end(), {"--set", s});
    const auto log = dir + "/processor.log";
    std::filesystem::remove(log);
    ChildProcess p(argv, log);
    // Refused: it exits. Started: its admin endpoint listens.
    wait_until([&] { return !p.running() || read_file(log).find("admin endpoint") != std::string::npos; },
               10s);
    auto status = p.wait(100ms);
    return std::make_pair(status, read_file(log));
  };
  for (const mode_t mode : {0640, 0644, 0604}) {
    ::chmod((dir + "/api-key").c_str(), mode);
    char text[8];
    std::snprintf(text, sizeof text, "%04o", mode);
    auto r = run({});
    expect_refused(r, "credentials_file", dir + "/api-key", text);
    EXPECT_EQ(r.second.find(api_key), std::string::npos) << "the API key in the error";
  }
  ::chmod((dir + "/api-key").c_str(), 0600);
  const std::vector<std::string> mtls{"klarna.client_certificate=" + client.certificate,
                                      "klarna.client_private_key=" + client.private_key};
  for (const mode_t mode : {0640, 0644}) {
    ::chmod(client.private_key.c_str(), mode);
    char text[8];
    std::snprintf(text, sizeof text, "%04o", mode);
    auto r = run(mtls);
    expect_refused(r, "client_private_key", client.private_key, text);
    EXPECT_EQ(r.second.find(pem_body_line(client.private_key)), std::string::npos);
  }
  // Control: with both owner-only, the processor starts (and keeps running).
  ::chmod(client.private_key.c_str(), 0600);
  auto ok = run(mtls);
  EXPECT_FALSE(ok.first) << "refused with owner-only files:\n" << ok.second;
  std::filesystem::remove_all(dir);
}
