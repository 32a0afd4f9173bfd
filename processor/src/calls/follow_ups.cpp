// The follow-up table (docs/klarna/PAYMENTS-API.md §2, §4): which call a state asks for,
// and how each call is written to the outbox (method, path, body, token
// header, idempotency key). Pure functions: no store, no clock.
#include "kpay/processor/follow_ups.hpp"

#include <simdjson.h>

#include <array>

#include "kpay/core/json_writer.hpp"
#include "kpay/core/overloaded.hpp"
#include "kpay/processor/state_machines.hpp"
#include "sha256.hpp"

namespace kpay::processor {

namespace {

using core::Overloaded;

struct PolicyName {
  CapturePolicy policy;
  std::string_view name;
};
constexpr std::array kPolicies = {
    PolicyName{CapturePolicy::now, "now"},
    PolicyName{CapturePolicy::after_authorization, "after_authorization"},
    PolicyName{CapturePolicy::on_command, "on_command"},
};

constexpr std::string_view kNetworkSessionHeader = "Klarna-Network-Session-Token";
constexpr std::string_view kLegacyPaymentHeader = "Klarna-Payment-Token";

// RFC 3986: unreserved characters stay, every other byte becomes %XX (ids
// are KRNs: "krn:payment:eu1:request:…" → "krn%3Apayment%3A…").
std::string percent_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (unsigned char c : s) {
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  return out;
}

constexpr std::string_view kCustomerTokenHeader = "Klarna-Customer-Token";
constexpr std::string_view kInteroperabilityHeader = "Klarna-Interoperability-Token";

// The parts of an outbox row that differ per operation.
struct Call {
  std::string_view method = "POST";
  std::string path;
  std::string body;
  std::string entity_id;
  std::string path_token;  // "{token}" in the path (confirm)
  std::vector<std::pair<std::string_view, std::string>> token_headers;  // sensitive values
  std::string key_entity;         // what the idempotency key is derived from …
  std::string key_discriminator;  // … together with the operation
  std::optional<std::string> command_id;
  std::optional<std::int64_t> amount;  // money moved (captures, refunds)
  std::optional<std::string> capture_id;
};

// {"currency", "request_payment_transaction": {…}} — the part both
// authorizations share.
void write_authorization(core::JsonWriter& body, std::string_view currency, std::int64_t amount,
                         const std::optional<std::string>& reference, bool capture_now,
                         const std::optional<std::string>& payment_option_id = std::nullopt) {
  body.field("currency", currency);
  body.key("request_payment_transaction").begin_object().field("amount", amount);
  if (reference) body.field("payment_transaction_reference", *reference);
  body.field("capture", capture_now ? "NOW" : "LATER");
  if (payment_option_id) body.field("payment_option_id", *payment_option_id);
  body.end_object();
}

// A JSON string token as received goes in as it is; a context stored before
// tokens were kept raw holds the decoded text, which is encoded.
void write_json_string(core::JsonWriter& body, const std::string& text) {
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element e;
  const bool token = !text.empty() && text.front() == '"' &&
                     parser.parse(text).get(e) == simdjson::SUCCESS && e.is_string();
  token ? body.raw(text) : body.value(text);
}

// Supplementary purchase data and the interoperability data, each the JSON
// text received (docs/KLARNA-FIDELITY.md: forwarded byte for byte).
void write_extras(core::JsonWriter& body, const PurchaseExtras& x) {
  if (x.supplementary_purchase_data) {
    body.key("supplementary_purchase_data").raw(*x.supplementary_purchase_data);
  }
  if (x.interoperability_data) {
    body.key("interoperability").begin_object().key("interoperability_data");
    write_json_string(body, *x.interoperability_data);
    body.end_object();
  }
}

void add_interoperability_header(Call& c, const PurchaseExtras& x) {
  if (x.interoperability_token) {
    c.token_headers.emplace_back(kInteroperabilityHeader, *x.interoperability_token);
  }
}

Call final_authorization_call(const FinalAuthorization& f) {
  core::JsonWriter body;
  body.begin_object();
  write_authorization(body, f.currency, f.amount, f.reference, f.capture_now);
  write_extras(body, f.extras);
  body.end_object();
  Call c;
  c.path = "/payment/authorize";
  c.body = body.take();
  c.entity_id = f.payment_request_id;
  c.token_headers.emplace_back(
      f.header == TokenHeader::legacy_payment ? kLegacyPaymentHeader : kNetworkSessionHeader,
      f.token);
  add_interoperability_header(c, f.extras);
  c.key_entity = f.payment_request_id;
  c.key_discriminator = f.token;
  return c;
}

Call initial_authorization_call(const InitialAuthorization& f) {
  core::JsonWriter body;
  body.begin_object();
  write_authorization(body, f.currency, f.amount, f.reference, f.capture_now, f.payment_option_id);
  write_extras(body, f.extras);
  if (f.step_up_config) body.key("step_up_config").raw(*f.step_up_config);
  if (f.request_customer_token) body.key("request_customer_token").raw(*f.request_customer_token);
  body.end_object();
  Call c;
  c.path = "/payment/authorize";
  c.body = body.take();
  c.entity_id = f.entity_id;
  if (f.customer_token) c.token_headers.emplace_back(kCustomerTokenHeader, *f.customer_token);
  add_interoperability_header(c, f.extras);
  c.key_entity = f.command_id;
  c.command_id = f.command_id;
  return c;
}

Call refund_call(const Refund& f) {
  core::JsonWriter body;
  body.begin_object().field("refund_amount", f.amount);
  Call c;
  if (f.payment_capture_id) {
    if (f.reference) body.field("payment_refund_reference", *f.reference);
    c.path = "/payment/captures/" + percent_encode(*f.payment_capture_id) + "/refund";
  } else {
    if (f.reference) body.field("refund_reference", *f.reference);  // name unconfirmed
    c.path = "/payment/transactions/" + percent_encode(f.payment_transaction_id) + "/refund";
  }
  body.end_object();
  c.body = body.take();
  c.entity_id = f.payment_transaction_id;
  c.key_entity = f.command_id;
  c.command_id = f.command_id;
  c.amount = f.amount;
  c.capture_id = f.payment_capture_id;
  return c;
}

Call void_call(const Void& f) {
  Call c;
  c.path = "/payment/transactions/" + percent_encode(f.payment_transaction_id) + "/void";
  c.entity_id = f.payment_transaction_id;
  c.key_entity = f.command_id;
  c.command_id = f.command_id;
  return c;
}

Call cancel_call(const CancelRequest& f) {
  Call c;
  c.method = "DELETE";
  c.path = "/payment/requests/" + percent_encode(f.payment_request_id);
  c.entity_id = f.payment_request_id;
  c.key_entity = f.command_id;
  c.command_id = f.command_id;
  return c;
}

Call confirm_call(const Confirm& f) {
  core::JsonWriter body;
  body.begin_object().field("currency", f.currency).field("payment_amount", f.amount);
  if (f.reference) body.field("payment_transaction_reference", *f.reference);
  body.key("config").begin_object().field("capture", f.capture_now).end_object().end_object();
  Call c;
  // "{token}" stays in the stored path: the worker puts the encoded token in
  // when it sends, so no secret is stored outside call_token.
  c.path = "/payment/confirmation-tokens/{token}/confirm";
  c.body = body.take();
  c.entity_id = f.payment_request_id;
  c.path_token = f.confirmation_token;
  c.key_entity = f.command_id.value_or(f.payment_request_id);
  c.key_discriminator = f.command_id ? std::string() : f.confirmation_token;
  c.command_id = f.command_id;
  return c;
}

Call sdk_token_call(const SdkToken& f) {
  Call c;
  c.path = "/interoperability/sdk-tokens";
  c.body = "{}";
  c.entity_id = f.entity_id;
  c.token_headers.emplace_back(kInteroperabilityHeader, f.interoperability_token);
  c.key_entity = f.command_id;
  c.command_id = f.command_id;
  return c;
}

Call capture_call(const Capture& f) {
  core::JsonWriter body;
  body.begin_object().field("capture_amount", f.amount);
  if (f.reference) body.field("payment_capture_reference", *f.reference);
  if (f.supplementary_capture_data) {
    body.key("supplementary_capture_data").raw(*f.supplementary_capture_data);
  }
  body.end_object();
  Call c;
  c.path = "/payment/transactions/" + percent_encode(f.payment_transaction_id) + "/capture";
  c.body = body.take();
  c.entity_id = f.payment_transaction_id;
  c.key_entity = f.payment_transaction_id;
  c.key_discriminator = f.command_id.value_or("auto");
  c.command_id = f.command_id;
  c.amount = f.amount;
  return c;
}

// {"attachments":[{"payment_dispute_attachment_id","description"?}],…}
void write_evidence(core::JsonWriter& body, const std::vector<DisputeAttachmentRef>& attachments,
                    const std::optional<std::string>& additional_information) {
  if (!attachments.empty()) {
    body.key("attachments").begin_array();
    for (const auto& a : attachments) {
      body.begin_object().field("payment_dispute_attachment_id", a.payment_dispute_attachment_id);
      if (a.description) body.field("description", *a.description);
      body.end_object();
    }
    body.end_array();
  }
  if (additional_information) body.field("additional_information", *additional_information);
}

// A Dispute API operation of one dispute, keyed by the command that asked for it.
Call dispute_call(std::string_view action, const std::string& command_id,
                  const std::string& dispute_id, std::string body) {
  Call c;
  c.path = std::string(kDisputesPlaceholder) + "/" + percent_encode(dispute_id) + "/" +
           std::string(action);
  c.body = std::move(body);
  c.entity_id = dispute_id;
  c.key_entity = command_id;
  c.command_id = command_id;
  return c;
}

Call represent_call(const DisputeRepresent& f) {
  core::JsonWriter body;
  body.begin_object();
  write_evidence(body, f.attachments, f.additional_information);
  if (f.partner_proposed_refund_amount) {
    body.field("partner_proposed_refund_amount", *f.partner_proposed_refund_amount);
  }
  body.end_object();
  return dispute_call("represent", f.command_id, f.payment_dispute_id, body.take());
}

Call appeal_call(const DisputeAppeal& f) {
  core::JsonWriter body;
  body.begin_object();
  write_evidence(body, f.attachments, f.additional_information);
  body.end_object();
  return dispute_call("appeal", f.command_id, f.payment_dispute_id, body.take());
}

Call read_dispute_call(const ReadDispute& r, const std::string& discriminator) {
  Call c;
  c.method = "GET";
  c.path = std::string(kDisputesPlaceholder) + "/" + percent_encode(r.payment_dispute_id);
  c.entity_id = r.payment_dispute_id;
  c.key_entity = r.payment_dispute_id;
  c.key_discriminator = discriminator;
  c.command_id = r.command_id;
  return c;
}

// A GET of one resource; `entity_id` is the row's entity (the transaction for
// its captures and refunds), `id` the resource read.
Call read_call(std::string_view collection, const std::string& id, const std::string& entity_id,
               const std::string& discriminator) {
  Call c;
  c.method = "GET";
  c.path = "/payment/" + std::string(collection) + "/" + percent_encode(id);
  c.entity_id = entity_id;
  c.key_entity = id;
  c.key_discriminator = discriminator;
  return c;
}

// A GET of the Settlements API, keyed by the settlement and what is read.
Call settlement_call(const std::string& settlement_id, std::string path,
                     std::string_view discriminator) {
  Call c;
  c.method = "GET";
  c.path = std::string(kRootPlaceholder) + std::move(path);
  c.entity_id = settlement_id;
  c.key_entity = settlement_id;
  c.key_discriminator = std::string(discriminator);
  return c;
}

Call call_for(const FollowUp& f, const FollowUpOrigin& origin) {
  const std::string& d = origin.read_discriminator;
  return std::visit(
      Overloaded{
          [](const FinalAuthorization& a) { return final_authorization_call(a); },
          [](const Confirm& c) { return confirm_call(c); },
          [](const Capture& c) { return capture_call(c); },
          [&](const ReadPaymentRequest& r) {
            return read_call("requests", r.payment_request_id, r.payment_request_id, d);
          },
          [&](const ReadTransaction& r) {
            auto c =
                read_call("transactions", r.payment_transaction_id, r.payment_transaction_id, d);
            c.command_id = r.command_id;
            return c;
          },
          [&](const ReadCapture& r) {
            return read_call("captures", r.payment_capture_id, r.payment_transaction_id, d);
          },
          [&](const ReadRefund& r) {
            return read_call("refunds", r.payment_refund_id, r.payment_transaction_id, d);
          },
          [](const InitialAuthorization& a) { return initial_authorization_call(a); },
          [](const Refund& r) { return refund_call(r); },
          [](const Void& v) { return void_call(v); },
          [](const CancelRequest& c) { return cancel_call(c); },
          // accept-loss has no documented body; "{}" keeps a JSON Content-Type.
          [](const DisputeAcceptLoss& a) {
            return dispute_call("accept-loss", a.command_id, a.payment_dispute_id, "{}");
          },
          [](const DisputeRepresent& r) { return represent_call(r); },
          [](const DisputeAppeal& a) { return appeal_call(a); },
          [&](const ReadDispute& r) { return read_dispute_call(r, d); },
          [](const SdkToken& t) { return sdk_token_call(t); },
          [](const FetchSettlement& g) {
            return settlement_call(g.settlement_id,
                                   "/v2/settlements/" + percent_encode(g.settlement_id), "");
          },
          [](const FetchSettlementTransactions& g) {
            return settlement_call(g.settlement_id, g.page, g.page);
          },
          [](const FetchPayoutStatus& g) {
            return settlement_call(
                g.settlement_id,
                "/v2/settlements/" + percent_encode(g.settlement_id) + "/payouts/status", "");
          },
      },
      f);
}

}  // namespace

std::optional<CapturePolicy> parse_capture_policy(std::string_view text) {
  for (const auto& p : kPolicies) {
    if (p.name == text) return p.policy;
  }
  return std::nullopt;
}

std::string_view capture_policy_name(CapturePolicy policy) {
  for (const auto& p : kPolicies) {
    if (p.policy == policy) return p.name;
  }
  return "after_authorization";
}

CapturePolicy FollowUpSettings::capture_for(std::string_view account_id) const {
  auto it = capture_by_account.find(account_id);
  return it == capture_by_account.end() ? default_capture : it->second;
}

FollowUpSettings follow_up_settings_from_config(const core::Config& c) {
  auto policy = [](const std::string& key, const std::string& text) {
    auto p = parse_capture_policy(text);
    if (!p) throw core::ConfigError(key, "must be now, after_authorization or on_command");
    return *p;
  };
  FollowUpSettings s;
  s.default_capture = policy("capture.default", c.string("capture.default", "after_authorization"));
  for (const auto& [account, text] : c.string_table("capture.accounts")) {
    s.capture_by_account[account] = policy("capture.accounts." + account, text);
  }
  const std::string environment = c.string("klarna.environment", "test");
  const bool custom_live = c.boolean("klarna.live", false);  // read always: a known key
  if (environment == "live") {
    s.live = true;
  } else if (environment == "test") {
    s.live = false;
  } else if (environment == "custom") {
    s.live = custom_live;
  } else {
    throw core::ConfigError("klarna.environment", "must be live, test or custom");
  }
  s.settlements.fetch = c.boolean("settlements.fetch", true);
  s.settlements.csv = c.string("settlements.report", "json") == "csv";
  if (auto r = c.string("settlements.report", "json"); r != "json" && r != "csv") {
    throw core::ConfigError("settlements.report", "must be json or csv");
  }
  s.settlements.page_size = static_cast<int>(c.integer("settlements.page_size", 500, 1, 500));
  s.settlements.grace =
      c.millis("settlements.grace_period_ms", s.settlements.grace, std::chrono::milliseconds(0),
               std::chrono::milliseconds(400LL * 24 * 3600 * 1000));
  s.settlements.check_interval =
      c.millis("settlements.check_interval_ms", s.settlements.check_interval,
               std::chrono::milliseconds(100), std::chrono::milliseconds(24LL * 3600 * 1000));
  s.dispute_path_prefix = c.string("disputes.api_path_prefix", s.dispute_path_prefix);
  const auto& prefix = s.dispute_path_prefix;
  if (prefix.size() < 2 || prefix.front() != '/' || prefix.back() == '/' ||
      prefix.find_first_of("?# ") != std::string::npos) {
    throw core::ConfigError("disputes.api_path_prefix",
                            "must be a path starting with / (no trailing /, no query), e.g. "
                            "/v2/accounts/{account}/payment/disputes");
  }
  return s;
}

std::string dispute_api_root(const FollowUpSettings& s, std::string_view account_id) {
  static constexpr std::string_view kAccount = "{account}";
  std::string root = s.dispute_path_prefix;
  if (auto at = root.find(kAccount); at != std::string::npos) {
    root.replace(at, kAccount.size(), percent_encode(account_id));
  }
  return root;
}

std::string request_path(const storage::OutboxRow& row, const FollowUpSettings& s) {
  std::string_view path = row.path;
  if (path.starts_with(kRootPlaceholder)) return std::string(path.substr(kRootPlaceholder.size()));
  if (path.starts_with(kDisputesPlaceholder)) {
    return dispute_api_root(s, row.account_id) +
           std::string(path.substr(kDisputesPlaceholder.size()));
  }
  return "/v2/accounts/" + percent_encode(row.account_id) + row.path;
}

storage::OutboxOperation operation_of(const FollowUp& f) {
  using Op = storage::OutboxOperation;
  return std::visit(Overloaded{
                        [](const FinalAuthorization&) { return Op::final_authorization; },
                        [](const Confirm&) { return Op::confirm; },
                        [](const Capture&) { return Op::capture; },
                        [](const ReadPaymentRequest&) { return Op::read_payment_request; },
                        [](const ReadTransaction&) { return Op::read_transaction; },
                        [](const ReadCapture&) { return Op::read_capture; },
                        [](const ReadRefund&) { return Op::read_refund; },
                        [](const InitialAuthorization&) { return Op::initial_authorization; },
                        [](const Refund& r) {
                          return r.payment_capture_id ? Op::refund_capture : Op::refund_transaction;
                        },
                        [](const Void&) { return Op::void_transaction; },
                        [](const CancelRequest&) { return Op::cancel; },
                        [](const DisputeAcceptLoss&) { return Op::dispute_accept_loss; },
                        [](const DisputeRepresent&) { return Op::dispute_represent; },
                        [](const DisputeAppeal&) { return Op::dispute_appeal; },
                        [](const ReadDispute&) { return Op::read_dispute; },
                        [](const SdkToken&) { return Op::sdk_token; },
                        [](const FetchSettlement&) { return Op::fetch_settlement; },
                        [](const FetchSettlementTransactions& g) {
                          return g.csv ? Op::fetch_settlement_csv
                                       : Op::fetch_settlement_transactions;
                        },
                        [](const FetchPayoutStatus&) { return Op::fetch_payout_status; },
                    },
                    f);
}

std::string_view operation_name(const FollowUp& f) {
  return storage::to_string(operation_of(f));
}

std::string idempotency_key(std::string_view operation, std::string_view entity_id,
                            std::string_view discriminator) {
  std::string material;
  material.reserve(operation.size() + entity_id.size() + discriminator.size() + 2);
  material.append(operation).push_back('\n');
  material.append(entity_id).push_back('\n');
  material.append(discriminator);
  const std::string digest = sha256(material);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string key = "kpay-";
  key += operation;
  key += '-';
  for (std::size_t i = 0; i < 16 && i < digest.size();
       ++i) {  // 128 bits: collisions are not a concern
    const auto byte = static_cast<unsigned char>(digest[i]);
    key += kHex[byte >> 4];
    key += kHex[byte & 0xf];
  }
  return key;
}

storage::OutboxRow outbox_row(const FollowUp& f, const FollowUpOrigin& origin) {
  Call call = call_for(f, origin);
  storage::OutboxRow o;
  o.operation = operation_of(f);
  o.entity_id = std::move(call.entity_id);
  o.idempotency_key =
      idempotency_key(storage::to_string(o.operation), call.key_entity, call.key_discriminator);
  o.request_body = std::move(call.body);
  if (!call.path_token.empty()) o.call_token = std::move(call.path_token);
  for (const auto& [name, value] : call.token_headers) {
    if (!o.token_header.empty()) {
      o.token_header += '\n';
      o.call_token += '\n';
    }
    o.token_header += name;
    o.call_token += value;
  }
  o.due_by_ms = origin.due_by_ms;
  o.created_by_event_id = origin.caused_by;
  o.account_id = origin.account_id;
  o.method = std::string(call.method);
  o.path = std::move(call.path);
  o.next_attempt_at_ms = origin.now_ms;
  o.created_at_ms = origin.now_ms;
  o.updated_at_ms = origin.now_ms;
  o.command_id = std::move(call.command_id);
  o.amount = call.amount;
  o.capture_id = std::move(call.capture_id);
  return o;
}

std::vector<std::pair<std::string, std::string>> token_headers(const storage::OutboxRow& row) {
  std::vector<std::pair<std::string, std::string>> out;
  std::string_view names = row.token_header, values = row.call_token;
  while (!names.empty()) {
    const auto n = names.find('\n'), v = values.find('\n');
    out.emplace_back(names.substr(0, n), values.substr(0, v));
    names = n == std::string_view::npos ? std::string_view() : names.substr(n + 1);
    values = v == std::string_view::npos ? std::string_view() : values.substr(v + 1);
  }
  return out;
}

// ---- decisions ------------------------------------------------------------------------

namespace {

// What the call for an approval is priced with: the registered context when
// a `register` command gave one, else the webhook's attributes and the policy.
struct Terms {
  std::optional<std::int64_t> amount;
  std::optional<std::string> currency;
  std::optional<std::string> reference;
  bool capture_now = false;
  PurchaseExtras extras;
};

Terms terms_for(const RequestContext& c, const FollowUpSettings& s) {
  const auto& row = c.row;
  if (const auto& x = c.context) {
    return {x->amount,
            x->currency,
            x->payment_transaction_reference ? x->payment_transaction_reference : row.reference,
            x->capture_now,
            {x->supplementary_purchase_data, x->interoperability_token, x->interoperability_data}};
  }
  return {row.amount,
          row.currency,
          row.reference,
          s.capture_for(*row.account_id) == CapturePolicy::now,
          {}};
}

}  // namespace

std::vector<FollowUp> on_request_state(const RequestContext& c, const FollowUpSettings& s) {
  const auto& row = c.row;
  const auto state = row.state ? parse_state<RequestState>(*row.state) : std::nullopt;
  if (state != RequestState::completed && state != RequestState::pending_confirmation) return {};
  if (c.follow_up_exists || !row.account_id) return {};
  Terms t = terms_for(c, s);
  const bool priced = t.amount && t.currency;
  if (state == RequestState::completed && c.session_token && priced) {
    return {FinalAuthorization{.payment_request_id = row.id,
                               .token = *c.session_token,
                               .header = c.legacy_payment_token ? TokenHeader::legacy_payment
                                                                : TokenHeader::network_session,
                               .amount = *t.amount,
                               .currency = *t.currency,
                               .reference = t.reference,
                               .capture_now = t.capture_now,
                               .extras = std::move(t.extras)}};
  }
  if (state == RequestState::pending_confirmation && c.confirmation_token && priced) {
    return {Confirm{.payment_request_id = row.id,
                    .confirmation_token = *c.confirmation_token,
                    .amount = *t.amount,
                    .currency = *t.currency,
                    .reference = t.reference,
                    .capture_now = t.capture_now,
                    .command_id = std::nullopt}};
  }
  // The approval cannot be used without its token, nor priced without the
  // amount: read the request instead of guessing.
  return {ReadPaymentRequest{row.id}};
}

std::vector<FollowUp> on_transaction_authorized(const storage::PaymentTransactionRow& t,
                                                const FollowUpSettings& s) {
  if (!t.account_id || !t.amount || t.captured_amount >= *t.amount) return {};
  // Capture only while AUTHORIZED (a state we have not learnt yet does not stop it).
  if (t.state && parse_state<TransactionState>(*t.state) != TransactionState::authorized) {
    return {};
  }
  if (s.capture_for(*t.account_id) != CapturePolicy::after_authorization) return {};
  Capture c;
  c.payment_transaction_id = t.id;
  c.amount = *t.amount - t.captured_amount;
  c.reference = t.reference;
  return {c};
}

}  // namespace kpay::processor
