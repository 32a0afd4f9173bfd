// A deliberately simple, blocking HTTP/1.1 client for tests: raw bytes in, a
// parsed response out, over plain TCP or TLS (OpenSSL directly, no Beast, so
// test files stay quick to compile and can send malformed requests on purpose).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <time.h>

namespace kpay::test {

struct HttpResponse {
  int status = 0;
  std::string version;  // "HTTP/1.1"
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

class HttpConnection {
 public:
  // Connects to 127.0.0.1:port; with `tls`, performs a TLS handshake without
  // verifying the certificate (tests use self-signed ones).
  HttpConnection(std::uint16_t port, bool tls = false,
                 std::chrono::milliseconds timeout = std::chrono::seconds(10));
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  void send_raw(std::string_view bytes);
  // Reads one response (Content-Length, chunked, or until close). nullopt when the
  // server closed the connection before a complete response.
  std::optional<HttpResponse> read_response();
  // True when the peer closed (EOF) within `timeout`.
  bool wait_closed(std::chrono::milliseconds timeout);
  // Negotiated TLS version string ("TLSv1.3"), empty for plain.
  std::string tls_version() const;

  std::optional<HttpResponse> request(std::string_view method, std::string_view target,
                                      std::string_view body,
                                      const std::map<std::string, std::string>& headers = {});

 private:
  bool fill();  // reads more bytes into buf_; false on EOF/error
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string buf_;
};

// One-shot convenience: new connection, one request, close.
std::optional<HttpResponse> http_request(std::uint16_t port, std::string_view method,
                                         std::string_view target, std::string_view body = {},
                                         const std::map<std::string, std::string>& headers = {},
                                         bool tls = false);

// Polls `cond` until true or `deadline` passes; returns the last result.
template <class F>
bool wait_until(F&& cond, std::chrono::milliseconds deadline = std::chrono::seconds(15)) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    struct timespec ts{0, 10'000'000};
    nanosleep(&ts, nullptr);
  }
  return cond();
}

}  // namespace kpay::test
