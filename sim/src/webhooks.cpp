#include "kpay/sim/webhooks.hpp"

#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"

namespace kpay::sim {

bool is_success_status(int status) {
  return status == 200 || status == 201 || status == 202 || status == 204;
}

WebhookDispatcher::WebhookDispatcher(DispatcherOptions options, const SimClock& clock,
                                     Transport transport)
    : options_(std::move(options)),
      clock_(clock),
      transport_(std::move(transport)),
      rng_(options_.seed ? options_.seed : std::random_device{}()) {
  int n = std::max(1, options_.workers);
  for (int i = 0; i < n; ++i) workers_.emplace_back([this] { worker_loop(); });
}

WebhookDispatcher::~WebhookDispatcher() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void WebhookDispatcher::enqueue(Delivery d) {
  {
    std::lock_guard lk(mu_);
    std::uniform_int_distribution<int> pct(0, 99);
    bool duplicate = pct(rng_) < options_.duplicate_percent;
    Delivery copy;
    if (duplicate) copy = d;
    std::uint64_t first = next_id_;
    add_locked(std::move(d), std::nullopt);
    if (duplicate) add_locked(std::move(copy), first);
  }
  cv_.notify_all();
}

void WebhookDispatcher::add_locked(Delivery d, std::optional<std::uint64_t> duplicate_of) {
  std::uniform_int_distribution<int> pct(0, 99);
  Record r;
  r.id = next_id_++;
  r.delivery = std::move(d);
  r.duplicate_of = duplicate_of;
  r.created_at_ms = clock_.now_ms();
  r.next_at_ms = r.created_at_ms;
  if (pct(rng_) < options_.reorder_percent) {
    // Held back in real time (converted to simulated time), so later
    // deliveries overtake this one.
    r.held_back = true;
    r.next_at_ms += options_.reorder_delay.count() * clock_.speed();
  }
  due_.emplace(r.next_at_ms, r.id);
  records_.emplace(r.id, std::move(r));
  for (auto it = records_.begin();
       records_.size() > options_.max_records && it != records_.end();) {
    if (it->second.state != State::pending && !it->second.in_flight) {
      it = records_.erase(it);
      ++pruned_;
    } else {
      ++it;
    }
  }
}

void WebhookDispatcher::worker_loop() {
  std::unique_lock lk(mu_);
  while (!stopping_) {
    std::int64_t now = clock_.now_ms();
    if (due_.empty() || due_.begin()->first > now) {
      // Poll at most every 20 ms: the clock can jump (advance()) without notice.
      auto wait = std::chrono::microseconds(20'000);
      if (!due_.empty()) {
        wait = std::min(wait, clock_.real_delay(due_.begin()->first - now));
        if (wait.count() < 200) wait = std::chrono::microseconds(200);
      }
      cv_.wait_for(lk, wait);
      continue;
    }
    auto [at, id] = *due_.begin();
    due_.erase(due_.begin());
    Record& rec = records_.at(id);
    rec.in_flight = true;
    Attempt attempt;
    attempt.at_ms = now;
    attempt.send_seq = next_send_seq_++;
    Delivery d = rec.delivery;  // copy: the record may be read while we send
    lk.unlock();

    PostHeaders headers{{"Content-Type", "application/json"},
                        {"Klarna-Signing-Key-Id", d.signing_key_id},
                        {"Klarna-Signature", d.signature},
                        {"User-Agent", "klarna-sim"}};
    PostResult result = transport_(d.url, headers, d.body, options_.timeout);

    lk.lock();
    if (stopping_ && records_.find(id) == records_.end()) break;
    auto it = records_.find(id);
    if (it == records_.end()) continue;  // reset() while in flight
    Record& r = it->second;
    r.in_flight = false;
    attempt.status = result.status;
    attempt.error = result.error;
    r.attempts.push_back(attempt);
    if (is_success_status(result.status)) {
      r.state = State::delivered;
    } else if (r.attempts.size() > options_.retry_schedule_ms.size()) {
      r.state = State::failed;
      kpay::core::Logger("sim").warn("webhook permanently failed",
                                     {{"event_id", r.delivery.event_id},
                                      {"url", r.delivery.url},
                                      {"attempts", r.attempts.size()}});
    } else {
      r.next_at_ms = clock_.now_ms() + options_.retry_schedule_ms[r.attempts.size() - 1];
      due_.emplace(r.next_at_ms, r.id);
    }
  }
}

WebhookDispatcher::Counts WebhookDispatcher::counts() const {
  std::lock_guard lk(mu_);
  Counts c;
  for (const auto& [id, r] : records_) {
    if (r.state == State::pending) ++c.pending;
    if (r.state == State::delivered) ++c.delivered;
    if (r.state == State::failed) ++c.failed;
    c.attempts += r.attempts.size();
  }
  return c;
}

std::string WebhookDispatcher::introspect_json(const DeliveryFilter& filter) const {
  std::lock_guard lk(mu_);
  core::JsonWriter w;
  std::size_t pending = 0, delivered = 0, failed = 0, attempts = 0, matching = 0;
  auto state_name = [](State s) {
    return s == State::pending ? "pending" : s == State::delivered ? "delivered" : "failed";
  };
  for (const auto& [id, r] : records_) {
    if (r.state == State::pending) ++pending;
    if (r.state == State::delivered) ++delivered;
    if (r.state == State::failed) ++failed;
    attempts += r.attempts.size();
    if (filter.state.empty() || filter.state == state_name(r.state)) ++matching;
  }
  std::size_t skip = filter.limit > 0 && matching > filter.limit ? matching - filter.limit : 0;
  w.begin_object().key("deliveries").begin_array();
  for (const auto& [id, r] : records_) {
    const char* state = state_name(r.state);
    if (!filter.state.empty() && filter.state != state) continue;
    if (skip > 0) {
      --skip;
      continue;
    }
    w.begin_object()
        .field("delivery_id", r.id)
        .field("webhook_id", r.delivery.webhook_id)
        .field("url", r.delivery.url)
        .field("event_id", r.delivery.event_id)
        .field("event_type", r.delivery.event_type)
        .field("event_version", r.delivery.event_version)
        .field("signing_key_id", r.delivery.signing_key_id)
        .field("signature", r.delivery.signature)
        .field("body", r.delivery.body)
        .field("state", state)
        .field("held_back", r.held_back)
        .field("created_at", core::rfc3339_ms(r.created_at_ms));
    w.key("duplicate_of");
    if (r.duplicate_of) {
      w.value(*r.duplicate_of);
    } else {
      w.null();
    }
    if (r.state == State::pending) w.field("next_attempt_at", core::rfc3339_ms(r.next_at_ms));
    w.key("attempts").begin_array();
    for (const auto& a : r.attempts) {
      w.begin_object()
          .field("at", core::rfc3339_ms(a.at_ms))
          .field("send_seq", a.send_seq)
          .field("status", a.status)
          .field("error", a.error)
          .end_object();
    }
    w.end_array().end_object();
  }
  w.end_array();
  w.key("summary")
      .begin_object()
      .field("deliveries", records_.size())
      .field("pending", pending)
      .field("delivered", delivered)
      .field("failed", failed)
      .field("attempts", attempts)
      .field("pruned", pruned_)
      .end_object();
  w.end_object();
  return w.take();
}

void WebhookDispatcher::reset() {
  std::lock_guard lk(mu_);
  records_.clear();
  due_.clear();
}

// ---------------------------------------------------------------------------
// Blocking HTTP client for deliveries.

namespace {

struct Url {
  bool tls = false;
  std::string host;
  std::string port;
  std::string target;
};

std::optional<Url> parse_url(const std::string& url) {
  Url u;
  std::string rest;
  if (url.rfind("https://", 0) == 0) {
    u.tls = true;
    rest = url.substr(8);
  } else if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else {
    return std::nullopt;
  }
  auto slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  u.target = slash == std::string::npos ? "/" : rest.substr(slash);
  auto colon = authority.rfind(':');
  if (colon != std::string::npos && authority.find(']') == std::string::npos) {
    u.host = authority.substr(0, colon);
    u.port = authority.substr(colon + 1);
  } else {
    u.host = authority;
    u.port = u.tls ? "443" : "80";
  }
  if (u.host.size() > 2 && u.host.front() == '[') u.host = u.host.substr(1, u.host.size() - 2);
  if (u.host.empty()) return std::nullopt;
  return u;
}

struct FdCloser {
  int fd = -1;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};
struct SslDeleter {
  void operator()(SSL* s) const noexcept { SSL_free(s); }
};
struct SslCtxDeleter {
  void operator()(SSL_CTX* c) const noexcept { SSL_CTX_free(c); }
};

int connect_with_timeout(const Url& u, std::chrono::milliseconds timeout, std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(u.host.c_str(), u.port.c_str(), &hints, &res); rc != 0) {
    error = std::string("resolve: ") + gai_strerror(rc);
    return -1;
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(res, &::freeaddrinfo);
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    timeval tv{};
    tv.tv_sec = timeout.count() / 1000;
    tv.tv_usec = (timeout.count() % 1000) * 1000;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) return fd;
    error = std::string("connect: ") + std::strerror(errno);
    ::close(fd);
  }
  if (error.empty()) error = "connect: no address";
  return -1;
}

class Stream {
 public:
  Stream(int fd, SSL* ssl) : fd_(fd), ssl_(ssl) {}
  bool write_all(std::string_view data) {
    while (!data.empty()) {
      long n = ssl_ ? SSL_write(ssl_, data.data(), static_cast<int>(data.size()))
                    : ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  // >0 bytes, 0 EOF, <0 error/timeout
  long read_some(char* buf, std::size_t len) {
    if (ssl_) return SSL_read(ssl_, buf, static_cast<int>(len));
    return ::recv(fd_, buf, len, 0);
  }

 private:
  int fd_;
  SSL* ssl_;
};

PostResult http_post(bool verify_tls, const std::string& url, const PostHeaders& headers,
                     const std::string& body, std::chrono::milliseconds timeout) {
  auto u = parse_url(url);
  if (!u) return {0, "bad url"};
  std::string error;
  FdCloser fd{connect_with_timeout(*u, timeout, error)};
  if (fd.fd < 0) return {0, error};

  std::unique_ptr<SSL_CTX, SslCtxDeleter> ctx;
  std::unique_ptr<SSL, SslDeleter> ssl;
  if (u->tls) {
    ctx.reset(SSL_CTX_new(TLS_client_method()));
    if (!ctx) return {0, "tls: context"};
    SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
    if (verify_tls) {
      SSL_CTX_set_default_verify_paths(ctx.get());
      SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    } else {
      SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
    }
    ssl.reset(SSL_new(ctx.get()));
    SSL_set_fd(ssl.get(), fd.fd);
    SSL_set_tlsext_host_name(ssl.get(), u->host.c_str());
    if (verify_tls) SSL_set1_host(ssl.get(), u->host.c_str());
    if (SSL_connect(ssl.get()) != 1) {
      ERR_clear_error();
      return {0, "tls: handshake failed"};
    }
  }
  Stream s(fd.fd, ssl.get());
  std::string req = "POST " + u->target + " HTTP/1.1\r\nHost: " + u->host + ":" + u->port +
                    "\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\n";
  for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
  req += "\r\n";
  if (!s.write_all(req) || !s.write_all(body)) return {0, "write failed"};

  // Only the status line matters; read until it is complete, then drain a
  // little so the server is not reset mid-write.
  std::string in;
  char buf[4096];
  while (in.find("\r\n") == std::string::npos) {
    long n = s.read_some(buf, sizeof buf);
    if (n <= 0) {
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return {0, "timeout"};
      return {0, in.empty() ? "connection closed without response" : "truncated response"};
    }
    in.append(buf, static_cast<std::size_t>(n));
    if (in.size() > 64 * 1024) return {0, "status line too long"};
  }
  // "HTTP/1.1 200 OK"
  auto sp = in.find(' ');
  if (sp == std::string::npos || in.size() < sp + 4) return {0, "malformed status line"};
  int status = std::atoi(in.substr(sp + 1, 3).c_str());
  if (status < 100 || status > 599) return {0, "malformed status line"};
  return {status, {}};
}

}  // namespace

Transport make_http_transport(bool verify_tls) {
  return [verify_tls](const std::string& url, const PostHeaders& headers, const std::string& body,
                      std::chrono::milliseconds timeout) {
    return http_post(verify_tls, url, headers, body, timeout);
  };
}

}  // namespace kpay::sim
