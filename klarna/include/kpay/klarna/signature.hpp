// Klarna's webhook signature (docs/klarna/WEBHOOKS.md §1):
//   lowercase_hex(HMAC-SHA256(key = the signing key string as given,
//                             data = the raw request body, byte for byte))
// Nothing else is signed: no timestamp, no nonce, no prefix.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct evp_mac_ctx_st;

namespace kpay::klarna {

// One registered key, ready to sign/verify. The secret is held only inside
// OpenSSL's MAC context; this class never exposes or logs it.
class SigningKey {
 public:
  explicit SigningKey(std::string_view secret);
  ~SigningKey();
  SigningKey(SigningKey&&) noexcept;
  SigningKey& operator=(SigningKey&&) noexcept;
  SigningKey(const SigningKey&) = delete;
  SigningKey& operator=(const SigningKey&) = delete;

  // 64 lowercase hex characters.
  std::string sign(std::string_view body) const;
  // Constant-time comparison with the header value. A value of the wrong length
  // fails at once: the length is public, the bytes are not.
  bool verify(std::string_view body, std::string_view signature_hex) const;

 private:
  // Keyed template, never used directly: each thread works on its own copy
  // (found by id_, unique per key for the process's life), so concurrent use
  // is safe.
  evp_mac_ctx_st* ctx_ = nullptr;
  std::uint64_t id_ = 0;
};

// One-shot helper (tests, the simulator, klarnactl).
std::string hmac_sha256_hex(std::string_view key, std::string_view body);
// Lowercase hex SHA-256 of `bytes` (command body hashes, upload keys).
std::string sha256_hex(std::string_view bytes);

// The registered keys at one moment: an immutable snapshot, replaced whole on
// reload so readers never see a half-updated ring.
class KeyRing {
 public:
  KeyRing() = default;
  void add(std::string id, std::string_view secret);
  const SigningKey* find(std::string_view id) const;
  std::size_t size() const { return keys_.size(); }

 private:
  std::map<std::string, SigningKey, std::less<>> keys_;
};

}  // namespace kpay::klarna
