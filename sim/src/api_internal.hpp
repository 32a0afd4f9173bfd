// Internal to kpay_sim: the API's state, its rendering and webhook emission,
// shared by the files that implement the operations (api.cpp: routing,
// idempotency, expiry; payments.cpp: authorize, confirm, capture, refund;
// notifications.cpp: signing keys, subscriptions, simulate; sim_control.cpp:
// the customer's side and /_sim introspection; settlements.cpp and
// settlement_reports.cpp: settlement reports). Not a public header.
#pragma once

#include <simdjson.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "deadline_index.hpp"
#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"
#include "kpay/klarna/signature.hpp"
#include "kpay/sim/api.hpp"
#include "kpay/sim/idempotency.hpp"
#include "kpay/sim/state_machines.hpp"
#include "settlement_state.hpp"

namespace kpay::sim {

using core::JsonWriter;
using core::rfc3339_ms;

namespace detail {

inline ApiResponse json_response(int status, std::string body) {
  return ApiResponse{status, {}, std::move(body)};
}

inline ApiResponse not_found(std::string_view what) {
  return klarna_error(404, "RESOURCE_ERROR", "RESOURCE_NOT_FOUND",
                      std::string(what) + " not found");
}
inline ApiResponse conflict(std::string_view message) {
  return klarna_error(409, "RESOURCE_ERROR", "RESOURCE_CONFLICT", message);
}
inline ApiResponse invalid(std::string_view param, std::string_view reason) {
  return klarna_error(400, "INPUT_ERROR", "VALIDATION_ERROR", "The request is invalid",
                      {{std::string(param), std::string(reason)}});
}

inline std::vector<std::string> split_path(std::string_view target) {
  if (auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
  std::vector<std::string> segs;
  std::size_t i = 0;
  while (i < target.size()) {
    if (target[i] == '/') {
      ++i;
      continue;
    }
    auto j = target.find('/', i);
    if (j == std::string_view::npos) j = target.size();
    segs.push_back(percent_decode(target.substr(i, j - i)));
    i = j;
  }
  return segs;
}

inline std::string query_param(std::string_view target, std::string_view name) {
  auto q = target.find('?');
  if (q == std::string_view::npos) return {};
  auto query = target.substr(q + 1);
  while (!query.empty()) {
    auto amp = query.find('&');
    auto part = query.substr(0, amp);
    auto eq = part.find('=');
    if (part.substr(0, eq) == name) {
      return eq == std::string_view::npos ? std::string() : percent_decode(part.substr(eq + 1));
    }
    if (amp == std::string_view::npos) break;
    query = query.substr(amp + 1);
  }
  return {};
}

// The Dispute API under …/payment/disputes (segments from index 5 on):
// docs/klarna/PAYMENTS-API.md "Disputes".
inline std::string dispute_route(std::string_view method, const std::vector<std::string>& s) {
  const auto n = s.size();
  if (n == 5 && method == "GET") return "payment.disputes.list";
  if (n == 6 && method == "GET") return "payment.disputes.read";
  if (n == 7 && method == "POST") {
    if (s[6] == "accept-loss") return "payment.disputes.accept-loss";
    if (s[6] == "attachments") return "payment.disputes.attachments.upload";
    if (s[6] == "represent") return "payment.disputes.represent";
    if (s[6] == "appeal") return "payment.disputes.appeal";
  }
  if (n == 9 && method == "GET" && s[6] == "attachments" && s[8] == "download") {
    return "payment.disputes.attachments.download";
  }
  return "unknown";
}

struct Route {
  std::string name = "unknown";
  std::string account;           // for /v2/accounts/{account}/…
  std::vector<std::string> ids;  // path parameters after the account
};

inline Route match_route(std::string_view method, const std::vector<std::string>& s) {
  Route r;
  auto n = s.size();
  auto is = [&](std::size_t i, std::string_view v) { return i < n && s[i] == v; };
  if (is(0, "_sim")) {
    r.name = "sim.control";
    return r;
  }
  if (!is(0, "v2")) return r;
  if (is(1, "payment")) {
    // A sub-partner's own calls carry no account (Klarna's curl samples):
    // the sim's account (SimApi::Impl::handle_locked fills it in).
    std::vector<std::string> scoped = {"v2", "accounts", ""};
    scoped.insert(scoped.end(), s.begin() + 1, s.end());
    return match_route(method, scoped);
  }
  if (is(1, "accounts") && n == 5 && is(3, "interoperability") && is(4, "sdk-tokens")) {
    r.account = s[2];
    if (method == "POST") r.name = "interoperability.sdk-tokens";
    return r;
  }
  if (is(1, "accounts") && n >= 5 && is(3, "payment")) {
    r.account = s[2];
    const std::string& kind = s[4];
    if (kind == "requests") {
      if (n == 5 && method == "POST") r.name = "payment.requests.create";
      if (n == 6 && method == "GET") r.name = "payment.requests.read";
      if (n == 6 && method == "DELETE") r.name = "payment.requests.cancel";
      if (n == 6) r.ids = {s[5]};
    } else if (kind == "authorize" && n == 5 && method == "POST") {
      r.name = "payment.authorize";
    } else if (kind == "confirmation-tokens" && n == 7 && s[6] == "confirm" && method == "POST") {
      r.name = "payment.confirm";
      r.ids = {s[5]};
    } else if (kind == "transactions" && n >= 6) {
      r.ids = {s[5]};
      if (n == 6 && method == "GET") r.name = "payment.transactions.read";
      if (n == 6 && method == "PATCH") r.name = "payment.transactions.update";
      if (n == 7 && method == "POST") {
        if (s[6] == "capture") r.name = "payment.transactions.capture";
        if (s[6] == "refund") r.name = "payment.transactions.refund";
        if (s[6] == "void") r.name = "payment.transactions.void";
      }
    } else if (kind == "captures" && n >= 6) {
      r.ids = {s[5]};
      if (n == 6 && method == "GET") r.name = "payment.captures.read";
      if (n == 7 && s[6] == "refund" && method == "POST") r.name = "payment.captures.refund";
    } else if (kind == "refunds" && n == 6 && method == "GET") {
      r.ids = {s[5]};
      r.name = "payment.refunds.read";
    } else if (kind == "disputes") {
      r.name = dispute_route(method, s);
      if (n >= 6) r.ids = {s[5]};
      if (n == 9) r.ids.push_back(s[7]);
    }
    return r;
  }
  if (is(1, "notification") && n >= 3) {
    std::string base = s[2] == "signing-keys" ? "notification.signing-keys"
                       : s[2] == "webhooks"   ? "notification.webhooks"
                                              : "";
    if (base.empty()) return r;
    if (n == 3 && method == "POST") r.name = base + ".create";
    if (n == 3 && method == "GET") r.name = base + ".list";
    if (n >= 4) r.ids = {s[3]};
    if (n == 4 && method == "GET") r.name = base + ".read";
    if (n == 4 && method == "DELETE") r.name = base + ".delete";
    if (n == 4 && method == "PATCH" && s[2] == "webhooks") r.name = base + ".update";
    if (n == 5 && s[4] == "simulate" && method == "POST" && s[2] == "webhooks")
      r.name = base + ".simulate";
    return r;
  }
  if (is(1, "settlements") && method == "GET") {  // docs/klarna/SETTLEMENTS.md
    if (n >= 3) r.ids = {s[2]};
    if (n == 2) r.name = "settlements.list";
    if (n == 3) r.name = "settlements.read";
    if (n == 4 && s[3] == "transactions") r.name = "settlements.transactions";
    if (n == 4 && s[3] == "csv") r.name = "settlements.csv";
    if (n == 5 && s[3] == "payouts" && s[4] == "status") r.name = "settlements.payouts.status";
  }
  return r;
}

// A parsed JSON body. An empty body counts as an empty object.
class Body {
 public:
  bool parse(simdjson::dom::parser& parser, const std::string& text) {
    if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
      empty_ = true;
      return true;
    }
    if (parser.parse(text.data(), text.size(), true).get(root_) != simdjson::SUCCESS) return false;
    return root_.is_object();
  }
  simdjson::dom::element root() const { return root_; }
  bool empty() const { return empty_; }

  static std::optional<std::string> str(simdjson::dom::element obj, std::string_view key) {
    std::string_view v;
    if (!obj.is_object() || obj[key].get_string().get(v) != simdjson::SUCCESS) return std::nullopt;
    return std::string(v);
  }
  static std::optional<std::int64_t> integer(simdjson::dom::element obj, std::string_view key) {
    std::int64_t v;
    if (!obj.is_object() || obj[key].get_int64().get(v) != simdjson::SUCCESS) return std::nullopt;
    return v;
  }
  static std::optional<bool> boolean(simdjson::dom::element obj, std::string_view key) {
    bool v;
    if (!obj.is_object() || obj[key].get_bool().get(v) != simdjson::SUCCESS) return std::nullopt;
    return v;
  }
  static std::optional<simdjson::dom::element> child(simdjson::dom::element obj,
                                                     std::string_view key) {
    simdjson::dom::element e;
    if (!obj.is_object() || obj[key].get(e) != simdjson::SUCCESS) return std::nullopt;
    return e;
  }
  std::optional<std::string> str(std::string_view key) const {
    return empty_ ? std::nullopt : str(root_, key);
  }
  std::optional<std::int64_t> integer(std::string_view key) const {
    return empty_ ? std::nullopt : integer(root_, key);
  }
  std::optional<bool> boolean(std::string_view key) const {
    return empty_ ? std::nullopt : boolean(root_, key);
  }
  std::optional<simdjson::dom::element> child(std::string_view key) const {
    return empty_ ? std::nullopt : child(root_, key);
  }

 private:
  simdjson::dom::element root_;
  bool empty_ = false;
};

inline bool valid_currency(const std::string& c) {
  return c.size() == 3 &&
         std::all_of(c.begin(), c.end(), [](char ch) { return ch >= 'A' && ch <= 'Z'; });
}

inline std::string lower_dash(std::string_view state) {
  std::string out(state);
  for (auto& c : out) {
    if (c == '_') c = '-';
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Event types documented only for one webhook version (docs/klarna/WEBHOOKS.md §4).
inline bool event_in_version(std::string_view type, std::string_view version) {
  static const std::set<std::string_view> v1_only = {
      "payment.request.state-change.prepared", "payment.request.state-change.pending-confirmation",
      "payment.request.state-change.authorized"};
  static const std::set<std::string_view> v2_only = {"payment.request.state-change.completed",
                                                     "payment.request.updated"};
  if (version == "v2" && v1_only.count(type)) return false;
  if (version == "v1" && v2_only.count(type)) return false;
  return true;
}

inline bool event_type_matches(std::string_view pattern, std::string_view type) {
  if (pattern == "*") return true;
  if (pattern.size() >= 2 && pattern.substr(pattern.size() - 2) == ".*") {
    auto prefix = pattern.substr(0, pattern.size() - 1);  // keeps the dot
    return type.substr(0, prefix.size()) == prefix;
  }
  return pattern == type;
}

}  // namespace detail
using namespace detail;  // internal header: the operation files use these unqualified

// ---------------------------------------------------------------------------
// state

struct PaymentRequest {
  std::string id, account, reference, currency, url;
  std::uint64_t seq = 0;  // creation order (listings)
  std::int64_t amount = 0;
  RequestState state = RequestState::submitted;
  std::optional<RequestState> previous;
  std::string state_reason;
  Generation gen = Generation::v2;
  std::int64_t created_at = 0, updated_at = 0, expires_at = 0;
  std::string session_token, confirmation_token;
  std::int64_t token_expires_at = 0;
  std::string transaction_id;
  std::string authorize_response;  // replayed for a repeated final authorization / confirm
};

struct Capture {
  std::string id, transaction_id, reference;
  std::int64_t amount = 0, refunded = 0, created_at = 0;
};
struct Refund {
  std::string id, transaction_id, capture_id, reference;
  std::int64_t amount = 0, created_at = 0;
};

struct Transaction {
  std::string id, account, reference, currency, request_id;
  std::uint64_t seq = 0;  // creation order (listings, dispute candidates)
  std::int64_t amount = 0, captured = 0, refunded = 0;
  TransactionState state = TransactionState::authorized;
  std::optional<TransactionState> previous;
  std::vector<std::string> captures, refunds;
  int operations = 0;
  std::int64_t created_at = 0, updated_at = 0, expires_at = 0;
};

// Evidence a partner uploaded (POST …/disputes/{id}/attachments).
struct DisputeAttachment {
  std::string id, file_name, content_type, bytes;
  std::int64_t created_at = 0;
};

struct Dispute {
  std::string id, account, transaction_id, capture_id, currency, reason, outcome;
  std::int64_t amount = 0, created_at = 0, updated_at = 0, representment_expires_at = 0;
  std::int64_t arbitration_expires_at = 0;  // set on entering PRE_ARBITRATION (10 days)
  std::uint64_t seq = 0;                    // creation order (listing)
  DisputeState state = DisputeState::initiated;
  std::optional<DisputeState> previous;
  std::map<std::string, DisputeAttachment> attachments;
  std::string additional_information;  // the last represent / appeal
  std::optional<std::int64_t> partner_proposed_refund_amount;
};

struct StoredKey {
  std::string secret;
  std::int64_t created_at = 0;
  std::unique_ptr<klarna::SigningKey> key;
};

struct Webhook {
  std::string id, url, event_version, signing_key_id, status;
  std::vector<std::string> event_types;
  std::int64_t created_at = 0, updated_at = 0;
};

struct CallRecord {
  std::uint64_t seq = 0;
  std::int64_t at = 0;
  std::string method, path, route, idempotency_key, fault;
  std::string body;                                          // as received
  std::vector<std::pair<std::string, std::string>> headers;  // kRecordedHeaders present
  bool mtls = false;
  std::string client_certificate_subject;
  int status = 0;
  bool replayed = false;
};

// Request headers a test may need to check were sent (never Authorization).
inline constexpr std::string_view kRecordedHeaders[] = {
    "klarna-network-session-token",  "klarna-payment-token",
    "klarna-interoperability-token", "klarna-customer-token",
    "partner-correlation-id",        "user-agent",
    "klarna-integration-metadata",   "traceparent"};

// The operation a payment.transaction.captured / refunded event is about: its
// id and amount are rendered next to the transaction's own fields.
struct OperationFields {
  const Capture* capture = nullptr;
  const Refund* refund = nullptr;
};

struct EmittedEvent {
  std::string event_type, entity_id;
  std::int64_t at = 0;
  int deliveries = 0;
};

struct SimApi::Impl {
  Impl(ApiOptions o, SimClock& c, DeliverySink* s)
      : opt(std::move(o)),
        clock(c),
        sink(s),
        rng(opt.seed ? opt.seed : std::random_device{}()),
        idem(opt.idempotency_window_ms) {}

  ApiOptions opt;
  SimClock& clock;
  DeliverySink* sink;
  mutable std::mutex mu;
  std::mt19937_64 rng;
  simdjson::dom::parser parser;
  IdempotencyStore idem;
  core::Logger log{"sim"};

  std::map<std::string, PaymentRequest> requests;
  std::map<std::string, Transaction> transactions;
  DeadlineIndex request_deadlines, transaction_deadlines;  // what tick() must look at
  std::map<std::string, Capture> captures;
  std::map<std::string, Refund> refunds;
  std::map<std::string, Dispute> disputes;
  SettlementBook settlements;
  std::map<std::string, std::string> session_tokens;       // token → request id
  std::map<std::string, std::string> confirmation_tokens;  // token → request id
  std::map<std::string, StoredKey> keys;
  std::map<std::string, Webhook> webhooks;

  std::vector<CallRecord> calls;
  std::uint64_t call_seq = 0;
  std::uint64_t entity_seq = 0;
  std::map<std::string, std::uint64_t> executions;
  std::map<std::string, std::uint64_t> key_executions;
  std::vector<EmittedEvent> events;
  std::vector<std::pair<std::string, ControlHandler>> control;

  // ---- ids and time
  std::string uuid() {
    std::uint64_t a = rng(), b = rng();
    a = (a & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;
    b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
    char buf[37];
    std::snprintf(buf, sizeof buf, "%08llx-%04llx-%04llx-%04llx-%012llx",
                  static_cast<unsigned long long>(a >> 32),
                  static_cast<unsigned long long>((a >> 16) & 0xffff),
                  static_cast<unsigned long long>(a & 0xffff),
                  static_cast<unsigned long long>(b >> 48),
                  static_cast<unsigned long long>(b & 0xffffffffffffULL));
    return buf;
  }
  std::string token() {
    char buf[49];
    std::snprintf(buf, sizeof buf, "%016llx%016llx%016llx", static_cast<unsigned long long>(rng()),
                  static_cast<unsigned long long>(rng()), static_cast<unsigned long long>(rng()));
    return buf;
  }
  std::int64_t now() const { return clock.now_ms(); }

  // ---- rendering
  void write_request(JsonWriter& w, const PaymentRequest& r) const {
    w.begin_object()
        .field("payment_request_id", r.id)
        .field("payment_request_reference", r.reference)
        .field("state", request_state_name(r.state));
    if (r.previous) w.field("previous_state", request_state_name(*r.previous));
    if (!r.state_reason.empty()) w.field("state_reason", r.state_reason);
    w.key("state_context").begin_object();
    switch (r.state) {
      case RequestState::submitted:
      case RequestState::prepared:
      case RequestState::in_progress:
        w.key("customer_interaction")
            .begin_object()
            .field("method", "HANDOVER")
            .field("payment_request_id", r.id)
            .field("payment_request_url", r.url)
            .end_object();
        break;
      case RequestState::pending_confirmation:
        w.field("payment_confirmation_token", r.confirmation_token)
            .field("expires_at", rfc3339_ms(r.token_expires_at));
        break;
      case RequestState::completed:
        w.field("klarna_network_session_token", r.session_token)
            .field("expires_at", rfc3339_ms(r.token_expires_at));
        break;
      case RequestState::authorized:
        w.field("payment_transaction_id", r.transaction_id);
        break;
      default:
        break;
    }
    w.end_object();
    w.field("amount", r.amount)
        .field("currency", r.currency)
        .field("expires_at", rfc3339_ms(r.expires_at))
        .field("created_at", rfc3339_ms(r.created_at))
        .field("updated_at", rfc3339_ms(r.updated_at))
        .end_object();
  }
  std::string render_request(const PaymentRequest& r) const {
    JsonWriter w;
    write_request(w, r);
    return w.take();
  }
  void write_capture(JsonWriter& w, const Capture& c) const {
    w.begin_object()
        .field("payment_capture_id", c.id)
        .field("payment_transaction_id", c.transaction_id)
        .field("payment_capture_reference", c.reference)
        .field("capture_amount", c.amount)
        .field("refunded_amount", c.refunded)
        .field("created_at", rfc3339_ms(c.created_at))
        .end_object();
  }
  void write_refund(JsonWriter& w, const Refund& r) const {
    w.begin_object()
        .field("payment_refund_id", r.id)
        .field("payment_transaction_id", r.transaction_id);
    if (!r.capture_id.empty()) w.field("payment_capture_id", r.capture_id);
    w.field("payment_refund_reference", r.reference)
        .field("refund_amount", r.amount)
        .field("created_at", rfc3339_ms(r.created_at))
        .end_object();
  }
  // The captured / refunded event's own operation: id, amount, reference.
  static void write_operation(JsonWriter& w, const OperationFields& op) {
    if (op.capture) {
      w.field("payment_capture_id", op.capture->id)
          .field("capture_amount", op.capture->amount)
          .field("payment_capture_reference", op.capture->reference);
    }
    if (op.refund) {
      w.field("payment_refund_id", op.refund->id)
          .field("refund_amount", op.refund->amount)
          .field("payment_refund_reference", op.refund->reference);
      if (!op.refund->capture_id.empty()) w.field("payment_capture_id", op.refund->capture_id);
    }
  }
  // `op` adds the fields of the operation an event is about.
  void write_transaction(JsonWriter& w, const Transaction& t,
                         const OperationFields& op = {}) const {
    w.begin_object()
        .field("payment_transaction_id", t.id)
        .field("payment_transaction_reference", t.reference)
        .field("state", transaction_state_name(t.state));
    if (t.previous) w.field("previous_state", transaction_state_name(*t.previous));
    write_operation(w, op);
    if (!t.request_id.empty()) w.field("payment_request_id", t.request_id);
    w.field("amount", t.amount)
        .field("currency", t.currency)
        .field("captured_amount", t.captured)
        .field("refunded_amount", t.refunded)
        .field("remaining_authorized_amount",
               t.state == TransactionState::authorized ? t.amount - t.captured : std::int64_t{0});
    w.key("payment_funding").begin_object().field("type", "INVOICE").end_object();
    w.key("payment_captures").begin_array();
    for (const auto& id : t.captures) write_capture(w, captures.at(id));
    w.end_array();
    w.key("payment_refunds").begin_array();
    for (const auto& id : t.refunds) write_refund(w, refunds.at(id));
    w.end_array();
    w.field("expires_at", rfc3339_ms(t.expires_at))
        .field("created_at", rfc3339_ms(t.created_at))
        .field("updated_at", rfc3339_ms(t.updated_at))
        .end_object();
  }
  std::string render_transaction(const Transaction& t, const OperationFields& op = {}) const {
    JsonWriter w;
    write_transaction(w, t, op);
    return w.take();
  }
  std::string render_dispute(const Dispute& d) const {
    JsonWriter w;
    w.begin_object();
    write_dispute_fields(w, d);
    w.end_object();
    return w.take();
  }
  // The fields of a dispute, inside an object the caller opened.
  void write_dispute_fields(JsonWriter& w, const Dispute& d) const {
    w.field("payment_dispute_id", d.id).field("payment_transaction_id", d.transaction_id);
    if (!d.capture_id.empty()) w.field("payment_capture_id", d.capture_id);
    w.field("state", dispute_state_name(d.state));
    if (d.previous) w.field("previous_state", dispute_state_name(*d.previous));
    w.field("dispute_reason", d.reason);
    w.key("dispute_details")
        .begin_object()
        .field("dispute_amount", d.amount)
        .field("currency", d.currency)
        .field("created_by", "CUSTOMER")
        .end_object();
    if (d.state == DisputeState::initiated || d.state == DisputeState::representment) {
      w.key("representment")
          .begin_object()
          .field("state", d.state == DisputeState::initiated ? "REQUESTED" : "SUBMITTED")
          .field("expires_at", rfc3339_ms(d.representment_expires_at))
          .end_object();
    }
    if (d.state == DisputeState::pre_arbitration) {
      w.field("arbitration_expires_at", rfc3339_ms(d.arbitration_expires_at));
    }
    if (d.state == DisputeState::closed) {
      w.field("dispute_outcome", d.outcome).field("closed_at", rfc3339_ms(d.updated_at));
    }
    w.key("attachments").begin_array();
    for (const auto& [id, a] : d.attachments) {
      w.begin_object().field("payment_dispute_attachment_id", id).field("file_name", a.file_name);
      w.field("content_type", a.content_type).field("size", a.bytes.size()).end_object();
    }
    w.end_array();
    w.field("created_at", rfc3339_ms(d.created_at)).field("updated_at", rfc3339_ms(d.updated_at));
  }
  std::string render_webhook(const Webhook& h) const {
    JsonWriter w;
    w.begin_object().field("webhook_id", h.id).field("url", h.url).key("event_types").begin_array();
    for (const auto& t : h.event_types) w.value(t);
    w.end_array()
        .field("event_version", h.event_version)
        .field("signing_key_id", h.signing_key_id)
        .field("status", h.status)
        .field("created_at", rfc3339_ms(h.created_at))
        .field("updated_at", rfc3339_ms(h.updated_at))
        .end_object();
    return w.take();
  }

  // ---- webhooks
  // Renders `payload` once per matching subscription (or only for `only`),
  // signs the exact bytes and hands them to the sink. Returns the event ids.
  std::vector<std::string> emit(const std::string& event_type, const std::string& entity_id,
                                const std::string& payload, const std::string& account,
                                const Webhook* only = nullptr,
                                const std::string& version_override = {}) {
    std::vector<std::string> ids;
    EmittedEvent ev{event_type, entity_id, now(), 0};
    auto send_to = [&](const Webhook& h, const std::string& version) {
      auto key = keys.find(h.signing_key_id);
      if (key == keys.end()) return;  // key deleted: Klarna cannot sign, nothing is sent
      std::string event_id = uuid();
      JsonWriter w;
      w.begin_object()
          .key("metadata")
          .begin_object()
          .field("event_type", event_type)
          .field("event_id", event_id)
          .field("event_version", version)
          .field("occurred_at", rfc3339_ms(now()))
          .field("subject_account_id", account)
          .field("recipient_account_id", opt.account_id);
      if (event_type.rfind("partner.account.", 0) != 0) {
        w.field("product_instance_id", "krn:partner:product:payment:sim-instance");
      }
      w.field("webhook_id", h.id).field("live", false).end_object();
      w.key("payload").raw(payload).end_object();
      Delivery d;
      d.webhook_id = h.id;
      d.url = h.url;
      d.signing_key_id = h.signing_key_id;
      d.body = w.take();
      d.signature = key->second.key->sign(d.body);
      d.event_id = event_id;
      d.event_type = event_type;
      d.event_version = version;
      ids.push_back(event_id);
      ++ev.deliveries;
      if (sink) sink->enqueue(std::move(d));
    };
    if (only) {
      send_to(*only, version_override.empty() ? only->event_version : version_override);
    } else {
      for (const auto& [id, h] : webhooks) {
        if (h.status != "ENABLED") continue;
        if (!event_in_version(event_type, h.event_version)) continue;
        bool match =
            std::any_of(h.event_types.begin(), h.event_types.end(),
                        [&](const std::string& p) { return event_type_matches(p, event_type); });
        if (match) send_to(h, h.event_version);
      }
    }
    events.push_back(std::move(ev));
    return ids;
  }

  // ---- transitions (checked against the tables in state_machines.hpp)
  bool move_request(PaymentRequest& r, RequestState to, std::string reason = {}) {
    if (!request_transition_allowed(r.gen, r.state, to)) return false;
    r.previous = r.state;
    r.state = to;
    r.state_reason = std::move(reason);
    r.updated_at = now();
    schedule_expiry(r);
    emit("payment.request.state-change." + lower_dash(request_state_name(to)), r.id,
         render_request(r), r.account);
    return true;
  }
  bool move_transaction(Transaction& t, TransactionState to) {
    if (!transaction_transition_allowed(t.state, to)) return false;
    t.previous = t.state;
    t.state = to;
    t.updated_at = now();
    schedule_expiry(t);
    emit("payment.transaction.state-change." + lower_dash(transaction_state_name(to)), t.id,
         render_transaction(t), t.account);
    return true;
  }
  bool move_dispute(Dispute& d, DisputeState to, std::string outcome = {}) {
    if (!dispute_transition_allowed(d.state, to)) return false;
    d.previous = d.state;
    d.state = to;
    d.updated_at = now();
    if (to == DisputeState::closed) d.outcome = outcome.empty() ? "LOST" : outcome;
    if (to == DisputeState::representment)
      d.representment_expires_at = now() + 10LL * 24 * 3600 * 1000;
    if (to == DisputeState::pre_arbitration)  // the appeal window: 10 days
      d.arbitration_expires_at = now() + 10LL * 24 * 3600 * 1000;
    emit("payment.dispute.state-change." + lower_dash(dispute_state_name(to)), d.id,
         render_dispute(d), d.account);
    return true;
  }

  // Creates a transaction for an approved authorization / confirmation.
  Transaction& create_transaction(const std::string& account, const std::string& reference,
                                  std::int64_t amount, const std::string& currency,
                                  const std::string& request_id, bool capture_now) {
    Transaction t;
    t.id = "krn:payment:eu1:transaction:" + uuid();
    t.seq = ++entity_seq;
    t.account = account;
    t.reference = reference;
    t.amount = amount;
    t.currency = currency;
    t.request_id = request_id;
    t.created_at = t.updated_at = now();
    t.expires_at = t.created_at + opt.transaction_ttl_ms;
    auto& tx = transactions.emplace(t.id, std::move(t)).first->second;
    schedule_expiry(tx);
    if (capture_now) {
      // Born COMPLETED; Klarna follows with payment.transaction.captured.
      tx.state = TransactionState::completed;
      const auto& c = add_capture(tx, amount, reference);
      emit("payment.transaction.captured", tx.id, render_transaction(tx, {.capture = &c}),
           tx.account);
    } else {
      emit("payment.transaction.state-change.authorized", tx.id, render_transaction(tx),
           tx.account);
    }
    return tx;
  }
  // A new SUBMITTED payment request (emits payment.request.state-change.submitted).
  PaymentRequest& add_request(const std::string& account, const std::string& reference,
                              const std::string& currency, std::int64_t amount,
                              std::string state_reason = {}) {
    PaymentRequest r;
    r.id = "krn:payment:eu1:request:" + uuid();
    r.seq = ++entity_seq;
    r.account = account;
    r.reference = reference;
    r.currency = currency;
    r.amount = amount;
    r.url = opt.payment_request_url_base + r.id.substr(r.id.rfind(':') + 1);
    r.created_at = r.updated_at = now();
    r.expires_at = r.created_at + opt.request_ttl_ms;
    r.state_reason = std::move(state_reason);
    auto& stored = requests.emplace(r.id, std::move(r)).first->second;
    schedule_expiry(stored);
    emit("payment.request.state-change.submitted", stored.id, render_request(stored),
         stored.account);
    return stored;
  }
  Capture& add_capture(Transaction& t, std::int64_t amount, const std::string& reference) {
    Capture c;
    c.id = "krn:payment:eu1:capture:" + uuid();
    c.transaction_id = t.id;
    c.reference = reference;
    c.amount = amount;
    c.created_at = now();
    t.captured += amount;
    t.captures.push_back(c.id);
    ++t.operations;
    t.updated_at = now();
    return captures.emplace(c.id, std::move(c)).first->second;
  }

  // ---- the request path (api.cpp)
  ControlHandler control_handler_for(const std::vector<std::string>& segs) const;
  ApiResponse handle_locked(const ApiRequest& req, const std::vector<std::string>& segs);
  CallRecord new_call(const ApiRequest& req, const std::string& route);
  void log_call(CallRecord call);
  bool authorized(const ApiRequest& req) const;
  ApiResponse execute_once(const Route& route, const ApiRequest& req, const Body& body,
                           CallRecord& call);
  ApiResponse dispatch(const Route& route, const ApiRequest& req, const Body& body);
  ApiResponse payment_request_op(const Route& route);
  ApiResponse transaction_op(const Route& route, const Body& body);
  ApiResponse sim_control(const ApiRequest& req, const std::vector<std::string>& segs,
                          const Body& body);
  ApiResponse authorize(const Route& route, const ApiRequest& req, const Body& body);
  ApiResponse confirm(const Route& route, const Body& body);
  ApiResponse sdk_token(const ApiRequest& req);
  // The answer as `opt.answers` shapes it: `full`, or the thin one.
  ApiResponse shaped(int status, std::string full, std::string thin, std::string bare = {}) const {
    if (opt.answers == "thin") return json_response(status, std::move(thin));
    if (opt.answers == "bare") return json_response(status, bare.empty() ? std::move(thin) : bare);
    return json_response(status, std::move(full));
  }
  ApiResponse capture(const Route& route, const Body& body);
  ApiResponse refund(const Route& route, const Body& body, bool of_capture);
  ApiResponse customer_action(const std::string& id, const std::string& action, const Body& body);
  // ---- /_sim introspection (sim_control.cpp)
  ApiResponse list_calls(const ApiRequest& req) const;
  void write_payment_requests(JsonWriter& w) const;
  void write_transactions(JsonWriter& w) const;
  ApiResponse list_payment_requests() const;
  ApiResponse list_transactions() const;
  ApiResponse list_payments() const;
  ApiResponse create_dispute(const Body& body);
  // ---- the Dispute API and its /_sim controls (disputes.cpp)
  std::vector<std::string> canonical_dispute_path(std::vector<std::string> segs) const;
  ApiResponse dispute_op(const Route& route, const ApiRequest& req, const Body& body);
  ApiResponse list_disputes(const Route& route, const ApiRequest& req) const;
  ApiResponse upload_attachment(Dispute& d, const ApiRequest& req);
  ApiResponse represent(Dispute& d, const Body& body);
  ApiResponse appeal(Dispute& d, const Body& body);
  ApiResponse download_attachment(const Dispute& d, const std::string& attachment_id) const;
  ApiResponse extend_dispute_deadline(const std::string& id, const Body& body);
  // ---- settlements (settlements.cpp; the Settlements API in settlement_reports.cpp)
  SettlementLine sale_line(const Capture& c) const;
  std::vector<SettlementLine> unsettled_lines(const std::string& currency) const;
  std::vector<std::string> unsettled_currencies() const;
  std::optional<ApiResponse> duplicate_sale(std::vector<SettlementLine>& lines, SettlementFault& f,
                                            const std::string& currency) const;
  std::optional<ApiResponse> apply_line_faults(std::vector<SettlementLine>& lines,
                                               std::vector<SettlementFault>& faults,
                                               const std::string& currency) const;
  std::optional<ApiResponse> add_other_lines(std::vector<SettlementLine>& lines,
                                             const SettlementFault& f) const;
  ApiResponse make_settlement(const std::string& currency, std::vector<SettlementFault> faults);
  std::string render_sim_settlement(const Settlement& s) const;
  bool move_payout(Settlement& s, const std::string& status, const std::string& reason);
  void settlement_tick_locked();
  ApiResponse list_sim_settlements() const;
  ApiResponse settlement_control(const ApiRequest& req, const std::vector<std::string>& segs,
                                 const Body& body);
  ApiResponse settlements_api(const Route& route, const ApiRequest& req) const;
  ApiResponse list_settlements(const ApiRequest& req, std::size_t offset, std::size_t size) const;
  ApiResponse webhooks_api(const Route& route, const Body& body);
  ApiResponse signing_keys_api(const Route& route);
  ApiResponse simulate(const Webhook& h, const Body& body);
  void tick_locked();
  void schedule_expiry(const PaymentRequest& r);
  void schedule_expiry(const Transaction& t);
  void reset_locked();
};

}  // namespace kpay::sim
