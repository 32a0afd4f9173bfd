// Test-only LD_PRELOAD library (never linked into a product binary): a DNS
// that hangs. getaddrinfo() of a name ending in ".slow.test" blocks for
// KPAY_SLOW_RESOLVE_MS (default 30000) and then resolves it as 127.0.0.1;
// every other name goes to the real getaddrinfo(). When it starts blocking it
// creates the file KPAY_SLOW_RESOLVE_MARK (if set), for the test to wait on.
#include <dlfcn.h>
#include <netdb.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <thread>

extern "C" int getaddrinfo(const char* node, const char* service, const addrinfo* hints,
                           addrinfo** res) {
  using Real = int (*)(const char*, const char*, const addrinfo*, addrinfo**);
  static const auto real = reinterpret_cast<Real>(dlsym(RTLD_NEXT, "getaddrinfo"));
  constexpr std::string_view kSuffix = ".slow.test";
  const std::string_view name = node ? node : "";
  if (name.size() > kSuffix.size() && name.substr(name.size() - kSuffix.size()) == kSuffix) {
    if (const char* mark = std::getenv("KPAY_SLOW_RESOLVE_MARK")) {
      if (std::FILE* f = std::fopen(mark, "w")) std::fclose(f);
    }
    const char* ms = std::getenv("KPAY_SLOW_RESOLVE_MS");
    std::this_thread::sleep_for(std::chrono::milliseconds(ms ? std::atol(ms) : 30000));
    return real("127.0.0.1", service, hints, res);
  }
  return real(node, service, hints, res);
}
