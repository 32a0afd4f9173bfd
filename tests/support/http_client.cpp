#include "http_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace kpay::test {

struct HttpConnection::Impl {
  int fd = -1;
  SSL_CTX* ctx = nullptr;
  SSL* ssl = nullptr;
  std::chrono::milliseconds timeout;
  ~Impl() {
    if (ssl != nullptr) SSL_free(ssl);
    if (ctx != nullptr) SSL_CTX_free(ctx);
    if (fd >= 0) ::close(fd);
  }
  bool wait_readable(std::chrono::milliseconds t) {
    if (ssl != nullptr && SSL_pending(ssl) > 0) return true;
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(t.count())) > 0;
  }
  // >0 bytes, 0 EOF, -1 error/timeout
  ssize_t read_some(char* buf, size_t n, std::chrono::milliseconds t) {
    if (!wait_readable(t)) return -1;
    if (ssl != nullptr) {
      int r = SSL_read(ssl, buf, static_cast<int>(n));
      if (r > 0) return r;
      int e = SSL_get_error(ssl, r);
      if (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL || e == SSL_ERROR_SSL) return 0;
      return -1;
    }
    ssize_t r = ::recv(fd, buf, n, 0);
    return r < 0 ? 0 : r;  // ECONNRESET counts as closed
  }
};

HttpConnection::HttpConnection(std::uint16_t port, bool tls, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>()) {
  impl_->timeout = timeout;
  impl_->fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(impl_->fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    throw std::runtime_error("connect to 127.0.0.1:" + std::to_string(port) + " failed");
  }
  int one = 1;
  ::setsockopt(impl_->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (tls) {
    impl_->ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(impl_->ctx, SSL_VERIFY_NONE, nullptr);
    impl_->ssl = SSL_new(impl_->ctx);
    SSL_set_fd(impl_->ssl, impl_->fd);
    if (SSL_connect(impl_->ssl) != 1) throw std::runtime_error("TLS handshake failed");
  }
}

HttpConnection::~HttpConnection() = default;

std::string HttpConnection::tls_version() const {
  return impl_->ssl != nullptr ? SSL_get_version(impl_->ssl) : "";
}

void HttpConnection::send_raw(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n;
    if (impl_->ssl != nullptr) {
      n = SSL_write(impl_->ssl, bytes.data(), static_cast<int>(bytes.size()));
    } else {
      n = ::send(impl_->fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    }
    if (n <= 0) throw std::runtime_error("send failed");
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

bool HttpConnection::fill() {
  char tmp[16384];
  ssize_t n = impl_->read_some(tmp, sizeof tmp, impl_->timeout);
  if (n <= 0) return false;
  buf_.append(tmp, static_cast<size_t>(n));
  return true;
}

bool HttpConnection::wait_closed(std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  char tmp[4096];
  while (std::chrono::steady_clock::now() < end) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    ssize_t n = impl_->read_some(tmp, sizeof tmp, std::max(left, std::chrono::milliseconds(1)));
    if (n == 0) return true;
    if (n > 0) buf_.append(tmp, static_cast<size_t>(n));
  }
  return false;
}

std::optional<HttpResponse> HttpConnection::read_response() {
  size_t header_end;
  while ((header_end = buf_.find("\r\n\r\n")) == std::string::npos) {
    if (!fill()) return std::nullopt;
  }
  HttpResponse res;
  std::string head = buf_.substr(0, header_end);
  buf_.erase(0, header_end + 4);
  size_t line_end = head.find("\r\n");
  std::string status_line = head.substr(0, line_end);
  res.version = status_line.substr(0, status_line.find(' '));
  res.status = std::stoi(status_line.substr(status_line.find(' ') + 1, 3));
  size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
  while (pos < head.size()) {
    size_t e = head.find("\r\n", pos);
    if (e == std::string::npos) e = head.size();
    std::string line = head.substr(pos, e - pos);
    auto colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = line.substr(0, colon);
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return std::tolower(c); });
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      res.headers[name] = value;
    }
    pos = e + 2;
  }
  if (auto cl = res.header("content-length"); !cl.empty()) {
    size_t len = std::stoul(cl);
    while (buf_.size() < len) {
      if (!fill()) return std::nullopt;
    }
    res.body = buf_.substr(0, len);
    buf_.erase(0, len);
  } else if (res.header("transfer-encoding").find("chunked") != std::string::npos) {
    for (;;) {
      size_t e;
      while ((e = buf_.find("\r\n")) == std::string::npos) {
        if (!fill()) return std::nullopt;
      }
      size_t chunk = std::stoul(buf_.substr(0, e), nullptr, 16);
      buf_.erase(0, e + 2);
      while (buf_.size() < chunk + 2) {
        if (!fill()) return std::nullopt;
      }
      res.body += buf_.substr(0, chunk);
      buf_.erase(0, chunk + 2);
      if (chunk == 0) break;
    }
  } else if (res.status >= 200 && res.status != 204 && res.status != 304) {
    while (fill()) {
    }
    res.body = std::move(buf_);
    buf_.clear();
  }
  return res;
}

std::optional<HttpResponse> HttpConnection::request(
    std::string_view method, std::string_view target, std::string_view body,
    const std::map<std::string, std::string>& headers) {
  std::string req;
  req.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: 127.0.0.1\r\n");
  bool has_ct = false;
  for (const auto& [k, v] : headers) {
    req += k + ": " + v + "\r\n";
    std::string lower = k;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    if (lower == "content-type") has_ct = true;
  }
  if (!has_ct && !body.empty()) req += "Content-Type: application/json\r\n";
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  req += "\r\n";
  req.append(body);
  try {
    send_raw(req);
  } catch (const std::runtime_error&) {
    // A server may answer early (413) and stop reading: its answer may
    // already be here even though the rest of the body could not be sent.
  }
  return read_response();
}

std::optional<HttpResponse> http_request(std::uint16_t port, std::string_view method,
                                         std::string_view target, std::string_view body,
                                         const std::map<std::string, std::string>& headers,
                                         bool tls) {
  HttpConnection c(port, tls);
  return c.request(method, target, body, headers);
}

}  // namespace kpay::test
