// Per-call decisions of the API client that need no socket: refusing a call
// before sending, what a transport failure means (docs/klarna/PAYMENTS-API.md §3),
// Klarna's error body, the rate-limit headers, a response turned into an
// Answer, and the shared limiter.
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <simdjson.h>

#include <algorithm>
#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <cctype>
#include <charconv>
#include <ctime>

#include "api_client_internal.hpp"
#include "api_client_response.hpp"

namespace kpay::klarna::detail {

namespace asio = boost::asio;
namespace http = boost::beast::http;

namespace {

bool is_tchar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!is_tchar(c)) return false;
  }
  return true;
}

bool is_header_value(std::string_view v) {
  for (char c : v) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  return true;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

// Headers the client owns; a caller's "sensitive header" may not replace them.
bool is_reserved_header(std::string_view name) {
  for (std::string_view r : {"Authorization", "Host", "Content-Length", "Transfer-Encoding",
                             "Connection", "Content-Type", "Klarna-Idempotency-Key"}) {
    if (iequals(name, r)) return true;
  }
  return false;
}

// TLS alerts that say the configuration is wrong (certificates, versions):
// a retry meets the same answer. Others (internal_error, …) may be passing.
bool is_configuration_alert(int reason) {
  if (reason < SSL_AD_REASON_OFFSET || reason > SSL_AD_REASON_OFFSET + 255) return false;
  switch (reason - SSL_AD_REASON_OFFSET) {
    case SSL_AD_HANDSHAKE_FAILURE:
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
    case SSL_AD_CERTIFICATE_REVOKED:
    case SSL_AD_CERTIFICATE_EXPIRED:
    case SSL_AD_CERTIFICATE_UNKNOWN:
    case SSL_AD_UNKNOWN_CA:
    case SSL_AD_ACCESS_DENIED:
    case SSL_AD_PROTOCOL_VERSION:
    case SSL_AD_INSUFFICIENT_SECURITY:
    case SSL_AD_CERTIFICATE_REQUIRED:
      return true;
    default:
      return false;
  }
}

TransportFailure describe_tls_error(const boost::system::error_code& ec, long verify_result) {
  int reason = ERR_GET_REASON(static_cast<unsigned long>(ec.value()));
  if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
    std::string why = verify_result != X509_V_OK ? X509_verify_cert_error_string(verify_result)
                                                 : "unknown reason";
    return {"tls: server certificate verification failed: " + why, Disposition::permanent};
  }
  if (is_configuration_alert(reason)) return {"tls: " + ec.message(), Disposition::permanent};
  return {"tls: " + ec.message(), Disposition::retryable};
}

std::optional<double> parse_seconds(std::string_view text) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  if (text.empty()) return std::nullopt;
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !(value >= 0)) return std::nullopt;
  // Some APIs send the reset as a Unix time; Klarna documents seconds. Accept both.
  if (value > 1e9) value -= static_cast<double>(std::time(nullptr));
  return value < 0 ? 0.0 : value;
}

}  // namespace

std::string refuse_reason(const Call& call) {
  const std::string& m = call.method;
  if (m != "GET" && m != "POST" && m != "PATCH" && m != "DELETE" && m != "PUT") {
    return "unsupported method";
  }
  if (call.path.empty() || call.path.front() != '/') return "path must start with /";
  for (char c : call.path) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return "path has a space or control character";
    }
  }
  if ((m == "POST" || m == "PATCH") && call.idempotency_key.empty()) {
    return "missing idempotency key";
  }
  if (call.idempotency_key.size() > 255 || !is_header_value(call.idempotency_key)) {
    return "invalid idempotency key";
  }
  if (!is_header_value(call.correlation_id)) return "invalid correlation id";
  if (!is_header_value(call.traceparent)) return "invalid traceparent";
  if (!call.content_type.empty() && !is_header_value(call.content_type)) {
    return "invalid content type";
  }
  for (const auto& [name, value] : call.sensitive_headers) {
    // The name may be printed; the value never is.
    if (!is_token(name)) return "invalid header name";
    if (is_reserved_header(name)) return "header " + name + " is set by the client";
    if (!is_header_value(value)) return "invalid value for header " + name;
  }
  return {};
}

TransportFailure describe_transport_error(const boost::system::error_code& ec, long verify_result) {
  namespace ssl = asio::ssl;
  if (ec == boost::beast::error::timeout) return {"timeout"};
  if (ec == asio::error::operation_aborted) return {"cancelled"};
  if (ec == asio::error::connection_refused) return {"connection refused"};
  if (ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
      ec == asio::error::connection_aborted) {
    return {"connection reset"};
  }
  if (ec == asio::error::eof || ec == http::error::end_of_stream ||
      ec == http::error::partial_message) {
    return {"connection closed (EOF)"};
  }
  if (ec == ssl::error::stream_truncated) return {"connection closed (TLS stream truncated)"};
  if (ec == asio::error::host_not_found || ec == asio::error::host_not_found_try_again) {
    return {"resolve: " + ec.message()};
  }
  if (ec == http::error::body_limit || ec == http::error::header_limit) {
    return {"response too large", Disposition::permanent};
  }
  if (ec.category() == asio::error::get_ssl_category())
    return describe_tls_error(ec, verify_result);
  if (ec.category() == boost::system::error_code(http::error::end_of_stream).category()) {
    return {"bad response: " + ec.message()};
  }
  return {ec.message()};
}

bool is_stale_connection_error(const boost::system::error_code& ec) {
  return ec == asio::error::eof || ec == http::error::end_of_stream ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == asio::error::connection_aborted || ec == asio::ssl::error::stream_truncated;
}

bool may_resend(const Call& call, bool completely_written) {
  if (!completely_written) return true;
  const std::string& m = call.method;
  if (m == "GET" || m == "HEAD") return true;
  return (m == "POST" || m == "PATCH") && !call.idempotency_key.empty();
}

std::optional<ErrorBody> parse_error_body(std::string_view body) {
  if (body.empty() || body.front() != '{') return std::nullopt;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(body.data(), body.size()).get(doc) != simdjson::SUCCESS) return std::nullopt;
  ErrorBody e;
  bool any = false;
  auto field = [&](const char* key, std::string& out) {
    std::string_view v;
    if (doc[key].get_string().get(v) == simdjson::SUCCESS) {
      out.assign(v);
      any = true;
    }
  };
  field("error_id", e.error_id);
  field("error_type", e.error_type);
  field("error_code", e.error_code);
  field("error_message", e.error_message);
  if (!any) return std::nullopt;
  return e;
}

std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view ratelimit_reset,
                                                           std::string_view retry_after) {
  auto seconds = parse_seconds(ratelimit_reset);
  if (!seconds) seconds = parse_seconds(retry_after);  // an HTTP date is not understood: ignored
  if (!seconds) return std::nullopt;
  double capped = std::min(*seconds, 3600.0);
  return std::chrono::milliseconds(static_cast<std::int64_t>(capped * 1000.0 + 0.5));
}

void apply_response_limits(ResponseParser& parser) {
  parser.body_limit(kMaxResponseBody);
  parser.header_limit(kMaxResponseHeader);
}

Answer to_answer(Response&& res) {
  Answer a;
  a.status = static_cast<int>(res.result_int());
  a.klarna_correlation_id = std::string(res["Klarna-Correlation-Id"]);
  if (a.status >= 300) a.error = parse_error_body(res.body());
  a.disposition = classify(a.status, a.error ? std::string_view(a.error->error_code) : "");
  if (a.status == 429 || a.status == 503) {
    a.retry_after = parse_retry_after(res["X-Ratelimit-Reset"], res["Retry-After"]);
  }
  a.body = std::move(res.body());
  return a;
}

RateLimiter::RateLimiter(double max_per_second) {
  if (max_per_second > 0) {
    interval_ = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(1.0 / max_per_second));
  }
}

Clock::time_point RateLimiter::reserve(Clock::time_point now) {
  std::lock_guard lock(mu_);
  auto start = std::max({now, hold_until_, next_slot_});
  if (interval_.count() > 0) next_slot_ = start + interval_;
  return start;
}

Clock::time_point RateLimiter::hold_until() const {
  std::lock_guard lock(mu_);
  return hold_until_;
}

void RateLimiter::hold(Clock::time_point until) {
  std::lock_guard lock(mu_);
  hold_until_ = std::max(hold_until_, until);
}

}  // namespace kpay::klarna::detail
