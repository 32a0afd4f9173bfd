// Internals of the Klarna API client shared by its translation units: the
// validated configuration, the TLS context set-up, the shared rate limiter,
// the mapping of transport failures to dispositions and answer parsing.
// Not installed; only klarna/src includes it.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "kpay/klarna/api_client.hpp"

namespace kpay::klarna::detail {

using Clock = std::chrono::steady_clock;

// Where the client connects, from the environment or `base_url`.
struct Target {
  std::string host;         // name or IP literal, without brackets
  std::string port;         // "443" unless the URL carries one
  std::string host_header;  // host[:port] as the Host header wants it
  bool host_is_ip = false;  // no SNI for IP literals (RFC 6066 §3); IP SAN check
};

// Validates every setting that cannot be checked later; throws
// ClientConfigError naming the setting.
void validate_settings(const ClientSettings& s);
Target resolve_target(const ClientSettings& s);
// "Basic <file contents minus one trailing newline>", or empty without a file.
std::string read_authorization(const ClientSettings& s);
// TLS client context: TLS >= 1.2, peer verification (system store or
// ca_file), the mTLS certificate and key when configured.
void configure_tls(boost::asio::ssl::context& ctx, const ClientSettings& s);
// What a call authenticates with, loaded together and replaced whole on a
// reload (ApiClient::reload): the Authorization value and the TLS context
// (CA, client certificate and key). The authorization is wiped on destruction.
struct Credentials {
  std::shared_ptr<boost::asio::ssl::context> tls;
  std::string authorization;
  std::int64_t loaded_at_ms = 0;
  std::optional<std::int64_t> certificate_not_after_ms;  // mTLS only
  ~Credentials();
};
// Reads every file anew; throws ClientConfigError (naming the setting, never
// a secret) on a missing, unreadable, lax or malformed one.
std::shared_ptr<const Credentials> load_credentials(const ClientSettings& s);

// Klarna-Integration-Metadata: one-line JSON naming the integrator.
std::string integration_metadata(const ClientSettings& s);

// Why a request could not be sent as given (empty: it can).
std::string refuse_reason(const Call& call);

// What a failed exchange means for the caller. Text never carries a secret.
struct TransportFailure {
  std::string text;
  Disposition disposition = Disposition::retryable;
};
// `verify_result` is SSL_get_verify_result() after a failed handshake
// (X509_V_OK otherwise).
TransportFailure describe_transport_error(const boost::system::error_code& ec, long verify_result);
// A reused connection failing this way before any answer byte was probably
// closed by the server while idle (whether the call may be resent: may_resend).
bool is_stale_connection_error(const boost::system::error_code& ec);
// Whether a call whose reused connection failed before any answer byte may be
// sent again on a new one. Not completely written: always (the server cannot
// act on part of a request). Written: it may have reached the server and been
// executed, so only when a repeat is harmless: GET and HEAD (safe), POST and
// PATCH (they carry Klarna-Idempotency-Key: Klarna answers a repeat with the
// first result). Never DELETE or PUT: Klarna's keys do not cover them.
bool may_resend(const Call& call, bool completely_written);

// Klarna's error body, when `body` is JSON carrying at least one error field.
std::optional<ErrorBody> parse_error_body(std::string_view body);
// X-Ratelimit-Reset (preferred) or Retry-After, in seconds; capped at one hour
// so a bogus header cannot freeze the client.
std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view ratelimit_reset,
                                                           std::string_view retry_after);

// One limiter per client, shared by every connection. `reserve` hands out
// start times: no earlier than a 429's hold and, with pacing, one request per
// 1/rate seconds. Thread-safe.
class RateLimiter {
 public:
  explicit RateLimiter(double max_per_second);
  // The earliest start of one request; takes a pacing slot.
  Clock::time_point reserve(Clock::time_point now);
  // The current 429 hold; a later 429 may extend it while a request waits.
  Clock::time_point hold_until() const;
  void hold(Clock::time_point until);

 private:
  mutable std::mutex mu_;
  Clock::duration interval_{0};
  Clock::time_point next_slot_{};
  Clock::time_point hold_until_{};
};

}  // namespace kpay::klarna::detail
