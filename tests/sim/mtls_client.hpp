// One HTTPS request over a fresh connection, optionally presenting a client
// certificate (mTLS), with OpenSSL directly. The server's certificate is not
// verified (tests use throw-away ones). nullopt when the handshake or the
// exchange fails, e.g. because the server refused the client certificate.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "http_client.hpp"

namespace kpay::sim::test {

struct ClientCertificate {
  std::string certificate, private_key;  // PEM files; empty: present none
};

namespace detail {

inline int connect_loopback(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// "HTTP/1.1 200 OK\r\nName: v\r\n…\r\n\r\nbody" (the server closes after it).
inline std::optional<kpay::test::HttpResponse> parse_response(const std::string& in) {
  auto head_end = in.find("\r\n\r\n");
  if (in.rfind("HTTP/", 0) != 0 || head_end == std::string::npos) return std::nullopt;
  kpay::test::HttpResponse r;
  r.version = in.substr(0, in.find(' '));
  r.status = std::stoi(in.substr(in.find(' ') + 1, 3));
  std::size_t pos = in.find("\r\n") + 2;
  while (pos < head_end) {
    auto eol = in.find("\r\n", pos);
    auto line = in.substr(pos, eol - pos);
    auto colon = line.find(':');
    std::string name = line.substr(0, colon);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(value.begin());
    r.headers[name] = value;
    pos = eol + 2;
  }
  r.body = in.substr(head_end + 4);
  return r;
}

}  // namespace detail

inline std::optional<kpay::test::HttpResponse> https_request(
    std::uint16_t port, const ClientCertificate& client, const std::string& method,
    const std::string& target, const std::map<std::string, std::string>& headers = {}) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        SSL_CTX_free);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  if (!client.certificate.empty() &&
      (SSL_CTX_use_certificate_chain_file(ctx.get(), client.certificate.c_str()) != 1 ||
       SSL_CTX_use_PrivateKey_file(ctx.get(), client.private_key.c_str(), SSL_FILETYPE_PEM) != 1)) {
    return std::nullopt;
  }
  int fd = detail::connect_loopback(port);
  if (fd < 0) return std::nullopt;
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), SSL_free);
  SSL_set_fd(ssl.get(), fd);
  std::string in;
  if (SSL_connect(ssl.get()) == 1) {
    std::string out = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    for (const auto& [k, v] : headers) out += k + ": " + v + "\r\n";
    out += "Content-Length: 0\r\nConnection: close\r\n\r\n";
    if (SSL_write(ssl.get(), out.data(), static_cast<int>(out.size())) > 0) {
      char buf[8192];
      int n;
      // Under TLS 1.3 a refused client certificate shows up here, as a failed read.
      while ((n = SSL_read(ssl.get(), buf, sizeof buf)) > 0)
        in.append(buf, static_cast<std::size_t>(n));
    }
  }
  ssl.reset();
  ::close(fd);
  return detail::parse_response(in);
}

}  // namespace kpay::sim::test
