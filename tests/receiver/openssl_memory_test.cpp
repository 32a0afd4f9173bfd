// The receiver's OpenSSL allocator (receiver/src/openssl_memory.hpp): set
// before OpenSSL's first allocation, refused after it.
#include "openssl_memory.hpp"

#include <gtest/gtest.h>
#include <openssl/crypto.h>

#include <cstdlib>

namespace kpay::receiver {
namespace {

// In a fresh process (the test re-executed alone): OpenSSL has not allocated
// yet, so the functions take; allocations and frees (null included) go
// through them.
void route_in_fresh_process() {
  if (!route_openssl_memory()) std::exit(2);
  CRYPTO_malloc_fn m = nullptr;
  CRYPTO_realloc_fn r = nullptr;
  CRYPTO_free_fn f = nullptr;
  CRYPTO_get_mem_functions(&m, &r, &f);
  if (f == &CRYPTO_free || m == &CRYPTO_malloc || r == &CRYPTO_realloc) std::exit(3);
  void* p = OPENSSL_malloc(64);
  if (p == nullptr) std::exit(4);
  p = OPENSSL_realloc(p, 20000);
  if (p == nullptr) std::exit(5);
  OPENSSL_free(p);
  OPENSSL_free(nullptr);
  std::exit(0);
}

// Once OpenSSL has allocated with its own allocator, it keeps it.
void route_after_an_allocation() {
  OPENSSL_free(OPENSSL_malloc(64));
  std::exit(route_openssl_memory() ? 1 : 0);
}

TEST(OpensslMemory, RoutedBeforeTheFirstAllocationAndRefusedAfter) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(route_in_fresh_process(), testing::ExitedWithCode(0), "");
  EXPECT_EXIT(route_after_an_allocation(), testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace kpay::receiver
