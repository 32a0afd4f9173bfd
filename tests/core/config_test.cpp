#include "kpay/core/config.hpp"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

using kpay::core::Config;
using kpay::core::ConfigError;
using namespace std::chrono_literals;

TEST(Config, ReadsTypedValuesWithFallbacks) {
  auto c = Config::from_string(R"(
[receiver]
port = 9443
path = "/hooks"
tls = false
deadline_ms = 2500
topics = ["a", "b"]
)");
  EXPECT_EQ(c.integer("receiver.port", 8443, 1, 65535), 9443);
  EXPECT_EQ(c.string("receiver.path", "/x"), "/hooks");
  EXPECT_FALSE(c.boolean("receiver.tls", true));
  EXPECT_EQ(c.millis("receiver.deadline_ms", 1s, 1ms, 60s), 2500ms);
  EXPECT_EQ(c.string_list("receiver.topics", {}), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(c.string("receiver.missing", "fallback"), "fallback");
  EXPECT_NO_THROW(c.reject_unknown_keys());
}

TEST(Config, OutOfRangeNamesKeyAndReason) {
  auto c = Config::from_string("[receiver]\nport = 70000\n");
  try {
    c.integer("receiver.port", 8443, 1, 65535);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), "receiver.port");
    EXPECT_NE(std::string(e.what()).find("between 1 and 65535"), std::string::npos);
  }
}

TEST(Config, WrongTypeIsRefused) {
  auto c = Config::from_string("[receiver]\nport = \"eighty\"\n");
  EXPECT_THROW(c.integer("receiver.port", 1, 1, 2), ConfigError);
  EXPECT_THROW(c.boolean("receiver.port", false), ConfigError);
}

TEST(Config, InvalidTomlIsRefusedWithPosition) {
  try {
    Config::from_string("[receiver\nport = 1\n", "test.toml");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("test.toml:1"), std::string::npos) << e.what();
  }
}

namespace {
std::string from_file_error(const std::filesystem::path& p) {
  try {
    Config::from_file(p);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}
}  // namespace

TEST(Config, MissingFileIsRefused) {
  EXPECT_NE(from_file_error("/nonexistent/kpay.toml").find("does not exist"), std::string::npos);
  EXPECT_NE(from_file_error(std::filesystem::temp_directory_path()).find("not a regular file"),
            std::string::npos);
}

// The operator's case from issue 13: a service user that may not read
// /etc/klarna was told its configuration "does not exist". Checked as an
// unprivileged user in a child process: as root, after dropping to nobody
// (root reads everything); otherwise as this user, on a file without read
// permission.
TEST(Config, AnUnreadableFileIsNotCalledMissing) {
  const bool root = ::geteuid() == 0;
  const auto dir =
      std::filesystem::temp_directory_path() / ("kpay-cfg-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "c.toml") << "[log]\nlevel = \"info\"\n";
  std::filesystem::permissions(
      dir / "c.toml", root ? std::filesystem::perms::owner_read : std::filesystem::perms::none);
  std::filesystem::permissions(
      dir, std::filesystem::perms::owner_all | std::filesystem::perms::others_exec);
  const pid_t child = fork();
  if (child == 0) {
    if (root && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(3);
    const auto error = from_file_error(dir / "c.toml");
    _exit(error.find("cannot be read") != std::string::npos &&
                  error.find("does not exist") == std::string::npos
              ? 0
              : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: wrong message, 3: could not drop privileges";
  std::filesystem::remove_all(dir);
}

TEST(Config, UnknownKeyIsRefused) {
  auto c = Config::from_string("[receiver]\nport = 1\nprot = 2\n");
  c.integer("receiver.port", 1, 1, 65535);
  try {
    c.reject_unknown_keys();
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), "receiver.prot");
  }
}

TEST(Config, OverridesParseTomlValuesOrBareStrings) {
  auto c = Config::from_string("[receiver]\nport = 1\n");
  c.apply_override("receiver.port=2");
  c.apply_override("receiver.host=127.0.0.1");
  c.apply_override("kafka.properties.linger.ms=5");
  c.apply_override("new.flag=true");
  EXPECT_EQ(c.integer("receiver.port", 0, 0, 10), 2);
  EXPECT_EQ(c.string("receiver.host", ""), "127.0.0.1");
  EXPECT_TRUE(c.boolean("new.flag", false));
  auto props = c.string_table("kafka.properties");
  ASSERT_EQ(props.size(), 1u);
  EXPECT_EQ(props[0].first, "linger.ms");
  EXPECT_EQ(props[0].second, "5");
  EXPECT_THROW(c.apply_override("novalue"), ConfigError);
}

TEST(Config, PassThroughTableKeepsDottedNames) {
  auto c = Config::from_string(R"(
[kafka.properties]
"enable.idempotence" = true
"batch.num.messages" = 1000
sasl.mechanism = "PLAIN"
)");
  auto props = c.string_table("kafka.properties");
  std::map<std::string, std::string> m(props.begin(), props.end());
  EXPECT_EQ(m["enable.idempotence"], "true");
  EXPECT_EQ(m["batch.num.messages"], "1000");
  EXPECT_EQ(m["sasl.mechanism"], "PLAIN");
  EXPECT_NO_THROW(c.reject_unknown_keys());
}

TEST(Config, LoadsFileAndAppliesOverridesInOrder) {
  auto path = std::filesystem::temp_directory_path() /
              ("kpay-config-" + std::to_string(getpid()) + ".toml");
  { std::ofstream(path) << "[a]\nb = 1\n"; }
  auto c = kpay::core::load_config(path, {"a.b=3", "a.b=4"});
  EXPECT_EQ(c.integer("a.b", 0, 0, 10), 4);
  std::filesystem::remove(path);
}

TEST(Config, CommandLineBeatsFileForPassThroughAndIsVerbatim) {
  auto c = Config::from_string(R"(
[kafka.properties]
"compression.type" = "lz4"
"sasl.password" = "from-file"
ratio = 1234567.5
)");
  c.apply_override("kafka.properties.compression.type=zstd");
  c.apply_override("kafka.properties.sasl.password=0x1f");
  auto props = c.string_table("kafka.properties");
  std::map<std::string, std::string> m;
  for (const auto& [k, v] : props) {
    EXPECT_FALSE(m.contains(k)) << "duplicate " << k;
    m[k] = v;
  }
  EXPECT_EQ(m["compression.type"], "zstd");
  EXPECT_EQ(m["sasl.password"], "0x1f");  // not "31"
  EXPECT_EQ(m["ratio"], "1234567.5");
}
