// The command signature headers (processor/src/commands/command_auth.cpp): kpay-sender
// and kpay-signature with arbitrary values against a fixed sender key ring,
// over arbitrary bodies; and the body's issued_at. Properties: never crashes;
// a parsed kpay-signature renders back to exactly the value read; a command is
// authenticated only when the sender and key are registered and active and
// the hex is the HMAC-SHA256 of the body (checked against OpenSSL's one-shot
// HMAC as an independent reference); what sign_command() writes is accepted;
// a retired key is never accepted.
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <fuzzer/FuzzedDataProvider.h>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "kpay/processor/command_auth.hpp"

namespace {

using namespace kpay::processor;

std::string reference_hmac_hex(std::string_view key, std::string_view body) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac, &len);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += kHex[mac[i] >> 4];
    out += kHex[mac[i] & 0xf];
  }
  return out;
}

const SenderKeyRing& ring() {
  static const SenderKeyRing r = [] {
    SenderKeyRing k;
    k.add_active("refunds", "k1", "refunds-secret-one-0123456789");
    k.add_active("refunds", "k2", "refunds-secret-two-0123456789");
    k.add_retired("refunds", "k0");
    k.add_active("e2e", "e2e-k1", "e2e-sender-secret-0123456789abcdef");
    return k;
  }();
  return r;
}

// The active secret of (sender, key), or nullptr.
const char* secret_of(std::string_view sender, std::string_view key) {
  if (sender == "refunds" && key == "k1") return "refunds-secret-one-0123456789";
  if (sender == "refunds" && key == "k2") return "refunds-secret-two-0123456789";
  if (sender == "e2e" && key == "e2e-k1") return "e2e-sender-secret-0123456789abcdef";
  return nullptr;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  const bool has_sender = in.ConsumeBool();
  const bool has_signature = in.ConsumeBool();
  const std::string sender = in.ConsumeRandomLengthString(80);
  const std::string signature = in.ConsumeRandomLengthString(160);
  const std::string body = in.ConsumeRemainingBytesAsString();

  const auto parsed = parse_signature_header(signature);
  if (parsed) {
    FUZZ_CHECK("kid=" + parsed->key_id + ";v1=" + parsed->hex == signature);
    FUZZ_CHECK(parsed->hex.size() == 64);
  }

  CommandHeaders h;
  if (has_sender) h.sender = sender;
  if (has_signature) h.signature = signature;
  for (bool allow_unsigned : {false, true}) {
    const auto verdict = authenticate(ring(), h, body, allow_unsigned);
    if (const auto* ok = std::get_if<Authenticated>(&verdict)) {
      if (!has_sender && !has_signature) {
        FUZZ_CHECK(allow_unsigned && ok->sender.empty());
        continue;
      }
      FUZZ_CHECK(ok->sender == sender);
      FUZZ_CHECK(parsed && ok->key_id == parsed->key_id);
      const char* secret = secret_of(sender, parsed->key_id);
      FUZZ_CHECK(secret != nullptr);
      FUZZ_CHECK(parsed->hex == reference_hmac_hex(secret, body));
    } else {
      const auto& failure = std::get<AuthFailure>(verdict);
      FUZZ_CHECK(!failure.reason.empty());
    }
  }

  // Whatever a sender signs with an active key is accepted; a retired one never.
  for (const char* key : {"k1", "k2"}) {
    CommandHeaders good{std::string("refunds"), sign_command(key, secret_of("refunds", key), body)};
    FUZZ_CHECK(std::holds_alternative<Authenticated>(authenticate(ring(), good, body, false)));
  }
  CommandHeaders retired{std::string("refunds"), sign_command("k0", "anything", body)};
  const auto r = authenticate(ring(), retired, body, false);
  FUZZ_CHECK(std::holds_alternative<AuthFailure>(r) &&
             std::get<AuthFailure>(r).reason == "retired_key");

  (void)command_issued_at(body);
  return 0;
}
