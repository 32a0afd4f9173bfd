#include "kpay/klarna/signature.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <atomic>
#include <stdexcept>
#include <utility>
#include <vector>

namespace kpay::klarna {

namespace {

struct MacDeleter {
  void operator()(EVP_MAC* m) const noexcept { EVP_MAC_free(m); }
};
struct MacCtxDeleter {
  void operator()(EVP_MAC_CTX* c) const noexcept { EVP_MAC_CTX_free(c); }
};
using MacCtx = std::unique_ptr<EVP_MAC_CTX, MacCtxDeleter>;

// Fetched once: EVP_MAC_fetch is a provider lookup, far too slow per request.
EVP_MAC* hmac_algorithm() {
  static std::unique_ptr<EVP_MAC, MacDeleter> mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
  if (!mac) throw std::runtime_error("OpenSSL: HMAC unavailable");
  return mac.get();
}

void to_hex(const unsigned char* in, size_t n, char* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kHex[in[i] >> 4];
    out[2 * i + 1] = kHex[in[i] & 0xF];
  }
}

// This thread's working copies of keyed MAC contexts, by key id. A copy is
// made once per key and thread, then reset for each use (EVP_MAC_init without
// a key re-applies the stored one): duplicating the template on every request
// took about half of the verification time. Retired keys age out (oldest
// first); a freed context is cleansed by OpenSSL.
EVP_MAC_CTX* working_context(std::uint64_t key_id, EVP_MAC_CTX* tmpl) {
  constexpr std::size_t kPerThread = 8;
  thread_local std::vector<std::pair<std::uint64_t, MacCtx>> contexts;
  for (auto& [id, ctx] : contexts) {
    if (id != key_id) continue;
    if (EVP_MAC_init(ctx.get(), nullptr, 0, nullptr) != 1) {
      throw std::runtime_error("OpenSSL: HMAC reset failed");
    }
    return ctx.get();
  }
  MacCtx ctx(EVP_MAC_CTX_dup(tmpl));
  if (!ctx) throw std::runtime_error("OpenSSL: EVP_MAC_CTX_dup failed");
  if (contexts.size() >= kPerThread) contexts.erase(contexts.begin());
  return contexts.emplace_back(key_id, std::move(ctx)).second.get();
}

std::uint64_t next_key_id() {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

// Computes the 32-byte MAC into `out` as 64 hex chars.
void compute(std::uint64_t key_id, EVP_MAC_CTX* tmpl, std::string_view body, char* out_hex) {
  EVP_MAC_CTX* ctx = working_context(key_id, tmpl);
  unsigned char mac[EVP_MAX_MD_SIZE];
  size_t len = 0;
  if (EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(body.data()), body.size()) != 1 ||
      EVP_MAC_final(ctx, mac, &len, sizeof mac) != 1 || len != 32) {
    throw std::runtime_error("OpenSSL: HMAC computation failed");
  }
  to_hex(mac, len, out_hex);
  OPENSSL_cleanse(mac, sizeof mac);
}

}  // namespace

SigningKey::SigningKey(std::string_view secret) : id_(next_key_id()) {
  MacCtx ctx(EVP_MAC_CTX_new(hmac_algorithm()));
  if (!ctx) throw std::runtime_error("OpenSSL: EVP_MAC_CTX_new failed");
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  // An empty key is legal for HMAC but OpenSSL wants a non-null pointer.
  static const unsigned char kEmpty = 0;
  const auto* key =
      secret.empty() ? &kEmpty : reinterpret_cast<const unsigned char*>(secret.data());
  if (EVP_MAC_init(ctx.get(), key, secret.size(), params) != 1) {
    throw std::runtime_error("OpenSSL: HMAC init failed");
  }
  ctx_ = ctx.release();
}

SigningKey::~SigningKey() {
  if (ctx_ != nullptr) EVP_MAC_CTX_free(ctx_);
}
SigningKey::SigningKey(SigningKey&& o) noexcept
    : ctx_(std::exchange(o.ctx_, nullptr)), id_(std::exchange(o.id_, 0)) {}
SigningKey& SigningKey::operator=(SigningKey&& o) noexcept {
  if (this != &o) {
    if (ctx_ != nullptr) EVP_MAC_CTX_free(ctx_);
    ctx_ = std::exchange(o.ctx_, nullptr);
    id_ = std::exchange(o.id_, 0);
  }
  return *this;
}

std::string SigningKey::sign(std::string_view body) const {
  std::string out(64, '\0');
  compute(id_, ctx_, body, out.data());
  return out;
}

bool SigningKey::verify(std::string_view body, std::string_view signature_hex) const {
  if (signature_hex.size() != 64) return false;
  char expected[64];
  compute(id_, ctx_, body, expected);
  bool ok = CRYPTO_memcmp(expected, signature_hex.data(), 64) == 0;
  OPENSSL_cleanse(expected, sizeof expected);
  return ok;
}

std::string hmac_sha256_hex(std::string_view key, std::string_view body) {
  return SigningKey(key).sign(body);
}

std::string sha256_hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * len);
  for (unsigned i = 0; i < len; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 0xf];
  }
  return out;
}

void KeyRing::add(std::string id, std::string_view secret) {
  keys_.insert_or_assign(std::move(id), SigningKey(secret));
}

const SigningKey* KeyRing::find(std::string_view id) const {
  auto it = keys_.find(id);
  return it == keys_.end() ? nullptr : &it->second;
}

}  // namespace kpay::klarna
