// The Klarna API client: asynchronous HTTPS (Asio/Beast + OpenSSL) to one
// Klarna environment, so many calls are in flight on few threads.
//
// Guarantees:
//   - HTTPS only, TLS 1.2 or newer, the server certificate verified against
//     the system store (or `ca_file`) and the host name checked. An unverified
//     server is a transport error, never a silent downgrade.
//   - mTLS: the client certificate and key come from PEM files; Basic
//     credentials from a secret file. Neither the credentials, the key, nor
//     any header marked sensitive ever appears in a log line, an error string
//     or a metric label.
//   - One attempt per send(): the caller owns retries (the outbox worker keeps
//     attempts durable). The answer says whether a retry may help
//     (`disposition`), per the table in docs/klarna/PAYMENTS-API.md §3.
//   - Kept-alive connections in a bounded pool (`max_connections`); requests
//     beyond it wait in FIFO order. Each request has a deadline covering
//     connect, TLS handshake, write and read.
//   - A kept-alive connection the server ended is seen before reuse (an EOF or
//     close_notify waiting on it) and replaced. One that fails anyway before
//     any answer byte gets the call resent once, at once, on a new connection
//     when a repeat is harmless: the request was not completely written, or
//     it is a GET/HEAD, or a POST/PATCH (under its idempotency key). A written
//     DELETE or PUT is not resent: the caller gets the transport error.
//   - "cancelled" answers only calls cut short by shutdown().
//   - One shared rate limiter: a 429 with X-Ratelimit-Reset (or Retry-After)
//     holds every later request until the reset; `max_requests_per_second`
//     paces globally when set.
//   - `Klarna-Idempotency-Key` is sent on every POST/PATCH (a POST/PATCH
//     without one is refused before sending), `User-Agent` and
//     `Klarna-Integration-Metadata` name the product and its version,
//     `Partner-Correlation-Id` when given.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kpay::klarna {

enum class Environment { live, test, custom };
// "live" | "test" | "custom"; throws std::invalid_argument otherwise.
Environment parse_environment(std::string_view text);
std::string_view environment_name(Environment e);
// The base URL of `live` and `test`.
std::string_view default_base_url(Environment e);

struct ClientSettings {
  Environment environment = Environment::test;
  std::string base_url;                 // custom only: https://host[:port]
  std::string ca_file;                  // empty: the system store
  std::string client_certificate_file;  // mTLS, PEM (both or neither)
  std::string client_private_key_file;  // mTLS, PEM; refused when readable by others
  std::string credentials_file;         // the API key; one trailing newline dropped
  std::size_t max_connections = 32;     // pool bound (connections open at once)
  std::chrono::milliseconds request_timeout{30000};
  std::chrono::milliseconds connect_timeout{5000};
  double max_requests_per_second = 0;  // 0: no pacing (429s still honoured)
  int io_threads = 1;
  // A kept-alive connection unused this long is closed (Klarna closes idle
  // ones after about a minute; closing first avoids writing into a dead one).
  std::chrono::milliseconds idle_timeout{30000};
  std::string user_agent = "klarna-processor";  // "/<version>" is appended
  std::string version = "0.1.0";
};

// Thrown by the constructor: a missing or unreadable file, a bad URL, a key
// file readable by others. The message names the setting, never a secret.
struct ClientConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Call {
  std::string method;  // GET, POST, PATCH, DELETE
  // Path and query, already percent-encoded, e.g.
  // "/v2/accounts/krn%3Apartner%3A…/payment/authorize".
  std::string path;
  // What the logs and metrics may show instead of `path` (a path that carries
  // a token, e.g. ".../confirmation-tokens/{token}/confirm"). Empty: `path`.
  std::string path_for_logs;
  std::string body;  // JSON unless content_type says otherwise; empty for GET/DELETE
  // The body's Content-Type; empty: application/json. E.g.
  // "multipart/form-data; boundary=…" for a dispute's evidence upload.
  std::string content_type;
  std::string idempotency_key;
  std::string correlation_id;  // Partner-Correlation-Id, optional
  std::string traceparent;     // W3C trace context header, optional
  // Extra headers. Values of these are never logged: they are tokens
  // (Klarna-Network-Session-Token, Klarna-Interoperability-Token, …).
  std::vector<std::pair<std::string, std::string>> sensitive_headers;
  // Overrides settings.request_timeout when set.
  std::optional<std::chrono::milliseconds> timeout;
};

// What to do with an answer (docs/klarna/PAYMENTS-API.md §3).
enum class Disposition {
  success,    // 2xx
  retryable,  // 429, 500, 502, 503, 504, timeout, connection reset/refused, TLS EOF
  permanent,  // 400, 401, 403, 404, 413 and other 4xx, an unverifiable server
  conflict,   // 409: re-read the resource, then decide
};
std::string_view disposition_name(Disposition d);

struct ErrorBody {  // Klarna's error body, when the answer carried one
  std::string error_id, error_type, error_code, error_message;
};

struct Answer {
  int status = 0;               // 0: no HTTP answer (see transport_error)
  std::string transport_error;  // "timeout", "connection reset", "tls: …"; no secrets
  std::string body;
  std::string klarna_correlation_id;
  std::optional<ErrorBody> error;
  Disposition disposition = Disposition::retryable;
  // From X-Ratelimit-Reset / Retry-After on a 429 or 503.
  std::optional<std::chrono::milliseconds> retry_after;
  std::chrono::microseconds elapsed{0};
  // "429 ACCESS_ERROR/RATE_LIMITED (error_id …)" or "timeout": for logs and
  // the outbox's last_error.
  std::string summary() const;
};

// Classifies a status (and error_code) per docs/klarna/PAYMENTS-API.md §3.
Disposition classify(int status, std::string_view error_code);

// "/v2/accounts/<percent-encoded account id>"
std::string account_path(std::string_view account_id);

class ApiClient {
 public:
  // Starts its I/O threads. Throws ClientConfigError.
  explicit ApiClient(ClientSettings settings);
  // Cancels what is in flight (their callbacks run with "cancelled"), joins.
  ~ApiClient();
  ApiClient(const ApiClient&) = delete;
  ApiClient& operator=(const ApiClient&) = delete;

  // Sends one attempt; `done` runs once, on one of the client's I/O threads
  // (it must not block for long). After shutdown() it runs at once on the
  // caller's thread with "cancelled". A call refused before sending (POST or
  // PATCH without idempotency key, bad header) is answered `permanent` with
  // the reason in transport_error and never reaches the network.
  void send(Call call, std::function<void(Answer)> done);
  // The same, waiting for the answer (tools, tests). Not from a callback:
  // on an I/O thread it answers `permanent` at once instead of deadlocking.
  Answer call(Call call);

  // Stops accepting new calls and cancels those in flight (bounded shutdown):
  // queued and in-flight callbacks run with "cancelled" (retryable), then
  // the I/O threads are joined. A call that does not end within a 1 s grace
  // (a DNS resolve cannot be cancelled) is abandoned: the I/O threads are
  // stopped, its callback never runs, and shutdown() returns false. Called
  // from a callback it cancels but leaves the joining to the destructor,
  // which must not itself run on an I/O thread (and returns false).
  bool shutdown();

  struct Stats {
    std::uint64_t sent = 0, answered = 0, transport_errors = 0;
    std::uint64_t connections_opened = 0, connections_reused = 0;
    std::uint64_t rate_limited = 0;  // 429s seen
    std::size_t in_flight = 0, queued = 0, idle_connections = 0;
    std::size_t open_connections = 0;    // connected now (idle or busy)
    std::size_t peak_in_flight = 0;      // most calls on the wire at once since start
    std::uint64_t rate_limit_waits = 0;  // calls held back by the limiter (429 hold or pacing)
    std::uint64_t stale_retries = 0;     // reused connections that failed, call resent once
  };
  Stats stats() const;
  const ClientSettings& settings() const;

  // Re-reads the credentials file, the CA file and the mTLS certificate and
  // key (SIGHUP). Calls in flight finish with the credentials they started
  // with; later calls use the new ones (on new connections). A file that
  // cannot be used is refused: false, the old credentials kept, `error` says
  // why (names the setting and file, never a secret).
  bool reload(std::string& error);
  // When the credentials in use were loaded; the client certificate's
  // notAfter (mTLS only). Milliseconds since the epoch.
  std::int64_t credentials_loaded_at_ms() const;
  std::optional<std::int64_t> client_certificate_not_after_ms() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kpay::klarna
