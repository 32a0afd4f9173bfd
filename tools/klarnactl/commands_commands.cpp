// klarnactl authorize|capture|refund|void|cancel: the same downstream commands
// a payment system sends (klarna.commands), so an operator never needs a
// second path. The command is checked with the processor's own decoder before
// it is produced; --wait reads klarna.command-results until its final result.
// Tokens are read from files (never from the command line, where `ps` shows
// them) and never printed.
#include <openssl/rand.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>

#include "klarnactl.hpp"
#include "kpay/core/json_writer.hpp"
#include "kpay/core/kafka.hpp"
#include "kpay/core/traceparent.hpp"
#include "kpay/klarna/envelope.hpp"
#include "kpay/klarna/kafka_contract.hpp"
#include "kpay/processor/commands.hpp"
#include "security_commands.hpp"

namespace kpay::ctl {

namespace {

std::string json_quote(const std::string& s) {
  std::string q;
  core::append_json_string(q, s);
  return q;
}

std::string random_id() {
  unsigned char bytes[8];
  RAND_bytes(bytes, sizeof bytes);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = "ctl-";
  for (unsigned char b : bytes) {
    id += kHex[b >> 4];
    id += kHex[b & 0xf];
  }
  return id;
}

// A reader of klarna.command-results positioned at the end of every
// partition, made before the command is produced so its results are not missed.
core::KafkaHandle results_reader(const KafkaAccess& k) {
  auto consumer = make_client(k, RD_KAFKA_CONSUMER,
                              {{"group.id", "klarnactl-" + random_id()},
                               {"enable.auto.commit", "false"},
                               {"enable.partition.eof", "false"}});
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_topic_t* t =
      rd_kafka_topic_new(consumer.get(), k.topics.command_results.c_str(), nullptr);
  const auto err = rd_kafka_metadata(consumer.get(), 0, t, &md, 10000);
  rd_kafka_topic_destroy(t);
  if (err || md->topic_cnt != 1 || md->topics[0].err) {
    if (md) rd_kafka_metadata_destroy(md);
    throw CommandFailed("cannot read the partitions of " + k.topics.command_results);
  }
  core::KafkaPartitionList list(rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt));
  for (int i = 0; i < md->topics[0].partition_cnt; ++i) {
    std::int64_t low = 0, high = 0;
    const auto p = md->topics[0].partitions[i].id;
    rd_kafka_query_watermark_offsets(consumer.get(), k.topics.command_results.c_str(), p, &low,
                                     &high, 10000);
    rd_kafka_topic_partition_list_add(list.get(), k.topics.command_results.c_str(), p)->offset =
        high;
  }
  rd_kafka_metadata_destroy(md);
  rd_kafka_assign(consumer.get(), list.get());
  return consumer;
}

void produce(const KafkaAccess& k, const std::string& key, const std::string& value,
             const std::vector<std::pair<std::string, std::string>>& signature) {
  auto producer =
      make_client(k, RD_KAFKA_PRODUCER, {{"enable.idempotence", "true"}, {"acks", "all"}});
  rd_kafka_headers_t* headers = rd_kafka_headers_new(2);
  for (const auto& [name, v] : signature) {
    rd_kafka_header_add(headers, name.c_str(), -1, v.data(), static_cast<ssize_t>(v.size()));
  }
  auto err = rd_kafka_producev(producer.get(), RD_KAFKA_V_TOPIC(k.topics.commands.c_str()),
                               RD_KAFKA_V_KEY(key.data(), key.size()),
                               RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                               RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                               RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_END);
  if (err) rd_kafka_headers_destroy(headers);
  if (err) throw CommandFailed(std::string("cannot produce: ") + rd_kafka_err2str(err));
  if (rd_kafka_flush(producer.get(), 15000) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      rd_kafka_outq_len(producer.get()) > 0) {
    throw CommandFailed("Kafka did not acknowledge the command in time");
  }
}

// "status" of a result whose command_id is `id`; empty when it is not ours.
std::string status_if_ours(const std::string& value, const std::string& id) {
  if (value.find("\"command_id\":" + json_quote(id)) == std::string::npos) return "";
  for (std::string_view s : {"accepted", "rejected", "succeeded", "failed"}) {
    if (value.find("\"status\":\"" + std::string(s) + "\"") != std::string::npos) {
      return std::string(s);
    }
  }
  return "";
}

// Prints results of `id` until the final one; false when it was not succeeded.
bool wait_for_result(rd_kafka_t* consumer, const std::string& id, const SendOptions& o) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(o.timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    core::KafkaMessage m(rd_kafka_consumer_poll(consumer, 200));
    if (!m || m->err) continue;
    const std::string value(static_cast<const char*>(m->payload), m->len);
    const auto status = status_if_ours(value, id);
    if (status.empty()) continue;
    std::cout << (o.json ? value : status + ": " + value) << "\n";
    const auto final_status = storage::parse_command_status(status);
    if (final_status != storage::CommandStatus::accepted) {
      return final_status == storage::CommandStatus::succeeded;
    }
  }
  throw CommandFailed("no final result for " + id + " within " + std::to_string(o.timeout_s) +
                      " s; it may still complete (the command is durable in Kafka)");
}

}  // namespace

// Checks `json` with the processor's decoder, produces it, waits if asked.
void send(const GlobalOptions& g, const SendOptions& o, const std::string& key,
          const std::string& json) {
  auto decoded = processor::decode_command(json);
  if (auto* r = std::get_if<processor::CommandRejection>(&decoded)) {
    throw CLI::ValidationError("command", r->reason());
  }
  const auto k = kafka_from(g);
  const auto id = std::get<processor::Command>(decoded).command_id;
  core::KafkaHandle reader;
  if (o.wait) reader = results_reader(k);
  // The signature, and a new trace the processor carries to the command's
  // Klarna call and results (klarnactl payments trace shows it).
  auto headers = command_signature_headers(g, json);
  headers.emplace_back(klarna::contract::header::traceparent, core::new_traceparent());
  produce(k, o.key.empty() ? key : o.key, json, headers);
  if (!o.wait) {
    std::cout << (o.json ? R"({"command_id":)" + json_quote(id) + R"(,"status":"sent"})"
                         : "sent " + id)
              << "\n";
    return;
  }
  const bool ok = wait_for_result(reader.get(), id, o);
  rd_kafka_consumer_close(reader.get());
  if (!ok) throw CommandFailed("command " + id + " did not succeed");
}

CLI::App* with_send_options(CLI::App* cmd, SendOptions& o) {
  cmd->add_option("--command-id", o.command_id, "command_id (default: a random ctl-…)");
  cmd->add_option("--key", o.key, "Kafka key (default: the payment's id or reference)");
  cmd->add_flag("--wait", o.wait, "wait for the final result on klarna.command-results");
  cmd->add_option("--timeout", o.timeout_s, "seconds --wait waits (default 60)")
      ->check(CLI::Range(1, 3600));
  cmd->add_flag("--json", o.json, "print result messages as JSON");
  return cmd;
}

void prepare(SendOptions& o) {
  if (o.command_id.empty()) o.command_id = random_id();
}

namespace {

// The command's JSON: command_id and type first, then the type's fields.
class CommandJson {
 public:
  CommandJson(const SendOptions& o, std::string_view type) {
    w_.begin_object().field("command_id", o.command_id).field("type", type);
  }
  template <class T>
  CommandJson& field(std::string_view k, const T& v) {
    w_.field(k, v);
    return *this;
  }
  template <class T>
  CommandJson& maybe(std::string_view k, const std::optional<T>& v) {
    if (v) w_.field(k, *v);
    return *this;
  }
  CommandJson& raw(std::string_view k, const std::optional<std::string>& json) {
    if (json) w_.key(k).raw(*json);
    return *this;
  }
  std::string done() {
    w_.end_object();
    return w_.take();
  }

 private:
  core::JsonWriter w_;
};

struct AuthorizeOptions {
  std::string account, currency, reference, capture = "LATER";
  std::int64_t amount = 0;
  std::optional<std::string> customer_token_file, interop_token_file, interop_data_file;
  std::optional<std::string> supplementary_purchase_data, step_up_config;
  std::optional<std::string> payment_option_id, request_customer_token;
};

void register_authorize(CLI::App& app, const GlobalOptions& g) {
  auto o = std::make_shared<SendOptions>();
  auto a = std::make_shared<AuthorizeOptions>();
  auto* cmd = with_send_options(
      app.add_subcommand("authorize", "Initial authorization (command `authorize`)"), *o);
  cmd->add_option("--account", a->account, "partner_account_id")->required();
  cmd->add_option("--amount", a->amount, "minor units")->required();
  cmd->add_option("--currency", a->currency, "ISO 4217")->required();
  cmd->add_option("--reference", a->reference, "payment_transaction_reference")->required();
  cmd->add_option("--capture", a->capture, "NOW | LATER (default LATER)");
  cmd->add_option("--customer-token-file", a->customer_token_file, "file holding the token");
  cmd->add_option("--interoperability-token-file", a->interop_token_file, "file, as received");
  cmd->add_option("--interoperability-data-file", a->interop_data_file, "file, as received");
  cmd->add_option("--supplementary-purchase-data", a->supplementary_purchase_data, "JSON object");
  cmd->add_option("--step-up-config", a->step_up_config, "JSON object, sent as is");
  cmd->add_option("--payment-option-id", a->payment_option_id, "payment_option_id");
  cmd->add_option("--request-customer-token", a->request_customer_token,
                  "JSON object ({\"scopes\":[…],\"customer_token_reference\"}), sent as is");
  cmd->callback([&g, o, a] {
    prepare(*o);
    auto file = [](const std::optional<std::string>& f) {
      return f ? std::optional(read_secret(*f)) : std::nullopt;
    };
    CommandJson j(*o, "authorize");
    j.field("partner_account_id", a->account).field("amount", a->amount);
    j.field("currency", a->currency).field("payment_transaction_reference", a->reference);
    j.field("capture", a->capture).maybe("customer_token", file(a->customer_token_file));
    j.maybe("interoperability_token", file(a->interop_token_file));
    j.maybe("interoperability_data", file(a->interop_data_file));
    j.raw("supplementary_purchase_data", a->supplementary_purchase_data);
    j.raw("step_up_config", a->step_up_config);
    j.maybe("payment_option_id", a->payment_option_id);
    j.raw("request_customer_token", a->request_customer_token);
    send(g, *o, a->reference, j.done());
  });
}

void register_capture(CLI::App& app, const GlobalOptions& g) {
  auto o = std::make_shared<SendOptions>();
  auto txn = std::make_shared<std::string>();
  auto amount = std::make_shared<std::optional<std::int64_t>>();
  auto reference = std::make_shared<std::optional<std::string>>();
  auto* cmd = with_send_options(app.add_subcommand("capture", "Capture (command `capture`)"), *o);
  cmd->add_option("--transaction", *txn, "payment_transaction_id")->required();
  cmd->add_option("--amount", *amount, "minor units (default: all that remains)");
  cmd->add_option("--reference", *reference, "payment_capture_reference");
  cmd->callback([&g, o, txn, amount, reference] {
    prepare(*o);
    CommandJson j(*o, "capture");
    j.field("payment_transaction_id", *txn).maybe("amount", *amount).maybe("reference", *reference);
    send(g, *o, *txn, j.done());
  });
}

void register_refund(CLI::App& app, const GlobalOptions& g) {
  auto o = std::make_shared<SendOptions>();
  auto txn = std::make_shared<std::optional<std::string>>();
  auto capture = std::make_shared<std::optional<std::string>>();
  auto amount = std::make_shared<std::int64_t>(0);
  auto reference = std::make_shared<std::optional<std::string>>();
  auto* cmd = with_send_options(
      app.add_subcommand("refund", "Refund a transaction or one capture (command `refund`)"), *o);
  auto* t = cmd->add_option("--transaction", *txn, "payment_transaction_id");
  cmd->add_option("--capture", *capture, "payment_capture_id")->excludes(t);
  cmd->add_option("--amount", *amount, "minor units")->required();
  cmd->add_option("--reference", *reference, "refund reference");
  cmd->callback([&g, o, txn, capture, amount, reference] {
    prepare(*o);
    CommandJson j(*o, "refund");
    j.maybe("payment_transaction_id", *txn).maybe("payment_capture_id", *capture);
    j.field("amount", *amount).maybe("reference", *reference);
    send(g, *o, txn->value_or(capture->value_or("")), j.done());
  });
}

// void and cancel: one id each.
void register_single_id(CLI::App& app, const GlobalOptions& g, const std::string& type,
                        const std::string& option, const std::string& field,
                        const std::string& help) {
  auto o = std::make_shared<SendOptions>();
  auto id = std::make_shared<std::string>();
  auto* cmd = with_send_options(app.add_subcommand(type, help), *o);
  cmd->add_option(option, *id, field)->required();
  cmd->callback([&g, o, id, type, field] {
    prepare(*o);
    send(g, *o, *id, CommandJson(*o, type).field(field, *id).done());
  });
}

}  // namespace

// `klarnactl interoperability sdk-token`: the command `sdk_token`; with
// --wait the result (holding the sdk_token) is printed.
void register_interoperability(CLI::App& app, const GlobalOptions& g) {
  auto* group = app.add_subcommand("interoperability", "Klarna's Interoperability API");
  group->require_subcommand(1);
  auto o = std::make_shared<SendOptions>();
  auto account = std::make_shared<std::string>();
  auto token_file = std::make_shared<std::string>();
  auto* cmd =
      with_send_options(group->add_subcommand("sdk-token",
                                              "An SDK token for an interoperability token (command "
                                              "`sdk_token`; --wait prints it)"),
                        *o);
  cmd->add_option("--account", *account, "partner_account_id")->required();
  cmd->add_option("--token-file", *token_file, "file holding the interoperability token")
      ->required();
  cmd->callback([&g, o, account, token_file] {
    prepare(*o);
    CommandJson j(*o, "sdk_token");
    j.field("partner_account_id", *account);
    j.field("interoperability_token", read_secret(*token_file));
    send(g, *o, *account, j.done());
  });
}

void register_commands_commands(CLI::App& app, const GlobalOptions& global) {
  register_interoperability(app, global);
  register_authorize(app, global);
  register_capture(app, global);
  register_refund(app, global);
  register_single_id(app, global, "void", "--transaction", "payment_transaction_id",
                     "Void an authorized transaction (command `void`)");
  register_single_id(app, global, "cancel", "--request", "payment_request_id",
                     "Cancel a payment request (command `cancel`)");
}

}  // namespace kpay::ctl
