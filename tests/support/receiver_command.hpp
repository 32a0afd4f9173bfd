// The command line that starts klarna-receiver in a test, in one place: on
// loopback, with TLS from the given pair (or plain HTTP), writing the port it
// got to `port_file`, keys from `keys_database`, Kafka at
// `bootstrap_servers`, the admin endpoint on an OS-chosen loopback port;
// `extra` (more "--set", "key=value" pairs) appended.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "tls_cert.hpp"

namespace kpay::test {

struct ReceiverCommand {
  std::string port_file{};
  std::string keys_database{};
  std::string bootstrap_servers{};
  std::optional<CertFiles> tls{};  // none: receiver.tls=false
  std::uint16_t port = 0;          // 0: the OS chooses
  std::vector<std::string> extra{};
};

inline std::vector<std::string> receiver_argv(const ReceiverCommand& c) {
  std::vector<std::string> sets{"receiver.listen_address=127.0.0.1",
                                "receiver.port=" + std::to_string(c.port)};
  if (c.tls) {
    sets.insert(sets.end(), {"receiver.tls=true", "receiver.tls_certificate=" + c.tls->certificate,
                             "receiver.tls_private_key=" + c.tls->private_key});
  } else {
    sets.emplace_back("receiver.tls=false");
  }
  sets.insert(sets.end(), {"receiver.port_file=" + c.port_file, "keys.database=" + c.keys_database,
                           "kafka.bootstrap_servers=" + c.bootstrap_servers,
                           "admin.listen_address=127.0.0.1", "admin.port=0"});
  std::vector<std::string> argv{binary("receiver/klarna-receiver")};
  for (const auto& s : sets) argv.insert(argv.end(), {"--set", s});
  argv.insert(argv.end(), c.extra.begin(), c.extra.end());
  return argv;
}

}  // namespace kpay::test
