// klarnactl: the operators' command line. Each command family lives in its own
// file and registers its subcommands here; main.cpp only wires them.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kpay/core/config.hpp"
#include "kpay/core/kafka.hpp"
#include "kpay/klarna/api_client.hpp"
#include "kpay/klarna/envelope.hpp"
#include "kpay/storage/audit_log.hpp"
#include "kpay/storage/sqlite.hpp"

namespace kpay::ctl {

// Options every subcommand shares; filled in by CLI11 before any callback runs.
struct GlobalOptions {
  std::optional<std::string> config_file;    // the same TOML file the daemons read
  std::vector<std::string> overrides;        // --set section.key=value
  std::optional<std::string> operator_name;  // --operator: who acts (audit trail)

  // Loads the configuration (throws core::ConfigError → exit 2).
  core::Config load() const;
};

// Operators' actions in the audit trail (operator_identity.cpp): who acts is
// --operator NAME, else $SUDO_USER, else $USER, else the uid's account. An
// event of kind "operator" with `status` and `detail` (the OS user added when
// --operator names someone else), to be appended in the action's transaction.
void check_operator_name(const std::string& name);
std::string operator_identity(const GlobalOptions& g);
storage::AuditEvent operator_event(const GlobalOptions& g, const std::string& status,
                                   const std::string& detail);

// Exit codes: 0 ok, 1 operation failed (e.g. unknown id), 2 bad usage/config.
// Subcommand callbacks throw CommandFailed to end with code 1 and a message.
struct CommandFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Sending a downstream command (klarna.commands) the way a payment system does
// (commands_commands.cpp): checked with the processor's decoder, produced,
// and with `wait` followed on klarna.command-results to its final result.
struct SendOptions {
  std::string command_id;  // default: a random "ctl-…"
  std::string key;         // default: the entity the command is about
  bool wait = false;
  int timeout_s = 60;
  bool json = false;
};
// Adds --command-id, --key, --wait, --timeout, --json to `cmd`.
CLI::App* with_send_options(CLI::App* cmd, SendOptions& o);
// Fills in a random command_id when none was given (before building the JSON).
void prepare(SendOptions& o);
// Throws CommandFailed when --wait saw a final result other than succeeded.
void send(const GlobalOptions& g, const SendOptions& o, const std::string& key,
          const std::string& json);

// The Kafka cluster and topic names klarnactl uses (kafka_access.cpp): from
// kafka.bootstrap_servers, kafka.properties and the receiver's topics.* with
// kafka.topic_prefix (the processor's topics take the same prefix).
struct KafkaAccess {
  std::string bootstrap;
  core::KafkaProperties properties;
  klarna::Topics topics;
};
KafkaAccess kafka_from(const GlobalOptions& g);
// A client of `type` with `extra` settings, the operator's kafka.properties last.
core::KafkaHandle make_client(const KafkaAccess& k, rd_kafka_type_t type,
                              core::KafkaProperties extra);

// Calls to Klarna's API (klarna_api.cpp) with the processor's `[klarna]`
// settings: environment live|test|custom, base_url, ca_file, credentials_file,
// client_certificate/client_private_key (mTLS). An incomplete or bad `[klarna]`
// section (no credentials for live/test, a missing file, a key file readable
// by others) is a core::ConfigError (exit 2), raised before anything is sent.
class KlarnaApi {
 public:
  explicit KlarnaApi(const GlobalOptions& g);
  ~KlarnaApi();
  KlarnaApi(const KlarnaApi&) = delete;
  KlarnaApi& operator=(const KlarnaApi&) = delete;

  // One call; a retryable answer (429, 5xx, timeout, refused connection) is
  // sent again with the same idempotency key, `attempts` times at most.
  klarna::Answer call(klarna::Call c, int attempts = 3);
  // call(), then CommandFailed (exit 1) unless Klarna answered 2xx.
  klarna::Answer expect_success(klarna::Call c, int attempts = 3);
  // "Klarna answered 404 RESOURCE_ERROR/RESOURCE_NOT_FOUND: webhook not found
  // (error_id=…)" or "cannot reach Klarna at https://…: connection refused".
  // Built from the status and Klarna's error fields only, never the request.
  std::string describe_failure(const klarna::Answer& a) const;
  const std::string& base_url() const { return base_url_; }

 private:
  std::string base_url_;
  std::unique_ptr<klarna::ApiClient> client_;
};
// A fresh Klarna-Idempotency-Key for one invocation: "klarnactl-<32 hex>".
std::string new_idempotency_key();
// Adds --idempotency-key (repeat an invocation safely with the same key).
CLI::Option* with_idempotency_key(CLI::App* cmd, std::string& key);
// A top-level string field of a JSON answer; empty when absent.
std::string json_field(const std::string& body, std::string_view key);
// Aligned columns: rows[0] is the header; each column as wide as its widest cell.
void print_table(const std::vector<std::vector<std::string>>& rows);

// The signing-key database (keys.database). Only `add` and `create` may create it,
// and then owner-only (0600; as root, owned by the owner of its directory).
storage::Database open_key_database(const GlobalOptions& g, bool create);
std::string key_database_path(const GlobalOptions& g);
// keys create | list --remote | remote-delete (keys_klarna_commands.cpp).
void register_keys_klarna_commands(CLI::App& keys, const GlobalOptions& global);
void list_remote_keys(const GlobalOptions& g, bool json);

void register_keys_commands(CLI::App& app, const GlobalOptions& global);
void register_webhooks_commands(CLI::App& app, const GlobalOptions& global);
void register_payments_commands(CLI::App& app, const GlobalOptions& global);
// payments trace ID [--json] (payments_trace.cpp), under `payments`.
void register_payments_trace(CLI::App& payments, const GlobalOptions& global);
void register_disputes_commands(CLI::App& app, const GlobalOptions& global);
void register_actions_commands(CLI::App& app, const GlobalOptions& global);
void register_commands_commands(CLI::App& app, const GlobalOptions& global);
void register_dead_letters_commands(CLI::App& app, const GlobalOptions& global);
void register_settlements_commands(CLI::App& app, const GlobalOptions& global);
void register_gaps_commands(CLI::App& app, const GlobalOptions& global);   // gaps_commands.cpp
void register_status_command(CLI::App& app, const GlobalOptions& global);  // status_commands.cpp
void register_top_command(CLI::App& app, const GlobalOptions& global);     // top_command.cpp
void register_store_commands(CLI::App& app, const GlobalOptions& global);  // store_commands.cpp

}  // namespace kpay::ctl
