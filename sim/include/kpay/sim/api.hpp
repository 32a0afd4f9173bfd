// The Klarna double's API, as a plain request → response function (no I/O),
// so state machines, idempotency and webhook emission are testable without a
// server. The HTTP server (server.cpp) only parses, applies faults, calls
// handle() and writes the answer.
//
// Guarantees:
//   - handle() is thread-safe; operations are serialized by one mutex, so an
//     operation and its webhooks are atomic with respect to other calls.
//   - A POST/PATCH with Klarna-Idempotency-Key executes at most once per key
//     within the window; repeats get the stored response (see idempotency.hpp).
//   - Every state change that Klarna would notify about is rendered once per
//     matching enabled subscription, signed, and handed to the DeliverySink.
//
// Surface (see docs/SIM.md for bodies):
//   /v2/accounts/{account}/payment/requests[/{id}]           POST, GET, DELETE
//   /v2/accounts/{account}/payment/authorize                 POST (initial, or final with
//                                                            Klarna-Network-Session-Token)
//   /v2/accounts/{account}/payment/confirmation-tokens/{t}/confirm   POST (Gen 1)
//   /v2/accounts/{account}/payment/transactions/{id}[/capture|/refund|/void]
//   /v2/accounts/{account}/payment/captures/{id}, /refunds/{id}       GET
//   /v2/notification/signing-keys[/{id}]                      POST, GET, DELETE
//   /v2/notification/webhooks[/{id}[/simulate]]               POST, GET, PATCH, DELETE
//   /v2/settlements[/{id}[/transactions|/csv|/payouts/status]] GET (docs/klarna/SETTLEMENTS.md)
//   /_sim/…                                                   introspection and control
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kpay/sim/clock.hpp"
#include "kpay/sim/settlements.hpp"
#include "kpay/sim/webhooks.hpp"

namespace kpay::sim {

struct ApiRequest {
  std::string method;                          // "GET", "POST", …
  std::string target;                          // path with optional query
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;
  // Set by the server for an HTTPS connection whose client certificate was
  // verified against sim.tls_client_ca (mTLS).
  bool mtls_verified = false;
  std::string client_certificate_subject = {};  // RFC 2253, when mtls_verified
  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

struct ApiResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // JSON (or empty for 204)
};

// The key /v2 calls must present when none is configured.
inline constexpr std::string_view kDefaultApiKey = "klarna-sim-api-key";
inline constexpr std::string_view kDefaultDisputePathPrefix =
    "/v2/accounts/{account}/payment/disputes";

struct ApiOptions {
  std::string account_id = "krn:partner:global:account:test:SIMACCOUNT";
  // Unless require_auth is false, every /v2 call must carry
  // `Authorization: Basic <api_key>` (401 otherwise). /_sim never needs it.
  std::string api_key{kDefaultApiKey};
  // A second key accepted as well (sim.api_key_also): Klarna honours both the
  // old and the new API key while a partner rotates.
  std::string api_key_also;
  bool require_auth = true;
  std::int64_t request_ttl_ms = 3LL * 3600 * 1000;  // server-side flow
  // Session / confirmation token; simulated time (sim.token_ttl_ms).
  std::int64_t token_ttl_ms = 60LL * 60 * 1000;
  std::int64_t transaction_ttl_ms = 28LL * 24 * 3600 * 1000;
  std::int64_t idempotency_window_ms = 24LL * 3600 * 1000;
  std::size_t max_calls_logged = 100'000;
  std::uint64_t seed = 0;  // 0: random ids
  std::string payment_request_url_base = "https://pay.test.klarna.com/sim/";
  // Where the Dispute API is served ("{account}" = any account id; without
  // it, the calls are for account_id). Klarna's prefix is unconfirmed:
  // "/v2/accounts/{account}/payment/disputes" (r2512 collection) or
  // "/v4/payment/disputes" (an SDK generated from its spec). Only this one
  // is served.
  std::string dispute_path_prefix = std::string(kDefaultDisputePathPrefix);
  // How much Klarna's answers carry (`sim.answers`; `POST /_sim/answers
  // {"mode"}` switches it at run time): "full" (every field), "thin" (money
  // answers with only the new id; a STEP_UP's ids only under
  // payment_request.state_context.customer_interaction: as little as Klarna's
  // documents allow) or "bare" (capture / refund / void answers with an empty
  // object: the id must be read back).
  std::string answers = "full";
  // Settlement reports: schedule, fee schedule, payout delay.
  SettlementOptions settlements;
  // Where the sim is reached (`sim.public_url`; else klarna-sim sets it from
  // its listening address once started): settlement links point here.
  std::string public_url = "https://api-global.test.klarna.com";
};

// Evidence files: at most 7 MB (7,000,000 bytes) each. A request carrying one
// may exceed sim.body_limit by this much (multipart overhead included).
inline constexpr std::size_t kMaxAttachmentBytes = 7'000'000;
inline constexpr std::size_t kAttachmentBodyLimit = 8u << 20;

class SimApi {
 public:
  // `sink` may be null (then webhooks are only counted); it must outlive this.
  SimApi(ApiOptions options, SimClock& clock, DeliverySink* sink);
  ~SimApi();
  SimApi(const SimApi&) = delete;
  SimApi& operator=(const SimApi&) = delete;

  ApiResponse handle(const ApiRequest& request);

  // Operation name used for fault rules and execution counts, e.g.
  // "payment.transactions.capture"; "unknown" when no route matches.
  static std::string route_name(std::string_view method, std::string_view target);
  // The body limit for a request: `fallback`, or more for an evidence upload.
  std::size_t body_limit(std::string_view method, std::string_view target,
                         std::size_t fallback) const;

  // Applies time-based transitions (request and token expiry, transaction
  // expiry) as of the clock's now. The server calls it periodically.
  void tick();

  // The base of the links in settlement reports and webhooks.
  void set_public_url(std::string url);

  // Start-up configuration (also possible over the API).
  void add_signing_key(const std::string& id, const std::string& secret);
  // Returns the webhook_id.
  std::string add_webhook(const std::string& url, const std::vector<std::string>& event_types,
                          const std::string& event_version, const std::string& signing_key_id);

  // Extra /_sim/ routes served by other components (scenarios, faults):
  // `prefix` like "/_sim/scenarios"; called without the API lock held.
  using ControlHandler = std::function<ApiResponse(const ApiRequest&)>;
  void set_control_handler(std::string prefix, ControlHandler handler);

  // For scenarios and tests: how many times `route` really executed.
  std::uint64_t executions(const std::string& route) const;

  // The `Authorization` value /v2 calls need; empty when auth is off.
  // Scenarios send it like any other caller.
  std::string authorization() const;

  // Transactions with at least one capture, by anyone (scenario or external
  // caller), and no dispute yet; oldest first.
  std::vector<std::string> disputable_transactions() const;

  // Records a call that the server answered with an injected fault instead of
  // executing it (so introspection shows every call received).
  void note_fault(const ApiRequest& request, std::string_view fault, int status);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Klarna's error body: {"error_id","error_type","error_code","error_message",
// "validation_errors"?:[{"parameter","reason"}]}.
ApiResponse klarna_error(int status, std::string_view error_type, std::string_view error_code,
                         std::string_view message,
                         const std::vector<std::pair<std::string, std::string>>& validation = {});

std::string percent_decode(std::string_view s);

}  // namespace kpay::sim
