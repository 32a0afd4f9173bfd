#include "openssl_memory.hpp"

#include <openssl/crypto.h>

#include <cstdlib>

namespace kpay::receiver {

namespace {

void* openssl_malloc(std::size_t n, const char*, int) {
  return std::malloc(n);
}

void* openssl_realloc(void* p, std::size_t n, const char*, int) {
  return std::realloc(p, n);
}

void openssl_free(void* p, const char*, int) {
  if (p != nullptr) std::free(p);
}

}  // namespace

bool route_openssl_memory() {
  return CRYPTO_set_mem_functions(openssl_malloc, openssl_realloc, openssl_free) == 1;
}

}  // namespace kpay::receiver
