// SHA-256 with the algorithm fetched once per thread (sha256.hpp).
#include "sha256.hpp"

#include <openssl/evp.h>

#include <memory>

namespace kpay::processor {

std::string sha256(std::string_view bytes) {
  struct Sha256 {
    std::unique_ptr<EVP_MD, decltype(&EVP_MD_free)> md{EVP_MD_fetch(nullptr, "SHA256", nullptr),
                                                       &EVP_MD_free};
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx{EVP_MD_CTX_new(), &EVP_MD_CTX_free};
  };
  thread_local const Sha256 sha;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!sha.md || !sha.ctx || EVP_DigestInit_ex2(sha.ctx.get(), sha.md.get(), nullptr) != 1 ||
      EVP_DigestUpdate(sha.ctx.get(), bytes.data(), bytes.size()) != 1 ||
      EVP_DigestFinal_ex(sha.ctx.get(), digest, &len) != 1) {
    return {};
  }
  return std::string(reinterpret_cast<const char*>(digest), len);
}

}  // namespace kpay::processor
