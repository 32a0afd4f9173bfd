#include "kpay/sim/scenario.hpp"

#include <simdjson.h>

#include <chrono>
#include <stdexcept>

#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"

namespace kpay::sim {

namespace {
const char* const kKinds[] = {"approve", "decline", "expire", "cancel", "step-up"};

bool known_kind(std::string_view k) {
  for (auto* s : kKinds) {
    if (k == s) return true;
  }
  return false;
}

// Reads one string field from a JSON object, possibly nested one level
// ("payment_request.payment_request_id").
std::string json_field(const std::string& body, std::string_view outer,
                       std::string_view inner = {}) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(body).get(root) != simdjson::SUCCESS) return {};
  simdjson::dom::element e;
  if (root[outer].get(e) != simdjson::SUCCESS) return {};
  if (!inner.empty() && e[inner].get(e) != simdjson::SUCCESS) return {};
  std::string_view v;
  if (e.get_string().get(v) != simdjson::SUCCESS) return {};
  return std::string(v);
}

std::string account_path(const std::string& account) {
  std::string out;
  for (char c : account) {
    if (c == ':') {
      out += "%3A";
    } else {
      out.push_back(c);
    }
  }
  return "/v2/accounts/" + out;
}

std::string encode(const std::string& id) {
  std::string out;
  for (char c : id) {
    if (c == ':') {
      out += "%3A";
    } else {
      out.push_back(c);
    }
  }
  return out;
}
}  // namespace

std::vector<std::pair<std::string, int>> parse_mix(const std::vector<std::string>& entries) {
  std::vector<std::pair<std::string, int>> out;
  for (const auto& e : entries) {
    auto colon = e.find(':');
    std::string kind = e.substr(0, colon);
    int weight = 1;
    if (colon != std::string::npos) {
      try {
        weight = std::stoi(e.substr(colon + 1));
      } catch (const std::exception&) {
        throw std::invalid_argument("bad weight in '" + e + "'");
      }
    }
    if (!known_kind(kind)) {
      throw std::invalid_argument("unknown journey kind '" + kind +
                                  "' (approve, decline, expire, cancel, step-up)");
    }
    if (weight < 0) throw std::invalid_argument("negative weight in '" + e + "'");
    if (weight > 0) out.emplace_back(kind, weight);
  }
  if (out.empty()) throw std::invalid_argument("the mix is empty");
  return out;
}

bool parse_scenario_json(const std::string& body, ScenarioOptions& out, std::string& error) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(body).get(root) != simdjson::SUCCESS || !root.is_object()) {
    error = "body must be a JSON object";
    return false;
  }
  std::int64_t i;
  if (root["journeys"].get_int64().get(i) == simdjson::SUCCESS) out.journeys = static_cast<int>(i);
  if (root["rate"].get_int64().get(i) == simdjson::SUCCESS && i > 0)
    out.rate_per_second = static_cast<double>(i);
  if (root["disputes"].get_int64().get(i) == simdjson::SUCCESS) out.disputes = static_cast<int>(i);
  if (root["settlements"].get_int64().get(i) == simdjson::SUCCESS)
    out.settlements = static_cast<int>(i);
  if (root["dispute_wait_ms"].get_int64().get(i) == simdjson::SUCCESS) out.dispute_wait_ms = i;
  bool b;
  if (root["merchant_actions"].get_bool().get(b) == simdjson::SUCCESS) out.merchant_actions = b;
  if (root["repeat"].get_bool().get(b) == simdjson::SUCCESS) out.repeat = b;
  auto strings = [&](std::string_view key, std::vector<std::string>& dst) {
    simdjson::dom::array arr;
    if (root[key].get_array().get(arr) != simdjson::SUCCESS) return false;
    dst.clear();
    for (auto e : arr) {
      std::string_view s;
      if (e.get_string().get(s) == simdjson::SUCCESS) dst.emplace_back(s);
    }
    return true;
  };
  std::vector<std::string> mix;
  try {
    if (strings("mix", mix)) out.mix = parse_mix(mix);
  } catch (const std::invalid_argument& e) {
    error = e.what();
    return false;
  }
  std::vector<std::string> versions;
  if (strings("versions", versions)) {
    for (const auto& v : versions) {
      if (v != "v1" && v != "v2") {
        error = "versions: entries must be v1 or v2";
        return false;
      }
    }
    if (!versions.empty()) out.versions = versions;
  }
  if (out.journeys < 0 || out.disputes < 0 || out.settlements < 0 || out.dispute_wait_ms < 0) {
    error = "counts must be non-negative";
    return false;
  }
  return true;
}

ScenarioRunner::~ScenarioRunner() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

bool ScenarioRunner::start(ScenarioOptions options) {
  bool expected = false;
  if (!running_.compare_exchange_strong(expected, true)) return false;
  if (thread_.joinable()) thread_.join();
  stop_ = false;
  thread_ = std::thread([this, o = std::move(options)]() mutable { run(std::move(o)); });
  return true;
}

void ScenarioRunner::count(const std::string& what) {
  std::lock_guard lk(mu_);
  ++counters_[what];
}

std::string ScenarioRunner::status_json() const {
  std::lock_guard lk(mu_);
  core::JsonWriter w;
  w.begin_object().field("running", running_.load()).field("finished", finished_.load());
  w.key("counters").begin_object();
  for (const auto& [k, v] : counters_) w.field(k, v);
  w.end_object();
  if (!last_error_.empty()) w.field("last_error", last_error_);
  w.end_object();
  return w.take();
}

ApiResponse ScenarioRunner::control(const ApiRequest& req) {
  if (req.method == "GET")
    return ApiResponse{200, {{"Content-Type", "application/json"}}, status_json()};
  if (req.method == "DELETE") {
    stop_ = true;  // the running round stops at its next step
    return ApiResponse{200, {{"Content-Type", "application/json"}}, status_json()};
  }
  if (req.method != "POST")
    return klarna_error(405, "INPUT_ERROR", "METHOD_NOT_ALLOWED", "GET, POST or DELETE");
  ScenarioOptions o;
  std::string error;
  if (!parse_scenario_json(req.body.empty() ? "{}" : req.body, o, error)) {
    return klarna_error(400, "INPUT_ERROR", "VALIDATION_ERROR", error);
  }
  if (!start(std::move(o)))
    return klarna_error(409, "RESOURCE_ERROR", "RESOURCE_CONFLICT", "a scenario is running");
  return ApiResponse{202, {{"Content-Type", "application/json"}}, status_json()};
}

void ScenarioRunner::fail(const std::string& error) {
  std::lock_guard lk(mu_);
  last_error_ = error;
}

// Through SimApi::handle() like any caller: /v2 calls carry the credentials, an
// idempotency key on POST, and a User-Agent that tells them apart in /_sim/calls.
ApiResponse ScenarioRunner::call(const std::string& method, const std::string& path,
                                 const std::string& body,
                                 std::map<std::string, std::string> headers) {
  ApiRequest r;
  r.method = method;
  r.target = path;
  r.body = body;
  r.headers = std::move(headers);
  if (path.rfind("/_sim", 0) != 0) {
    r.headers["user-agent"] = "klarna-sim-scenario";
    if (auto auth = api_.authorization(); !auth.empty()) r.headers["authorization"] = auth;
    if (method == "POST" && !r.headers.count("klarna-idempotency-key")) {
      std::lock_guard lk(mu_);
      r.headers["klarna-idempotency-key"] = "scenario-" + std::to_string(++key_seq_);
    }
  }
  return api_.handle(r);
}

struct ScenarioRunner::Journey {
  std::string acct;  // "/v2/accounts/{account}"
  std::int64_t amount = 0;
  std::string ref;
  std::string version;  // "v1" or "v2"
};

std::string ScenarioRunner::create_request(const Journey& j) {
  auto res = call("POST", j.acct + "/payment/requests",
                  R"({"currency":"USD","amount":)" + std::to_string(j.amount) +
                      R"(,"payment_request_reference":")" + j.ref + "\"}");
  return res.status == 201 ? json_field(res.body, "payment_request_id") : std::string();
}

// The partner's system starts the payment; without a customer token the
// answer is STEP_UP_REQUIRED with a payment request for the customer.
std::string ScenarioRunner::initial_authorization(const Journey& j) {
  auto res = call("POST", j.acct + "/payment/authorize",
                  R"({"currency":"USD","request_payment_transaction":{"amount":)" +
                      std::to_string(j.amount) + R"(,"payment_transaction_reference":")" + j.ref +
                      R"(","capture":"LATER"},"step_up_config":{}})");
  return json_field(res.body, "payment_request", "payment_request_id");
}

ApiResponse ScenarioRunner::customer(const Journey& j, const std::string& request_id,
                                     const std::string& action) {
  return call("POST", "/_sim/payment-requests/" + encode(request_id) + "/" + action,
              R"({"flow":")" + j.version + "\"}");
}

// Gen 1: confirm the token; returns the transaction id ("" on failure).
std::string ScenarioRunner::confirm(const Journey& j, const ApiResponse& approved) {
  auto token = json_field(approved.body, "state_context", "payment_confirmation_token");
  auto res = call("POST", j.acct + "/payment/confirmation-tokens/" + encode(token) + "/confirm",
                  R"({"currency":"USD","payment_amount":)" + std::to_string(j.amount) +
                      R"(,"payment_transaction_reference":")" + j.ref +
                      R"(","config":{"capture":false}})");
  if (res.status != 200) return {};
  return json_field(res.body, "state_context", "payment_transaction_id");
}

// Gen 2: final authorization with the session token; returns the transaction id.
std::string ScenarioRunner::final_authorization(const Journey& j, const ApiResponse& approved) {
  auto token = json_field(approved.body, "state_context", "klarna_network_session_token");
  auto res = call("POST", j.acct + "/payment/authorize",
                  R"({"currency":"USD","request_payment_transaction":{"amount":)" +
                      std::to_string(j.amount) + R"(,"payment_transaction_reference":")" + j.ref +
                      R"(","capture":"LATER"}})",
                  {{"klarna-network-session-token", token}});
  if (res.status != 200) return {};
  simdjson::dom::parser p;
  simdjson::dom::element root;
  std::string_view v;
  if (p.parse(res.body).get(root) != simdjson::SUCCESS ||
      root["payment_transaction_response"]["payment_transaction"]["payment_transaction_id"]
              .get_string()
              .get(v) != simdjson::SUCCESS) {
    return {};
  }
  return std::string(v);
}

bool ScenarioRunner::capture_full(const Journey& j, const std::string& txid) {
  if (txid.empty()) return false;
  auto res = call("POST", j.acct + "/payment/transactions/" + encode(txid) + "/capture",
                  R"({"capture_amount":)" + std::to_string(j.amount) +
                      R"(,"payment_capture_reference":")" + j.ref + "-cap\"}");
  return res.status == 201;
}

// The merchant backend's part after the customer approved: confirm (v1) or
// final authorization (v2), then a full capture. Only with merchant_actions.
bool ScenarioRunner::merchant_follow_up(const Journey& j, const ApiResponse& approved) {
  auto txid = j.version == "v1" ? confirm(j, approved) : final_authorization(j, approved);
  return capture_full(j, txid);
}

bool ScenarioRunner::journey(const ScenarioOptions& o, const std::string& kind,
                             const std::string& version, int index) {
  const Journey j{account_path(o.account_id), 1000 + (index % 50) * 100,
                  "scenario-" + std::to_string(index), version};
  if (kind == "step-up" || kind == "approve") {
    auto id = kind == "step-up" ? initial_authorization(j) : create_request(j);
    if (id.empty()) return false;
    auto approved = customer(j, id, "approve");
    if (approved.status != 200) return false;
    return !o.merchant_actions || merchant_follow_up(j, approved);
  }
  auto id = create_request(j);
  if (id.empty()) return false;
  if (kind == "decline") return customer(j, id, "decline").status == 200;
  if (kind == "expire")
    return customer(j, id, "start").status == 200 && customer(j, id, "expire").status == 200;
  if (kind == "cancel")
    return call("DELETE", j.acct + "/payment/requests/" + encode(id), "").status == 200;
  return false;
}

// Captured, undisputed transactions. Without merchant_actions the captures are
// someone else's (asynchronous), so wait up to dispute_wait_ms for enough.
std::vector<std::string> ScenarioRunner::dispute_candidates(const ScenarioOptions& o) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(o.dispute_wait_ms);
  auto txs = api_.disputable_transactions();
  while (!o.merchant_actions && !stop_ && txs.size() < static_cast<std::size_t>(o.disputes) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    txs = api_.disputable_transactions();
  }
  return txs;
}

// Even: INITIATED → REPRESENTMENT → CLOSED/WON; odd: INITIATED → CLOSED/LOST.
bool ScenarioRunner::dispute(const std::string& txid, bool win) {
  auto res = call("POST", "/_sim/disputes", R"({"payment_transaction_id":")" + txid + "\"}");
  auto did = json_field(res.body, "payment_dispute_id");
  if (did.empty()) return false;
  auto transition = [&](const std::string& body) {
    return call("POST", "/_sim/disputes/" + encode(did) + "/transition", body).status == 200;
  };
  if (win) {
    return transition(R"({"state":"REPRESENTMENT"})") &&
           transition(R"({"state":"CLOSED","outcome":"WON"})");
  }
  return transition(R"({"state":"CLOSED","outcome":"LOST"})");
}

void ScenarioRunner::run_disputes(const ScenarioOptions& o) {
  if (o.disputes == 0) return;
  auto txs = dispute_candidates(o);
  if (txs.empty()) {
    fail("no captured transaction to dispute (capture some, or use merchant_actions)");
    return;
  }
  for (int i = 0; i < o.disputes && !stop_; ++i) {
    bool ok = dispute(txs[static_cast<std::size_t>(i) % txs.size()], i % 2 == 0);
    count(ok ? "disputes_ok" : "disputes_failed");
  }
}

void ScenarioRunner::run_round(const ScenarioOptions& o, const std::vector<std::string>& wheel,
                               int round) {
  count("rounds");
  auto t0 = std::chrono::steady_clock::now();
  auto interval = std::chrono::duration<double>(1.0 / o.rate_per_second);
  for (int j = 0; j < o.journeys && !stop_; ++j) {
    const int i = round * o.journeys + j;  // unique per journey across rounds (references)
    auto due = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(interval * j);
    while (!stop_ && std::chrono::steady_clock::now() < due) {
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
          due - std::chrono::steady_clock::now(), std::chrono::milliseconds(50)));
    }
    const auto& kind = wheel[static_cast<std::size_t>(i) % wheel.size()];
    // Shifted by one per pass over the wheel, so that kinds and versions do not
    // stay paired when the wheel and the version list have a common divisor.
    const auto ui = static_cast<std::size_t>(i);
    const auto& version = o.versions[(ui + ui / wheel.size()) % o.versions.size()];
    bool ok = journey(o, kind, version, i);
    count("journeys_started");
    count(ok ? "journeys_ok" : "journeys_failed");
    count("journey." + kind + "." + version);
    if (!ok) fail("journey " + std::to_string(i) + " (" + kind + ", " + version + ") failed");
  }
  if (!stop_) run_disputes(o);
  for (int i = 0; i < o.settlements && !stop_; ++i) {
    bool ok = call("POST", "/_sim/settlements", "{}").status == 201;
    count(ok ? "settlements_ok" : "settlements_failed");
  }
}

void ScenarioRunner::run(ScenarioOptions o) {
  core::Logger log("sim");
  {
    std::lock_guard lk(mu_);
    counters_.clear();
    last_error_.clear();
  }
  finished_ = false;
  log.info("scenario started", {{"journeys", o.journeys},
                                {"rate", o.rate_per_second},
                                {"merchant_actions", o.merchant_actions}});
  // Deterministic weighted round robin over the mix.
  std::vector<std::string> wheel;
  for (const auto& [k, w] : o.mix) {
    for (int i = 0; i < w; ++i) wheel.push_back(k);
  }
  // With `repeat`, rounds follow each other until stop (the continuous demo).
  for (int round = 0; round == 0 || (o.repeat && !stop_); ++round) run_round(o, wheel, round);
  log.info("scenario finished");
  finished_ = true;
  running_ = false;
}

}  // namespace kpay::sim
