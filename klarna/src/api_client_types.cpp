// The API client's value types and pure functions: environments, paths,
// the docs/klarna/PAYMENTS-API.md §3 classification table and the one-line summary.
#include <stdexcept>
#include <string>

#include "kpay/klarna/api_client.hpp"

#include "kpay/core/percent_encode.hpp"

namespace kpay::klarna {

Environment parse_environment(std::string_view text) {
  if (text == "live") return Environment::live;
  if (text == "test") return Environment::test;
  if (text == "custom") return Environment::custom;
  throw std::invalid_argument("environment must be live, test or custom");
}

std::string_view environment_name(Environment e) {
  switch (e) {
    case Environment::live:
      return "live";
    case Environment::test:
      return "test";
    case Environment::custom:
      return "custom";
  }
  return "custom";
}

std::string_view default_base_url(Environment e) {
  switch (e) {
    case Environment::live:
      return "https://api-global.klarna.com";
    case Environment::test:
      return "https://api-global.test.klarna.com";
    case Environment::custom:
      return "";
  }
  return "";
}

std::string_view disposition_name(Disposition d) {
  switch (d) {
    case Disposition::success:
      return "success";
    case Disposition::retryable:
      return "retryable";
    case Disposition::permanent:
      return "permanent";
    case Disposition::conflict:
      return "conflict";
  }
  return "retryable";
}

// docs/klarna/PAYMENTS-API.md §3. Branches on the status only: Klarna documents no error
// code that changes the decision (a 500 TIMEOUT is retried like any 500).
// 408 is the server giving up on our request before it ran: retrying with the
// same idempotency key is safe, so it is retryable although it is a 4xx.
Disposition classify(int status, std::string_view /*error_code*/) {
  if (status >= 200 && status < 300) return Disposition::success;
  switch (status) {
    case 409:
      return Disposition::conflict;
    case 408:
    case 429:
    case 500:
    case 502:
    case 503:
    case 504:
      return Disposition::retryable;
    default:
      break;
  }
  if (status == 0) return Disposition::retryable;  // no HTTP answer at all
  // 501/505 will not change on a retry; other 5xx (proxies' 520-524, 507, …)
  // are the server's trouble, not the request's.
  if (status >= 500 && status < 600 && status != 501 && status != 505) {
    return Disposition::retryable;
  }
  return Disposition::permanent;  // other 4xx, and 1xx/3xx, which Klarna never sends
}

std::string account_path(std::string_view account_id) {
  return "/v2/accounts/" + core::percent_encode(account_id);
}

std::string Answer::summary() const {
  if (status == 0) return "transport: " + (transport_error.empty() ? "unknown" : transport_error);
  std::string out = std::to_string(status);
  if (error && (!error->error_type.empty() || !error->error_code.empty())) {
    out += ' ';
    out += error->error_type;
    out += '/';
    out += error->error_code;
  }
  if (error && !error->error_id.empty()) out += " error_id=" + error->error_id;
  if (!klarna_correlation_id.empty()) out += " correlation_id=" + klarna_correlation_id;
  if (retry_after) out += " retry_after_ms=" + std::to_string(retry_after->count());
  return out;
}

}  // namespace kpay::klarna
