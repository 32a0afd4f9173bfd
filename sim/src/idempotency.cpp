#include "kpay/sim/idempotency.hpp"

#include "kpay/klarna/signature.hpp"

namespace kpay::sim {

std::string IdempotencyStore::fingerprint(std::string_view method, std::string_view path,
                                          std::string_view body) {
  // A keyed hash keeps the stored value small; the key is a constant, this is
  // not a security boundary, only equality of requests.
  std::string material;
  material.reserve(method.size() + path.size() + body.size() + 2);
  material.append(method).append(" ").append(path).append("\n").append(body);
  return klarna::hmac_sha256_hex("klarna-sim-idempotency", material);
}

IdempotencyStore::Lookup IdempotencyStore::check(const std::string& key,
                                                 const std::string& fingerprint,
                                                 std::int64_t now_ms) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return {};
  if (now_ms - it->second.stored_at_ms >= window_ms_) {
    entries_.erase(it);
    return {};
  }
  if (it->second.fingerprint != fingerprint) return {Outcome::conflict, {}};
  return {Outcome::replay, it->second.response};
}

void IdempotencyStore::remember(const std::string& key, const std::string& fingerprint,
                                StoredResponse response, std::int64_t now_ms) {
  if (response.status >= 500) return;
  entries_[key] = Entry{fingerprint, std::move(response), now_ms};
  by_age_.emplace(now_ms, key);
}

void IdempotencyStore::purge(std::int64_t now_ms) {
  auto it = by_age_.begin();
  for (; it != by_age_.end() && now_ms - it->first >= window_ms_; ++it) {
    auto e = entries_.find(it->second);
    if (e != entries_.end() && e->second.stored_at_ms == it->first) entries_.erase(e);
  }
  by_age_.erase(by_age_.begin(), it);
}

}  // namespace kpay::sim
