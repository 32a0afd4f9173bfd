// The follow-ups as Klarna's API takes them (docs/klarna/PAYMENTS-API.md,
// docs/KLARNA-FIDELITY.md): paths, bodies (partner data spliced in as the JSON
// text received), token headers, and where a stored row is sent. Pure
// functions: no store, no clock.
#include "calls/klarna_calls.hpp"

#include <simdjson.h>

#include "kpay/core/json_writer.hpp"
#include "kpay/core/overloaded.hpp"
#include "kpay/core/percent_encode.hpp"

namespace kpay::processor {

namespace {

using core::Overloaded;

constexpr std::string_view kNetworkSessionHeader = "Klarna-Network-Session-Token";
constexpr std::string_view kLegacyPaymentHeader = "Klarna-Payment-Token";

constexpr std::string_view kCustomerTokenHeader = "Klarna-Customer-Token";
constexpr std::string_view kInteroperabilityHeader = "Klarna-Interoperability-Token";

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
    c.path = "/payment/captures/" + core::percent_encode(*f.payment_capture_id) + "/refund";
  } else {
    if (f.reference) body.field("refund_reference", *f.reference);  // name unconfirmed
    c.path = "/payment/transactions/" + core::percent_encode(f.payment_transaction_id) + "/refund";
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
  c.path = "/payment/transactions/" + core::percent_encode(f.payment_transaction_id) + "/void";
  c.entity_id = f.payment_transaction_id;
  c.key_entity = f.command_id;
  c.command_id = f.command_id;
  return c;
}

Call cancel_call(const CancelRequest& f) {
  Call c;
  c.method = "DELETE";
  c.path = "/payment/requests/" + core::percent_encode(f.payment_request_id);
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
  c.path = "/payment/transactions/" + core::percent_encode(f.payment_transaction_id) + "/capture";
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
  c.path = std::string(kDisputesPlaceholder) + "/" + core::percent_encode(dispute_id) + "/" +
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
  c.path = std::string(kDisputesPlaceholder) + "/" + core::percent_encode(r.payment_dispute_id);
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
  c.path = "/payment/" + std::string(collection) + "/" + core::percent_encode(id);
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

}  // namespace

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
                                   "/v2/settlements/" + core::percent_encode(g.settlement_id), "");
          },
          [](const FetchSettlementTransactions& g) {
            return settlement_call(g.settlement_id, g.page, g.page);
          },
          [](const FetchPayoutStatus& g) {
            return settlement_call(
                g.settlement_id,
                "/v2/settlements/" + core::percent_encode(g.settlement_id) + "/payouts/status", "");
          },
      },
      f);
}

std::string dispute_api_root(const FollowUpSettings& s, std::string_view account_id) {
  static constexpr std::string_view kAccount = "{account}";
  std::string root = s.dispute_path_prefix;
  if (auto at = root.find(kAccount); at != std::string::npos) {
    root.replace(at, kAccount.size(), core::percent_encode(account_id));
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
  return "/v2/accounts/" + core::percent_encode(row.account_id) + row.path;
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

}  // namespace kpay::processor
