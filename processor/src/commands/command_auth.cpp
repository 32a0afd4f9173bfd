// Command signatures (kpay-sender, kpay-signature), and the [commands] /
// [senders.*] settings the permission and age checks use
// (appliers/command_gate.cpp).
#include "kpay/processor/command_auth.hpp"

#include <simdjson.h>

#include <algorithm>

#include "kpay/processor/events.hpp"
#include "kpay/storage/sender_store.hpp"

namespace kpay::processor {

namespace {

bool lower_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

}  // namespace

std::optional<SignatureHeader> parse_signature_header(std::string_view value) {
  constexpr std::string_view kKid = "kid=", kV1 = ";v1=";
  if (!value.starts_with(kKid)) return std::nullopt;
  const auto sep = value.find(';');
  if (sep == std::string_view::npos) return std::nullopt;
  const auto key_id = value.substr(kKid.size(), sep - kKid.size());
  const auto rest = value.substr(sep);
  if (!rest.starts_with(kV1)) return std::nullopt;
  const auto hex = rest.substr(kV1.size());
  if (!storage::SenderStore::valid_id(key_id) || hex.size() != 64 || !lower_hex(hex)) {
    return std::nullopt;
  }
  return SignatureHeader{std::string(key_id), std::string(hex)};
}

std::string sign_command(std::string_view key_id, std::string_view secret, std::string_view value) {
  return "kid=" + std::string(key_id) + ";v1=" + klarna::hmac_sha256_hex(secret, value);
}

void SenderKeyRing::add_active(const std::string& sender, const std::string& key_id,
                               std::string_view secret) {
  senders_[sender][key_id] = Key{std::make_unique<klarna::SigningKey>(secret)};
  ++active_count_;
}

void SenderKeyRing::add_retired(const std::string& sender, const std::string& key_id) {
  senders_[sender].try_emplace(key_id, Key{});
}

const SenderKeyRing::Key* SenderKeyRing::find(std::string_view sender,
                                              std::string_view key_id) const {
  auto s = senders_.find(sender);
  if (s == senders_.end()) return nullptr;
  auto k = s->second.find(key_id);
  return k == s->second.end() ? nullptr : &k->second;
}

std::variant<Authenticated, AuthFailure> authenticate(const SenderKeyRing& ring,
                                                      const CommandHeaders& headers,
                                                      std::string_view value, bool allow_unsigned) {
  if (!headers.sender && !headers.signature) {
    if (allow_unsigned) return Authenticated{};
    return AuthFailure{"unsigned", ""};
  }
  if (!headers.sender || !storage::SenderStore::valid_id(*headers.sender)) {
    return AuthFailure{"malformed_signature", ""};
  }
  const std::string& sender = *headers.sender;
  if (!ring.knows(sender)) return AuthFailure{"unknown_sender", sender};
  const auto sig = headers.signature ? parse_signature_header(*headers.signature) : std::nullopt;
  if (!sig) return AuthFailure{"malformed_signature", sender};
  const auto* key = ring.find(sender, sig->key_id);
  if (key == nullptr) return AuthFailure{"unknown_key", sender};
  if (!key->key) return AuthFailure{"retired_key", sender};
  if (!key->key->verify(value, sig->hex)) return AuthFailure{"bad_signature", sender};
  return Authenticated{sender, sig->key_id};
}

std::variant<std::optional<std::int64_t>, std::string> command_issued_at(std::string_view value) {
  if (value.find("\"issued_at\"") == std::string_view::npos) return std::optional<std::int64_t>();
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element root, field;
  if (parser.parse(value.data(), value.size()).get(root) != simdjson::SUCCESS ||
      root["issued_at"].get(field) != simdjson::SUCCESS || field.is_null()) {
    return std::optional<std::int64_t>();
  }
  std::string_view text;
  if (field.get_string().get(text) == simdjson::SUCCESS) {
    if (auto ms = parse_rfc3339_ms(text)) return std::optional<std::int64_t>(*ms);
  }
  return std::string("issued_at must be an RFC 3339 timestamp");
}

}  // namespace kpay::processor
