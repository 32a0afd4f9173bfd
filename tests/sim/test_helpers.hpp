// Helpers shared by the sim suites: a capturing DeliverySink, a tiny loopback
// webhook endpoint (plain sockets, status chosen per request), JSON access,
// and the openssl CLI as an independent HMAC implementation.
#pragma once

#include <netinet/in.h>
#include <poll.h>
#include <simdjson.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "kpay/sim/api.hpp"
#include "kpay/sim/webhooks.hpp"

namespace kpay::sim::test {

struct CapturingSink : DeliverySink {
  std::vector<Delivery> deliveries;
  void enqueue(Delivery d) override { deliveries.push_back(std::move(d)); }
  std::string introspect_json(const DeliveryFilter&) const override {
    return R"({"deliveries":[]})";
  }
  void reset() override { deliveries.clear(); }
  std::vector<std::string> types() const {
    std::vector<std::string> out;
    for (const auto& d : deliveries) out.push_back(d.event_type);
    return out;
  }
};

inline std::string jstr(const std::string& json, std::initializer_list<std::string_view> path) {
  simdjson::dom::parser p;
  simdjson::dom::element e;
  if (p.parse(json).get(e) != simdjson::SUCCESS) return "<not json>";
  for (auto k : path) {
    if (e[k].get(e) != simdjson::SUCCESS) return "<missing>";
  }
  std::string_view s;
  if (e.get_string().get(s) == simdjson::SUCCESS) return std::string(s);
  std::int64_t i;
  if (e.get_int64().get(i) == simdjson::SUCCESS) return std::to_string(i);
  bool b;
  if (e.get_bool().get(b) == simdjson::SUCCESS) return b ? "true" : "false";
  return "<other>";
}

// HMAC-SHA256 computed by the openssl CLI over the exact bytes (an
// implementation independent of ours).
inline std::string openssl_hmac(const std::string& key, const std::string& body) {
  char tmpl[] = "/tmp/sim-body-XXXXXX";
  int fd = ::mkstemp(tmpl);
  if (fd < 0) return {};
  std::size_t off = 0;
  while (off < body.size()) {
    auto n = ::write(fd, body.data() + off, body.size() - off);
    if (n <= 0) break;
    off += static_cast<std::size_t>(n);
  }
  ::close(fd);
  // The key goes through the shell quoted; tests use keys without quotes.
  std::string cmd = "openssl dgst -sha256 -hmac '" + key + "' " + tmpl + " 2>/dev/null";
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[512];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    ::pclose(p);
  }
  ::unlink(tmpl);
  // "HMAC-SHA2-256(/tmp/x)= 0925…" (format varies by version): take the last token.
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  auto sp = out.rfind(' ');
  return sp == std::string::npos ? out : out.substr(sp + 1);
}

// A loopback HTTP endpoint that records each POST and answers with the status
// `status_for(n)` returns for the n-th request (0-based).
class WebhookEndpoint {
 public:
  struct Received {
    std::string head;  // request line + headers, as sent
    std::string body;
    std::string header(const std::string& lower) const {
      std::string h = head;
      for (auto& c : h) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      auto pos = h.find("\r\n" + lower + ":");
      if (pos == std::string::npos) return {};
      auto start = pos + 2 + lower.size() + 1;
      auto end = h.find("\r\n", start);
      std::string v = head.substr(start, end - start);
      while (!v.empty() && v.front() == ' ') v.erase(v.begin());
      return v;
    }
  };

  explicit WebhookEndpoint(std::function<int(int)> status_for)
      : status_for_(std::move(status_for)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd_, 64);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { loop(); });
  }
  ~WebhookEndpoint() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  std::uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }
  std::vector<Received> received() const {
    std::lock_guard lk(mu_);
    return received_;
  }
  std::size_t count() const {
    std::lock_guard lk(mu_);
    return received_.size();
  }

 private:
  void loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      timeval tv{2, 0};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      std::string in;
      char buf[8192];
      std::size_t header_end = std::string::npos, need = 0;
      for (;;) {
        auto n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        in.append(buf, static_cast<std::size_t>(n));
        if (header_end == std::string::npos) {
          header_end = in.find("\r\n\r\n");
          if (header_end != std::string::npos) {
            Received tmp{in.substr(0, header_end), {}};
            auto cl = tmp.header("content-length");
            need = header_end + 4 + (cl.empty() ? 0 : std::stoul(cl));
          }
        }
        if (header_end != std::string::npos && in.size() >= need) break;
      }
      if (header_end == std::string::npos) {
        ::close(c);
        continue;
      }
      int n_req;
      {
        std::lock_guard lk(mu_);
        n_req = static_cast<int>(received_.size());
        received_.push_back({in.substr(0, header_end), in.substr(header_end + 4)});
      }
      int status = status_for_(n_req);
      std::string resp = "HTTP/1.1 " + std::to_string(status) +
                         " X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      ::send(c, resp.data(), resp.size(), MSG_NOSIGNAL);
      ::close(c);
    }
  }

  std::function<int(int)> status_for_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::vector<Received> received_;
  std::thread thread_;
};

}  // namespace kpay::sim::test
