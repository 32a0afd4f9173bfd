// Dispute operations end to end, as separate processes over real sockets:
//   dispute_* commands → klarna.commands (embedded Kafka) → klarna-processor
//     (state checked against the stored dispute) → outbox worker → klarna-sim's
//     Dispute API (HTTPS, Basic) → answer → dispute state + klarna.command-results
//   klarnactl disputes upload|download → the Klarna client → klarna-sim
// while the sim's webhooks (the dispute opened, moved) reach the processor
// through klarna-receiver. One system serves the whole suite.
#include <gtest/gtest.h>
#include <simdjson.h>
#include <sqlite3.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include "child_process.hpp"
#include "db_dump.hpp"
#include "e2e_system.hpp"
#include "http_client.hpp"
#include "kafka_reader.hpp"
#include "kpay/core/embedded_kafka.hpp"
#include "kpay/core/json_writer.hpp"
#include "kpay/core/kafka.hpp"
#include "kpay/core/percent_encode.hpp"
#include "kpay/klarna/api_client.hpp"
#include "kpay/klarna/envelope.hpp"
#include "kpay/processor/follow_ups.hpp"
#include "tls_cert.hpp"

using namespace kpay;
using namespace kpay::test;

namespace {

const std::string kKeyId = "krn:partner:global:notification:signing-key:dsp-0001";
const std::string kSecret = "dsp-signing-key-NOT-REAL";
const std::string kApiKey = "dsp-api-key-NOT-REAL";
const std::string kAccount = "krn:partner:global:account:test:DSPS0001";
// Every event but payment.dispute.state-change.representment: a dispute moved
// to REPRESENTMENT in the sim (not by us) leaves our stored state stale, so an
// operation then meets Klarna's 409 (ConflictIsReReadAndReported).
const std::string kEventTypes =
    R"(webhooks.event_types=["payment.request.*","payment.transaction.*",)"
    R"("payment.dispute.state-change.initiated","payment.dispute.state-change.pre-arbitration",)"
    R"("payment.dispute.state-change.arbitration","payment.dispute.state-change.closed",)"
    R"("payment.dispute.updated.*"])";

class DisputesE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    system_ =
        new System({"disputes-e2e", "disputes", kKeyId, kSecret, kApiKey, {"--set", kEventTypes}});
    system_->start_receiver();
    system_->start_sim();
    system_->start_processor();
  }
  static void TearDownTestSuite() {
    system_->stop_processor();
    delete system_;
    system_ = nullptr;
  }
  static System& sys() { return *system_; }
  static System* system_;

  static Result command(const std::string& key, const std::string& json, const std::string& id) {
    sys().send(key, json);
    return sys().final_result(id);
  }

  // An authorized, captured transaction (commands), disputed in the sim; the
  // dispute's INITIATED webhook applied. Returns the dispute id.
  static std::string open_dispute(const std::string& name) {
    const std::string auth = "auth-" + name;
    sys().send("ref-" + name,
               R"({"command_id":")" + auth + R"(","type":"authorize","partner_account_id":")" +
                   kAccount + R"(","amount":1000,"currency":"EUR",)" +
                   R"("payment_transaction_reference":"ref-)" + name +
                   R"(","capture":"LATER","customer_token":"ctok-)" + name + R"("})");
    const auto a = sys().final_result(auth);
    EXPECT_EQ(a.status, "succeeded") << a.raw;
    const auto txn = a.payment_transaction_id;
    const auto cap = command(txn,
                             R"({"command_id":"cap-)" + name +
                                 R"(","type":"capture","payment_transaction_id":")" + txn + "\"}",
                             "cap-" + name);
    EXPECT_EQ(cap.status, "succeeded") << cap.raw;
    const auto created =
        sys().sim("POST", "/_sim/disputes", R"({"payment_transaction_id":")" + txn + "\"}");
    simdjson::dom::parser p;
    simdjson::dom::element e;
    if (p.parse(created).get(e) != simdjson::SUCCESS) {
      ADD_FAILURE() << "no dispute: " << created;
      return "";
    }
    const auto id = str_at(e, "payment_dispute_id");
    EXPECT_TRUE(wait_for_state(id, "INITIATED")) << sys().processor_log();
    return id;
  }
  static std::string stored_state(const std::string& dispute) {
    return query_text(sys().db(), "SELECT state FROM disputes WHERE id = '" + dispute + "'");
  }
  static bool wait_for_state(const std::string& dispute, const std::string& state) {
    return wait_until([&] { return stored_state(dispute) == state; }, std::chrono::seconds(30));
  }
  // Klarna's (the sim's) state of the dispute.
  static std::string sim_state(const std::string& dispute) {
    simdjson::dom::parser p;
    simdjson::dom::element e;
    const auto body = sys().sim("GET", "/v2/accounts/" + core::percent_encode(kAccount) +
                                           "/payment/disputes/" + core::percent_encode(dispute));
    if (p.parse(body).get(e) != simdjson::SUCCESS) return "";
    return str_at(e, "state");
  }
  static void sim_transition(const std::string& dispute, const std::string& state) {
    const auto r = sys().sim("POST", "/_sim/disputes/" + dispute + "/transition",
                             R"({"state":")" + state + "\"}");
    ASSERT_NE(r.find(state), std::string::npos) << r;
  }
  // A small valid PDF written to the test's directory.
  static std::string pdf(const std::string& name) {
    const std::string path = sys().dir() + "/" + name + ".pdf";
    std::ofstream(path, std::ios::binary)
        << "%PDF-1.4\n% evidence for " << name << "\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n";
    return path;
  }
  static std::string upload(const std::string& dispute, const std::string& file) {
    auto [rc, out] = sys().ctl({"disputes", "upload", dispute, file});
    EXPECT_EQ(rc, 0) << out;
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    const auto line = out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
    return line;
  }
  static std::string represent_cmd(const std::string& id, const std::string& dispute,
                                   const std::string& attachment) {
    return R"({"command_id":")" + id + R"(","type":"dispute_represent","payment_dispute_id":")" +
           dispute + R"(","attachments":[{"payment_dispute_attachment_id":")" + attachment +
           R"(","description":"proof of delivery"}],"additional_information":"Delivered."})";
  }
  static std::string simple_cmd(const std::string& id, const std::string& type,
                                const std::string& dispute, const std::string& extra = "") {
    return R"({"command_id":")" + id + R"(","type":")" + type + R"(","payment_dispute_id":")" +
           dispute + "\"" + extra + "}";
  }
};
System* DisputesE2E::system_ = nullptr;

TEST_F(DisputesE2E, UploadThenRepresentMovesTheDisputeToRepresentment) {
  const auto dispute = open_dispute("rep-1");
  ASSERT_FALSE(dispute.empty());
  // Refused before sending: not an accepted type, larger than 7 MB.
  const auto uploads_before = sys().calls_on("payment.disputes.attachments.upload");
  std::ofstream(sys().dir() + "/notes.txt") << "plain text is no evidence\n";
  auto [rc, out] = sys().ctl({"disputes", "upload", dispute, sys().dir() + "/notes.txt"});
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("not a PDF, JPEG, PNG or DOCX"), std::string::npos) << out;
  {
    std::ofstream big(sys().dir() + "/big.pdf", std::ios::binary);
    big << "%PDF-1.4\n" << std::string(7'000'001 - 9, 'x');
  }
  std::tie(rc, out) = sys().ctl({"disputes", "upload", dispute, sys().dir() + "/big.pdf"});
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("at most 7 MB"), std::string::npos) << out;
  EXPECT_EQ(sys().calls_on("payment.disputes.attachments.upload"), uploads_before)
      << "refused files never reach Klarna";

  const auto file = pdf("rep-1");
  const auto attachment = upload(dispute, file);
  ASSERT_NE(attachment.find("dispute-attachment"), std::string::npos) << attachment;
  EXPECT_EQ(upload(dispute, file), attachment) << "the same file again: the same key, one upload";

  const auto r = command(dispute, represent_cmd("rep-1", dispute, attachment), "rep-1");
  EXPECT_EQ(r.status, "succeeded") << r.raw;
  EXPECT_EQ(r.payment_dispute_id, dispute);
  EXPECT_EQ(r.dispute_state, "REPRESENTMENT") << r.raw;
  EXPECT_EQ(sim_state(dispute), "REPRESENTMENT");
  EXPECT_TRUE(wait_for_state(dispute, "REPRESENTMENT"));
  EXPECT_EQ(sys().executions_of(processor::idempotency_key("dispute_represent", "rep-1", "")), 1);
  // What Klarna received: the attachment and the text, Klarna's names.
  const auto calls = sys().calls_with_key(
      "payment.disputes.represent", processor::idempotency_key("dispute_represent", "rep-1", ""));
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_NE(calls[0].find(attachment), std::string::npos) << calls[0];

  // download: the bytes uploaded.
  std::tie(rc, out) = sys().ctl(
      {"disputes", "download", dispute, attachment, "--output", sys().dir() + "/back.pdf"});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(read_file(sys().dir() + "/back.pdf"), read_file(file));
  // Operators' remote views.
  std::tie(rc, out) = sys().ctl({"disputes", "show", dispute, "--remote"});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("\"state\":\"REPRESENTMENT\""), std::string::npos) << out;
  std::tie(rc, out) = sys().ctl({"disputes", "list", "--remote", "--account", kAccount, "--json"});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find(dispute), std::string::npos) << out;
}

TEST_F(DisputesE2E, AcceptLossThroughKlarnactlClosesTheDispute) {
  const auto dispute = open_dispute("loss-1");
  ASSERT_FALSE(dispute.empty());
  auto [rc, out] =
      sys().ctl({"disputes", "accept-loss", dispute, "--command-id", "loss-1", "--wait", "--json",
                 "--set", "kafka.bootstrap_servers=" + sys().bootstrap()});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find(R"("status":"succeeded")"), std::string::npos) << out;
  EXPECT_NE(out.find(R"("dispute_state":"CLOSED")"), std::string::npos) << out;
  // accepted, then one final (klarnactl stops at the final; accepted may be
  // published after it: the contract only promises one final result).
  std::vector<std::string> statuses;
  EXPECT_TRUE(wait_until([&] {
    statuses.clear();  // results_for() returns every result read so far, each time
    for (const auto& x : sys().results_for("loss-1")) statuses.push_back(x.status);
    return statuses.size() >= 2;
  }));
  EXPECT_EQ(statuses.size(), 2u);
  EXPECT_EQ(std::count(statuses.begin(), statuses.end(), "accepted"), 1);
  EXPECT_EQ(statuses.front(), "accepted") << "per key, accepted before the final result";
  EXPECT_EQ(sim_state(dispute), "CLOSED");
  EXPECT_TRUE(wait_for_state(dispute, "CLOSED"));
  EXPECT_EQ(query_text(sys().db(), "SELECT outcome FROM disputes WHERE id = '" + dispute + "'"),
            "LOST");
  EXPECT_EQ(sys().executions_of(processor::idempotency_key("dispute_accept_loss", "loss-1", "")),
            1);
}

TEST_F(DisputesE2E, AppealFromPreArbitrationMovesToArbitration) {
  const auto dispute = open_dispute("appeal-1");
  ASSERT_FALSE(dispute.empty());
  sim_transition(dispute, "REPRESENTMENT");
  sim_transition(dispute, "PRE_ARBITRATION");
  ASSERT_TRUE(wait_for_state(dispute, "PRE_ARBITRATION")) << sys().processor_log();
  const auto attachment = upload(dispute, pdf("appeal-1"));
  const auto r = command(dispute,
                         simple_cmd("appeal-1", "dispute_appeal", dispute,
                                    R"(,"additional_information":"The customer signed for it.",)"
                                    R"("attachments":[{"payment_dispute_attachment_id":")" +
                                        attachment + R"("}])"),
                         "appeal-1");
  EXPECT_EQ(r.status, "succeeded") << r.raw;
  EXPECT_EQ(r.dispute_state, "ARBITRATION") << r.raw;
  EXPECT_EQ(sim_state(dispute), "ARBITRATION");
  EXPECT_TRUE(wait_for_state(dispute, "ARBITRATION"));
}

TEST_F(DisputesE2E, WrongStateIsRefusedBeforeKlarna) {
  const auto dispute = open_dispute("wrong-1");
  ASSERT_FALSE(dispute.empty());
  const auto appeals = sys().calls_on("payment.disputes.appeal");
  const auto r = command(
      dispute,
      simple_cmd("wrong-appeal-1", "dispute_appeal", dispute, R"(,"additional_information":"x")"),
      "wrong-appeal-1");
  EXPECT_EQ(r.status, "rejected") << r.raw;
  EXPECT_NE(r.reason.find("wrong_state: the dispute is INITIATED"), std::string::npos) << r.raw;
  // Bad fields are refused too (the decoder): represent without attachments.
  const auto bad =
      command(dispute, simple_cmd("wrong-rep-1", "dispute_represent", dispute), "wrong-rep-1");
  EXPECT_EQ(bad.status, "rejected") << bad.raw;
  EXPECT_NE(bad.reason.find("missing_field: attachments"), std::string::npos) << bad.raw;
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(sys().calls_on("payment.disputes.appeal"), appeals) << "no call reached Klarna";
  EXPECT_EQ(sim_state(dispute), "INITIATED");
}

TEST_F(DisputesE2E, ConflictIsReReadAndReported) {
  const auto dispute = open_dispute("conflict-1");
  ASSERT_FALSE(dispute.empty());
  // Klarna moves it; its webhook does not reach us (not subscribed): stale.
  sim_transition(dispute, "REPRESENTMENT");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_EQ(stored_state(dispute), "INITIATED");
  const auto r = command(dispute, simple_cmd("conflict-loss-1", "dispute_accept_loss", dispute),
                         "conflict-loss-1");
  EXPECT_EQ(r.status, "failed") << r.raw;
  EXPECT_NE(r.reason.find("409"), std::string::npos) << r.raw;
  EXPECT_NE(r.reason.find("re-read: the dispute is REPRESENTMENT"), std::string::npos) << r.raw;
  EXPECT_EQ(r.dispute_state, "REPRESENTMENT") << r.raw;
  EXPECT_EQ(stored_state(dispute), "REPRESENTMENT") << "the re-read state is ours now";
  EXPECT_EQ(sim_state(dispute), "REPRESENTMENT") << "nothing executed";
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  int finals = 0;
  for (const auto& x : sys().results_for("conflict-loss-1")) finals += x.final();
  EXPECT_EQ(finals, 1) << "exactly one final result";
}

TEST_F(DisputesE2E, EachOperationExecutesOnceUnderFaults) {
  const auto rep = open_dispute("fault-rep");
  const auto loss = open_dispute("fault-loss");
  const auto appeal = open_dispute("fault-appeal");
  ASSERT_FALSE(rep.empty() || loss.empty() || appeal.empty());
  sim_transition(appeal, "REPRESENTMENT");
  sim_transition(appeal, "PRE_ARBITRATION");
  ASSERT_TRUE(wait_for_state(appeal, "PRE_ARBITRATION"));
  sys().sim("POST", "/_sim/faults",
            R"({"rules":["payment.disputes.*:503:50","payment.disputes.*:drop-after:30"]})");
  const auto attachment = upload(rep, pdf("fault-rep"));  // klarnactl retries with its key
  ASSERT_NE(attachment.find("dispute-attachment"), std::string::npos) << attachment;
  sys().send(rep, represent_cmd("fault-rep-1", rep, attachment));
  sys().send(loss, simple_cmd("fault-loss-1", "dispute_accept_loss", loss));
  sys().send(appeal, simple_cmd("fault-appeal-1", "dispute_appeal", appeal,
                                R"(,"additional_information":"appeal under faults")"));
  EXPECT_EQ(sys().final_result("fault-rep-1", std::chrono::seconds(90)).status, "succeeded");
  EXPECT_EQ(sys().final_result("fault-loss-1", std::chrono::seconds(90)).status, "succeeded");
  EXPECT_EQ(sys().final_result("fault-appeal-1", std::chrono::seconds(90)).status, "succeeded");
  sys().sim("POST", "/_sim/faults", R"({"rules":[]})");
  EXPECT_EQ(sys().executions_of(processor::idempotency_key("dispute_represent", "fault-rep-1", "")),
            1);
  EXPECT_EQ(
      sys().executions_of(processor::idempotency_key("dispute_accept_loss", "fault-loss-1", "")),
      1);
  EXPECT_EQ(sys().executions_of(processor::idempotency_key("dispute_appeal", "fault-appeal-1", "")),
            1);
  EXPECT_EQ(sim_state(rep), "REPRESENTMENT");
  EXPECT_EQ(sim_state(loss), "CLOSED");
  EXPECT_EQ(sim_state(appeal), "ARBITRATION");
  EXPECT_TRUE(wait_for_state(rep, "REPRESENTMENT"));
  EXPECT_TRUE(wait_for_state(loss, "CLOSED"));
  EXPECT_TRUE(wait_for_state(appeal, "ARBITRATION"));
  // The faults really happened: the calls outnumber the executions.
  EXPECT_GT(sys().calls_on("payment.disputes.represent") +
                sys().calls_on("payment.disputes.accept-loss") +
                sys().calls_on("payment.disputes.appeal"),
            3u);
}

}  // namespace
