// The signature headers: Klarna-Signing-Key-Id looked up in a key ring, then
// Klarna-Signature checked against the body (klarna/src/signature.cpp), with
// arbitrary key ids, header values, secrets and bodies. Properties: never
// crashes; verify() accepts exactly the lowercase hex HMAC-SHA256 of the body
// (checked against OpenSSL's one-shot HMAC as an independent reference);
// every key id that was not registered is unknown.
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <fuzzer/FuzzedDataProvider.h>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "kpay/klarna/signature.hpp"

namespace {

std::string reference_hmac_hex(std::string_view key, std::string_view body) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  static const char kEmpty = 0;
  HMAC(EVP_sha256(), key.empty() ? &kEmpty : key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac, &len);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += kHex[mac[i] >> 4];
    out += kHex[mac[i] & 0xf];
  }
  return out;
}

const kpay::klarna::KeyRing& ring() {
  static const kpay::klarna::KeyRing r = [] {
    kpay::klarna::KeyRing k;
    k.add("key-1", "secret-one");
    k.add("key-2", "");  // an empty secret is legal HMAC
    k.add("Klarna-Key-2025", "s3cr3t-with-more-than-sixty-four-bytes-0123456789abcdef0123456789");
    return k;
  }();
  return r;
}

bool registered(std::string_view id) {
  return id == "key-1" || id == "key-2" || id == "Klarna-Key-2025";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  const std::string key_id = in.ConsumeRandomLengthString(80);
  const std::string header = in.ConsumeRandomLengthString(130);
  const std::string secret = in.ConsumeRandomLengthString(100);
  const std::string body = in.ConsumeRemainingBytesAsString();

  // The receiver's path: the key ring, then the header against the body.
  const auto* key = ring().find(key_id);
  FUZZ_CHECK((key != nullptr) == registered(key_id));
  if (key != nullptr) {
    const std::string expected = key->sign(body);
    FUZZ_CHECK(key->verify(body, expected));
    FUZZ_CHECK(key->verify(body, header) == (header == expected));
  }

  // A key made from any secret signs as HMAC-SHA256 does.
  const kpay::klarna::SigningKey fuzzed(secret);
  const std::string sig = fuzzed.sign(body);
  FUZZ_CHECK(sig == reference_hmac_hex(secret, body));
  FUZZ_CHECK(sig == kpay::klarna::hmac_sha256_hex(secret, body));
  FUZZ_CHECK(fuzzed.verify(body, header) == (header == sig));
  FUZZ_CHECK(!fuzzed.verify(body, sig.substr(0, 63)));
  return 0;
}
