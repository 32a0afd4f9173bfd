// Command decoding: the field table of each command type (docs/klarna/COMMANDS.md,
// "Downstream contract"), the interoperability token's shape, and the result
// message. No store, no clock.
#include "kpay/processor/commands.hpp"

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <map>

#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"
#include "kpay/klarna/signature.hpp"

namespace kpay::processor {

namespace {

using simdjson::dom::element;

struct TypeName {
  CommandType type;
  std::string_view name;
};
constexpr std::array kTypes = {
    TypeName{CommandType::register_payment, "register"},
    TypeName{CommandType::authorize, "authorize"},
    TypeName{CommandType::capture, "capture"},
    TypeName{CommandType::refund, "refund"},
    TypeName{CommandType::void_transaction, "void"},
    TypeName{CommandType::cancel, "cancel"},
    TypeName{CommandType::dispute_accept_loss, "dispute_accept_loss"},
    TypeName{CommandType::dispute_represent, "dispute_represent"},
    TypeName{CommandType::dispute_appeal, "dispute_appeal"},
    TypeName{CommandType::sdk_token, "sdk_token"},
};

constexpr std::size_t kMaxCommandId = 100;

// A header value may carry it: visible ASCII only (no spaces, no line breaks).
bool header_safe(std::string_view v) {
  for (unsigned char c : v) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return !v.empty();
}

// UTF-8 code points (continuation bytes not counted).
std::size_t code_points(std::string_view s) {
  return static_cast<std::size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

// The exact JSON text of the top-level values of `body` named in `keys` (the
// first occurrence of each), as received: simdjson's raw token of the value,
// never decoded and re-encoded. `body` was validated by the DOM parser first.
template <std::size_t N>
std::map<std::string, std::string, std::less<>> raw_values(
    std::string_view body, const std::array<std::string_view, N>& keys) {
  std::map<std::string, std::string, std::less<>> out;
  thread_local simdjson::ondemand::parser parser;
  simdjson::padded_string padded(body);
  simdjson::ondemand::document doc;
  simdjson::ondemand::object root;
  if (parser.iterate(padded).get(doc) != simdjson::SUCCESS ||
      doc.get_object().get(root) != simdjson::SUCCESS) {
    return out;
  }
  for (auto field : root) {
    std::string_view key;
    simdjson::ondemand::value value;
    if (field.unescaped_key().get(key) != simdjson::SUCCESS ||
        field.value().get(value) != simdjson::SUCCESS) {
      return out;
    }
    if (std::find(keys.begin(), keys.end(), key) == keys.end() || out.count(key)) continue;
    std::string_view raw;
    simdjson::ondemand::json_type type;
    if (value.type().get(type) != simdjson::SUCCESS) return out;
    simdjson::error_code ec = simdjson::SUCCESS;
    simdjson::ondemand::object object;
    simdjson::ondemand::array array;
    if (type == simdjson::ondemand::json_type::object) {
      ec = value.get_object().get(object);
      if (ec == simdjson::SUCCESS) ec = object.raw_json().get(raw);
    } else if (type == simdjson::ondemand::json_type::array) {
      ec = value.get_array().get(array);
      if (ec == simdjson::SUCCESS) ec = array.raw_json().get(raw);
    } else {
      raw = value.raw_json_token();
    }
    if (ec != simdjson::SUCCESS) return out;
    // The raw text may run on to the next structural character.
    while (!raw.empty() && std::string_view(" \t\r\n").find(raw.back()) != std::string_view::npos) {
      raw.remove_suffix(1);
    }
    out.emplace(std::string(key), std::string(raw));
  }
  return out;
}

// Fields forwarded to Klarna as the JSON text received.
constexpr std::array<std::string_view, 6> kForwarded = {
    "supplementary_purchase_data", "step_up_config",        "request_customer_token",
    "supplementary_capture_data",  "interoperability_data", "klarna_interoperability_data"};

// Reads a command's fields; the first problem wins and is kept as a value.
class Fields {
 public:
  Fields(element obj, std::string_view body) : obj_(obj), raw_(raw_values(body, kForwarded)) {}

  std::optional<std::string> text(std::string_view key, bool required) {
    auto e = get(key, required);
    std::string_view v;
    if (!e) return std::nullopt;
    if (e->get_string().get(v) != simdjson::SUCCESS || v.empty()) {
      return fail(CommandError::bad_field, std::string(key) + " must be a non-empty string");
    }
    return std::string(v);
  }
  // A positive integer in minor units.
  std::optional<std::int64_t> amount(std::string_view key, bool required) {
    auto e = get(key, required);
    std::int64_t v = 0;
    if (!e) return std::nullopt;
    if (e->get_int64().get(v) != simdjson::SUCCESS || v <= 0) {
      return fail<std::int64_t>(CommandError::bad_field,
                                std::string(key) + " must be a positive integer");
    }
    return v;
  }
  std::optional<std::string> currency(std::string_view key) {
    auto v = text(key, true);
    const bool iso = v && v->size() == 3 &&
                     std::all_of(v->begin(), v->end(), [](char c) { return c >= 'A' && c <= 'Z'; });
    if (v && !iso) return fail(CommandError::bad_field, std::string(key) + " must be ISO 4217");
    return v;
  }
  // An object, as the exact JSON text received (validated, not re-encoded).
  std::optional<std::string> object(std::string_view key) {
    auto e = get(key, false);
    if (!e) return std::nullopt;
    if (!e->is_object()) {
      return fail(CommandError::bad_field, std::string(key) + " must be an object");
    }
    return raw(key);
  }
  // A non-empty string, as the JSON text received (quotes and escapes kept).
  std::optional<std::string> raw_string(std::string_view key) {
    if (!text(key, false)) return std::nullopt;
    return raw(key);
  }
  std::optional<CaptureMode> capture(std::string_view key) {
    auto v = text(key, true);
    if (v == "NOW") return CaptureMode::now;
    if (v == "LATER") return CaptureMode::later;
    if (v) fail(CommandError::bad_field, std::string(key) + " must be NOW or LATER");
    return std::nullopt;
  }
  std::optional<std::string> token(std::string_view key) {
    auto v = text(key, false);
    if (v && !header_safe(*v)) {
      return fail(CommandError::bad_field, std::string(key) + " must be visible ASCII");
    }
    return v;
  }
  Interoperability interoperability();
  // An integer ≥ 0 in minor units.
  std::optional<std::int64_t> non_negative(std::string_view key) {
    auto e = get(key, false);
    std::int64_t v = 0;
    if (!e) return std::nullopt;
    if (e->get_int64().get(v) != simdjson::SUCCESS || v < 0) {
      return fail<std::int64_t>(CommandError::bad_field,
                                std::string(key) + " must be an integer >= 0");
    }
    return v;
  }
  // A string of at most `max` characters (UTF-8 code points); may be empty.
  std::optional<std::string> bounded_text(std::string_view key, std::size_t max) {
    auto e = get(key, false);
    std::string_view v;
    if (!e) return std::nullopt;
    if (e->get_string().get(v) != simdjson::SUCCESS) {
      return fail(CommandError::bad_field, std::string(key) + " must be a string");
    }
    if (code_points(v) > max) {
      return fail(CommandError::bad_field,
                  std::string(key) + " must be at most " + std::to_string(max) + " characters");
    }
    return std::string(v);
  }
  std::vector<DisputeAttachmentRef> attachments(std::string_view key, bool required);

  template <class T = std::string>
  std::optional<T> fail(CommandError e, std::string detail) {
    if (!error_) error_.emplace(e, std::move(detail));
    return std::nullopt;
  }
  const std::optional<std::pair<CommandError, std::string>>& error() const { return error_; }

 private:
  std::optional<element> get(std::string_view key, bool required) {
    element e;
    if (obj_[key].get(e) != simdjson::SUCCESS || e.is_null()) {
      if (required) fail(CommandError::missing_field, std::string(key));
      return std::nullopt;
    }
    return e;
  }

  std::optional<std::string> raw(std::string_view key) {
    auto it = raw_.find(key);
    if (it == raw_.end()) return fail(CommandError::bad_field, std::string(key) + " is unreadable");
    return it->second;
  }

  element obj_;
  std::map<std::string, std::string, std::less<>> raw_;
  std::optional<std::pair<CommandError, std::string>> error_;
};

// [{"payment_dispute_attachment_id", "description"?}, …]; `required`: at least one.
std::vector<DisputeAttachmentRef> Fields::attachments(std::string_view key, bool required) {
  std::vector<DisputeAttachmentRef> out;
  auto e = get(key, required);
  if (!e) return out;
  simdjson::dom::array items;
  if (e->get_array().get(items) != simdjson::SUCCESS) {
    fail(CommandError::bad_field, std::string(key) + " must be an array");
    return out;
  }
  for (element item : items) {
    std::string_view id, description;
    if (!item.is_object() ||
        item["payment_dispute_attachment_id"].get_string().get(id) != simdjson::SUCCESS ||
        id.empty()) {
      fail(CommandError::bad_field,
           std::string(key) + "[] must be objects with payment_dispute_attachment_id");
      return {};
    }
    DisputeAttachmentRef ref{std::string(id), std::nullopt};
    element d;
    if (item["description"].get(d) == simdjson::SUCCESS && !d.is_null()) {
      if (d.get_string().get(description) != simdjson::SUCCESS) {
        fail(CommandError::bad_field, std::string(key) + "[].description must be a string");
        return {};
      }
      ref.description = std::string(description);
    }
    out.push_back(std::move(ref));
  }
  if (required && out.empty()) {
    fail(CommandError::bad_field, std::string(key) + " must name at least one attachment");
  }
  return out;
}

Interoperability Fields::interoperability() {
  Interoperability x;
  x.token = text("interoperability_token", false);
  if (!x.token) x.token = text("klarna_interoperability_token", false);
  x.data = raw_string("interoperability_data");
  if (!x.data) x.data = raw_string("klarna_interoperability_data");
  if (!x.token) return x;
  auto checked = check_interoperability_token(*x.token);
  if (auto* why = std::get_if<std::string>(&checked)) {
    fail(CommandError::bad_interoperability_token, "interoperability_token: " + *why);
    return x;
  }
  auto& claims = std::get<InteroperabilityClaims>(checked);
  x.status = claims.status;
  x.payment_confirmation_token = std::move(claims.payment_confirmation_token);
  if (x.status == InteroperabilityStatus::payment_pending_confirmation &&
      (!x.payment_confirmation_token || !header_safe(*x.payment_confirmation_token))) {
    fail(CommandError::bad_interoperability_token,
         "interoperability_token: PAYMENT_PENDING_CONFIRMATION without a usable "
         "payment_confirmation_token");
  }
  return x;
}

CommandBody decode_register(Fields& f) {
  RegisterCommand c;
  c.partner_account_id = f.text("partner_account_id", true).value_or("");
  c.payment_request_id = f.text("payment_request_id", false);
  c.payment_request_reference = f.text("payment_request_reference", false);
  if (!c.payment_request_id && !c.payment_request_reference) {
    f.fail(CommandError::missing_field, "payment_request_id or payment_request_reference");
  }
  c.amount = f.amount("amount", true).value_or(0);
  c.currency = f.currency("currency").value_or("");
  c.capture = f.capture("capture").value_or(CaptureMode::later);
  c.payment_transaction_reference = f.text("payment_transaction_reference", false);
  c.supplementary_purchase_data = f.object("supplementary_purchase_data");
  c.interoperability = f.interoperability();
  return c;
}

CommandBody decode_authorize(Fields& f) {
  AuthorizeCommand c;
  c.partner_account_id = f.text("partner_account_id", true).value_or("");
  c.amount = f.amount("amount", true).value_or(0);
  c.currency = f.currency("currency").value_or("");
  c.payment_transaction_reference = f.text("payment_transaction_reference", true).value_or("");
  c.capture = f.capture("capture").value_or(CaptureMode::later);
  c.customer_token = f.token("customer_token");
  c.interoperability = f.interoperability();
  c.supplementary_purchase_data = f.object("supplementary_purchase_data");
  c.step_up_config = f.object("step_up_config");
  c.payment_option_id = f.text("payment_option_id", false);
  c.request_customer_token = f.object("request_customer_token");
  return c;
}

CommandBody decode_sdk_token(Fields& f) {
  SdkTokenCommand c;
  c.partner_account_id = f.text("partner_account_id", true).value_or("");
  auto token = f.text("interoperability_token", false);
  if (!token) token = f.text("klarna_interoperability_token", false);
  if (!token) {
    f.fail(CommandError::missing_field, "interoperability_token");
  } else if (!header_safe(*token)) {
    f.fail(CommandError::bad_field, "interoperability_token must be visible ASCII");
  }
  c.interoperability_token = token.value_or("");
  return c;
}

CommandBody decode_capture(Fields& f) {
  CaptureCommand c;
  c.payment_transaction_id = f.text("payment_transaction_id", true).value_or("");
  c.amount = f.amount("amount", false);
  c.reference = f.text("reference", false);
  c.supplementary_capture_data = f.object("supplementary_capture_data");
  return c;
}

CommandBody decode_refund(Fields& f) {
  RefundCommand c;
  c.payment_transaction_id = f.text("payment_transaction_id", false);
  c.payment_capture_id = f.text("payment_capture_id", false);
  if (!c.payment_transaction_id && !c.payment_capture_id) {
    f.fail(CommandError::missing_field, "payment_transaction_id or payment_capture_id");
  } else if (c.payment_transaction_id && c.payment_capture_id) {
    f.fail(CommandError::bad_field, "payment_transaction_id and payment_capture_id: give one");
  }
  c.amount = f.amount("amount", true).value_or(0);
  c.reference = f.text("reference", false);
  return c;
}

CommandBody decode_represent(Fields& f) {
  DisputeRepresentCommand c;
  c.payment_dispute_id = f.text("payment_dispute_id", true).value_or("");
  c.attachments = f.attachments("attachments", true);
  c.additional_information = f.bounded_text("additional_information", kMaxAdditionalInformation);
  c.partner_proposed_refund_amount = f.non_negative("partner_proposed_refund_amount");
  return c;
}

CommandBody decode_appeal(Fields& f) {
  DisputeAppealCommand c;
  c.payment_dispute_id = f.text("payment_dispute_id", true).value_or("");
  c.attachments = f.attachments("attachments", false);
  c.additional_information = f.bounded_text("additional_information", kMaxAdditionalInformation);
  if (c.attachments.empty() && !c.additional_information) {
    f.fail(CommandError::missing_field, "additional_information or attachments");
  }
  return c;
}

CommandBody decode_body(CommandType type, Fields& f) {
  switch (type) {
    case CommandType::register_payment:
      return decode_register(f);
    case CommandType::authorize:
      return decode_authorize(f);
    case CommandType::capture:
      return decode_capture(f);
    case CommandType::refund:
      return decode_refund(f);
    case CommandType::void_transaction:
      return VoidCommand{f.text("payment_transaction_id", true).value_or("")};
    case CommandType::cancel:
      return CancelCommand{f.text("payment_request_id", true).value_or("")};
    case CommandType::dispute_accept_loss:
      return DisputeAcceptLossCommand{f.text("payment_dispute_id", true).value_or("")};
    case CommandType::dispute_represent:
      return decode_represent(f);
    case CommandType::dispute_appeal:
      return decode_appeal(f);
    case CommandType::sdk_token:
      return decode_sdk_token(f);
  }
  return CancelCommand{};
}

// base64url without padding (RFC 7515 §2); nullopt on any other character.
std::optional<std::string> base64url_decode(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
  };
  if (in.empty() || in.size() % 4 == 1) return std::nullopt;
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const int v = value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

// The identifying fields of a message that is a JSON object but not a valid command.
CommandRejection reject(CommandError e, std::string detail, element root, std::string hash) {
  CommandRejection r{e, std::move(detail), std::nullopt, std::nullopt, std::move(hash)};
  std::string_view v;
  if (root["command_id"].get_string().get(v) == simdjson::SUCCESS && !v.empty() &&
      v.size() <= kMaxCommandId) {
    r.command_id = std::string(v);
  }
  if (root["type"].get_string().get(v) == simdjson::SUCCESS) r.type = std::string(v);
  return r;
}

}  // namespace

std::string_view command_type_name(CommandType t) {
  for (const auto& n : kTypes) {
    if (n.type == t) return n.name;
  }
  return "unknown";
}

std::optional<CommandType> parse_command_type(std::string_view name) {
  for (const auto& n : kTypes) {
    if (n.name == name) return n.type;
  }
  return std::nullopt;
}

bool is_dispute_command(CommandType t) {
  return t == CommandType::dispute_accept_loss || t == CommandType::dispute_represent ||
         t == CommandType::dispute_appeal;
}

CommandType Command::type() const {
  static constexpr std::array kByIndex = {CommandType::register_payment,
                                          CommandType::authorize,
                                          CommandType::capture,
                                          CommandType::refund,
                                          CommandType::void_transaction,
                                          CommandType::cancel,
                                          CommandType::dispute_accept_loss,
                                          CommandType::dispute_represent,
                                          CommandType::dispute_appeal,
                                          CommandType::sdk_token};
  static_assert(kByIndex.size() == std::variant_size_v<CommandBody>);
  return kByIndex[body.index()];
}

std::string_view interoperability_status_name(InteroperabilityStatus s) {
  switch (s) {
    case InteroperabilityStatus::payment_pending_confirmation:
      return "PAYMENT_PENDING_CONFIRMATION";
    case InteroperabilityStatus::payment_prepared:
      return "PAYMENT_PREPARED";
    case InteroperabilityStatus::payment_unsupported:
      return "PAYMENT_UNSUPPORTED";
    case InteroperabilityStatus::payment_supported:
      break;
  }
  return "PAYMENT_SUPPORTED";
}

std::variant<InteroperabilityClaims, std::string> check_interoperability_token(
    std::string_view token) {
  const auto first = token.find('.');
  const auto second = first == std::string_view::npos ? first : token.find('.', first + 1);
  if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos) {
    return std::string("not three dot-separated segments");
  }
  const auto header = base64url_decode(token.substr(0, first));
  const auto payload = base64url_decode(token.substr(first + 1, second - first - 1));
  if (!header || !payload || !base64url_decode(token.substr(second + 1))) {
    return std::string("a segment is not base64url");
  }
  thread_local simdjson::dom::parser parser;
  element root;
  if (parser.parse(*payload).get(root) != simdjson::SUCCESS || !root.is_object()) {
    return std::string("payload is not a JSON object");
  }
  InteroperabilityClaims claims;  // unknown or absent status: PAYMENT_SUPPORTED
  std::string_view status;
  if (root["status"].get_string().get(status) == simdjson::SUCCESS) {
    for (auto s :
         {InteroperabilityStatus::payment_pending_confirmation,
          InteroperabilityStatus::payment_prepared, InteroperabilityStatus::payment_unsupported}) {
      if (status == interoperability_status_name(s)) claims.status = s;
    }
  }
  std::string_view confirmation;
  if (root["payment_confirmation_token"].get_string().get(confirmation) == simdjson::SUCCESS &&
      !confirmation.empty()) {
    claims.payment_confirmation_token = std::string(confirmation);
  }
  return claims;
}

std::string_view command_error_name(CommandError e) {
  switch (e) {
    case CommandError::not_json:
      return "not_json";
    case CommandError::not_object:
      return "not_object";
    case CommandError::missing_command_id:
      return "missing_command_id";
    case CommandError::bad_command_id:
      return "bad_command_id";
    case CommandError::missing_type:
      return "missing_type";
    case CommandError::unknown_type:
      return "unknown_type";
    case CommandError::missing_field:
      return "missing_field";
    case CommandError::bad_field:
      return "bad_field";
    case CommandError::bad_interoperability_token:
      return "bad_interoperability_token";
  }
  return "bad_field";
}

std::string CommandRejection::reason() const {
  std::string r(command_error_name(error));
  if (!detail.empty()) r += ": " + detail;
  return r;
}

std::variant<Command, CommandRejection> decode_command(std::string_view body) {
  thread_local simdjson::dom::parser parser;
  element root;
  if (parser.parse(body.data(), body.size()).get(root) != simdjson::SUCCESS) {
    return CommandRejection{CommandError::not_json, "", {}, {}, klarna::sha256_hex(body)};
  }
  std::string hash = klarna::sha256_hex(simdjson::minify(root));
  if (!root.is_object()) return CommandRejection{CommandError::not_object, "", {}, {}, hash};
  element id_field;
  std::string_view id;
  if (root["command_id"].get(id_field) != simdjson::SUCCESS || id_field.is_null()) {
    return reject(CommandError::missing_command_id, "command_id", root, hash);
  }
  if (id_field.get_string().get(id) != simdjson::SUCCESS || id.empty() ||
      id.size() > kMaxCommandId) {
    return reject(CommandError::bad_command_id, "command_id must be a string of 1-100 characters",
                  root, hash);
  }
  std::string_view type_name;
  element type_field;
  if (root["type"].get(type_field) != simdjson::SUCCESS || type_field.is_null()) {
    return reject(CommandError::missing_type, "type", root, hash);
  }
  const auto type = type_field.get_string().get(type_name) == simdjson::SUCCESS
                        ? parse_command_type(type_name)
                        : std::nullopt;
  if (!type) return reject(CommandError::unknown_type, "type", root, hash);
  Fields fields(root, body);
  CommandBody body_value = decode_body(*type, fields);
  if (const auto& e = fields.error()) return reject(e->first, e->second, root, hash);
  return Command{std::string(id), std::move(hash), std::move(body_value)};
}

std::string_view command_status_name(CommandStatus s) {
  return storage::to_string(s);
}

std::string render_command_result(const CommandResult& r, std::int64_t occurred_at_ms) {
  core::JsonWriter w;
  w.begin_object().key("command_id");
  r.command_id ? w.value(*r.command_id) : w.null();
  w.key("type");
  r.type ? w.value(*r.type) : w.null();
  w.field("status", command_status_name(r.status));
  auto maybe = [&](std::string_view k, const std::optional<std::string>& v) {
    if (v) w.field(k, *v);
  };
  maybe("reason", r.reason);
  maybe("result", r.result);
  maybe("result_reason", r.result_reason);
  maybe("payment_transaction_id", r.payment_transaction_id);
  maybe("payment_request_id", r.payment_request_id);
  maybe("payment_request_url", r.payment_request_url);
  maybe("expires_at", r.expires_at);
  maybe("customer_token", r.customer_token);
  maybe("sdk_token", r.sdk_token);
  maybe("payment_capture_id", r.payment_capture_id);
  maybe("payment_refund_id", r.payment_refund_id);
  if (r.amount) w.field("amount", *r.amount);
  maybe("interoperability_status", r.interoperability_status);
  maybe("payment_dispute_id", r.payment_dispute_id);
  maybe("dispute_state", r.dispute_state);
  w.field("occurred_at", core::rfc3339_ms(occurred_at_ms));
  w.end_object();
  return w.take();
}

}  // namespace kpay::processor
