// Klarna's idempotency rules (docs/klarna/PAYMENTS-API.md §3), as a store the API consults
// before executing any POST/PATCH that carries `Klarna-Idempotency-Key`:
//   - first use of a key: execute, then remember (fingerprint, response);
//   - same key, same request (method, path, body): return the stored response,
//     without executing again;
//   - same key, different request: conflict (the API answers 409);
//   - entries are kept for `window_ms` (24 h) of simulated time, then forgotten;
//     purge() visits only the expired ones (an age index, oldest first).
// Responses with status >= 500 are not remembered, so a retry after a technical
// error executes again (that is what "retry with the same key" is for).
// Not thread-safe: the API calls it under its own lock.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace kpay::sim {

struct StoredResponse {
  int status = 0;
  std::string body;
};

class IdempotencyStore {
 public:
  explicit IdempotencyStore(std::int64_t window_ms = 24LL * 3600 * 1000) : window_ms_(window_ms) {}

  enum class Outcome { execute, replay, conflict };
  struct Lookup {
    Outcome outcome = Outcome::execute;
    StoredResponse response;  // set on replay
  };

  static std::string fingerprint(std::string_view method, std::string_view path,
                                 std::string_view body);

  Lookup check(const std::string& key, const std::string& fingerprint, std::int64_t now_ms);
  void remember(const std::string& key, const std::string& fingerprint, StoredResponse response,
                std::int64_t now_ms);
  void purge(std::int64_t now_ms);
  std::size_t size() const { return entries_.size(); }
  void clear() {
    entries_.clear();
    by_age_.clear();
  }

 private:
  struct Entry {
    std::string fingerprint;
    StoredResponse response;
    std::int64_t stored_at_ms = 0;
  };
  std::int64_t window_ms_;
  std::map<std::string, Entry, std::less<>> entries_;
  // (stored_at_ms, key) for every remember(); a record whose key was since
  // forgotten or stored again is skipped when it comes due.
  std::multimap<std::int64_t, std::string> by_age_;
};

}  // namespace kpay::sim
