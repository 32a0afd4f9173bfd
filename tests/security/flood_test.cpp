// Connection floods and slow clients against the running receiver, with short
// configured limits: idle connections beyond max_connections, a slowloris
// (headers one byte at a time), a slow body, a client that never reads. The
// receiver keeps answering a signed webhook within a bound, cuts the slow ones
// after its timeouts, counts them, and its fds and memory come back down.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "security_support.hpp"

using namespace kpay::test;
using namespace kpay::test::security;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kMaxConnections = 40;
constexpr auto kReadTimeout = 1000ms;
constexpr auto kIdleTimeout = 1500ms;

ReceiverProcess::Options limits() {
  return {{"receiver.max_connections=" + std::to_string(kMaxConnections),
           "receiver.read_timeout_ms=" + std::to_string(kReadTimeout.count()),
           "receiver.idle_timeout_ms=" + std::to_string(kIdleTimeout.count()),
           "receiver.io_threads=2", "log.level=warn"},
          std::nullopt,
          true,
          {}};
}

// A plain TCP connection that sends nothing (the flood), closed on destruction.
struct RawSocket {
  explicit RawSocket(std::uint16_t port) : fd(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~RawSocket() { ::close(fd); }
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;
  // True once the server closed (EOF or reset) within `timeout`.
  bool closed_by_server(std::chrono::milliseconds timeout) const {
    timeval tv{static_cast<time_t>(timeout.count() / 1000),
               static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char c;
    const auto n = ::recv(fd, &c, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }
  int fd;
  bool connected = false;
};

// How long a signed webhook takes to be answered 200, retrying refused
// connections; nullopt when not within `bound`.
std::optional<std::chrono::milliseconds> time_to_200(const ReceiverProcess& r,
                                                     const std::string& event_id,
                                                     std::chrono::milliseconds bound) {
  const auto start = Clock::now();
  while (Clock::now() - start < bound) {
    if (r.post_signed(event_id, 2s) == 200) {
      return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    }
    std::this_thread::sleep_for(20ms);
  }
  return std::nullopt;
}

// Waits until the receiver's fd count is back near `baseline`.
void expect_fds_back(const ReceiverProcess& r, int baseline) {
  EXPECT_TRUE(wait_until([&] { return fd_count(r.pid()) <= baseline + 4; }, 10s))
      << "fds: " << fd_count(r.pid()) << ", baseline " << baseline;
}

}  // namespace

TEST(ReceiverFlood, IdleConnectionsBeyondTheLimitAreRefusedThenCutAndServiceResumes) {
  ReceiverProcess r(limits());
  ASSERT_NE(r.port(), 0);
  ASSERT_EQ(r.post_signed("flood-warmup"), 200);
  const int fds_before = fd_count(r.pid());
  const long rss_before = rss_kib(r.pid());

  std::vector<std::unique_ptr<RawSocket>> flood;
  for (int i = 0; i < kMaxConnections + 30; ++i) {
    flood.push_back(std::make_unique<RawSocket>(r.port()));
    ASSERT_TRUE(flood.back()->connected);
  }
  EXPECT_TRUE(wait_until(
      [&] { return r.metric("receiver_connections_refused_total") >= 30; }, 5s))
      << r.metrics();
  EXPECT_LE(r.metric("receiver_connections"), kMaxConnections);
  EXPECT_LE(fd_count(r.pid()), fds_before + kMaxConnections + 4);

  // The legitimate client: refused while the slots are held, served once the
  // handshake deadline (read_timeout_ms) has cut the idle ones.
  auto took = time_to_200(r, "flood-legit", kReadTimeout + 4s);
  ASSERT_TRUE(took) << "no 200 within the bound during the flood\n" << r.log();
  std::cout << "signed webhook answered 200 after " << took->count() << " ms of flood\n";
  for (auto& s : flood) EXPECT_TRUE(s->closed_by_server(kReadTimeout + 3s));
  EXPECT_GE(r.metric("receiver_tls_handshake_failures_total"), kMaxConnections - 1);
  flood.clear();
  expect_fds_back(r, fds_before);
  EXPECT_LT(rss_kib(r.pid()) - rss_before, 64 * 1024) << "RSS grew by more than 64 MiB";
}

TEST(ReceiverFlood, SlowlorisAndSlowBodyAreCutAfterReadTimeoutWhileOthersAreServed) {
  ReceiverProcess r(limits());
  ASSERT_NE(r.port(), 0);
  const int fds_before = fd_count(r.pid());
  const double timeouts_before = r.metric("receiver_rejections_total{reason=\"read_timeout\"}");
  const std::string body = webhook("slow-1");
  const std::string request = "POST /webhooks/klarna HTTP/1.1\r\nHost: x\r\n" +
                              signed_headers(body) +
                              "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";

  auto trickle = [&](std::string bytes, std::size_t head_now) {
    HttpConnection c(r.port(), true, 5s);
    c.send_raw(bytes.substr(0, head_now));
    const auto start = Clock::now();
    for (std::size_t i = head_now; i < bytes.size() && Clock::now() - start < 5s; ++i) {
      try {
        c.send_raw(bytes.substr(i, 1));
      } catch (const std::exception&) {
        break;  // the server cut us
      }
      std::this_thread::sleep_for(100ms);
    }
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  };
  std::chrono::milliseconds slowloris{}, slow_body{};
  std::thread a([&] { slowloris = trickle(request + body, 0); });
  std::thread b([&] { slow_body = trickle(request + body, request.size()); });
  // Meanwhile a normal client is served at once, several times.
  for (int i = 0; i < 5; ++i) {
    const auto start = Clock::now();
    EXPECT_EQ(r.post_signed("slow-legit-" + std::to_string(i)), 200);
    EXPECT_LT(Clock::now() - start, 3s) << "a normal client waited behind the slow ones";
    std::this_thread::sleep_for(100ms);
  }
  a.join();
  b.join();
  std::cout << "slowloris cut after " << slowloris.count() << " ms, slow body after "
            << slow_body.count() << " ms\n";
  // Cut at read_timeout (the send that notices may come one trickle later).
  EXPECT_GE(slowloris, kReadTimeout - 200ms);
  EXPECT_LT(slowloris, kReadTimeout + 3s);
  EXPECT_GE(slow_body, kReadTimeout - 200ms);
  EXPECT_LT(slow_body, kReadTimeout + 3s);
  EXPECT_TRUE(wait_until(
      [&] {
        return r.metric("receiver_rejections_total{reason=\"read_timeout\"}") >=
               timeouts_before + 2;
      },
      5s))
      << r.metrics();
  expect_fds_back(r, fds_before);
}

TEST(ReceiverFlood, AClientThatNeverReadsIsClosedAfterIdleTimeout) {
  ReceiverProcess r(limits());
  ASSERT_NE(r.port(), 0);
  const int fds_before = fd_count(r.pid());
  const std::string body = webhook("never-reads-1");
  std::string pipelined;
  for (int i = 0; i < 50; ++i) {
    pipelined += "POST /webhooks/klarna HTTP/1.1\r\nHost: x\r\n" + signed_headers(body) +
                 "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  }
  HttpConnection c(r.port(), true, 10s);
  const auto start = Clock::now();
  c.send_raw(pipelined);  // 50 requests, and not one answer read
  // Served (the answers wait in the socket buffers), then idle: closed after
  // idle_timeout_ms, never held for ever.
  EXPECT_TRUE(wait_until([&] { return r.metric("receiver_requests_total{outcome=\"accepted\"}") >= 50; }, 10s));
  EXPECT_TRUE(wait_until([&] { return r.metric("receiver_connections") == 0; }, kIdleTimeout + 5s))
      << r.metrics();
  const auto held = Clock::now() - start;
  EXPECT_LT(held, kIdleTimeout + 5s);
  EXPECT_EQ(r.post_signed("never-reads-legit"), 200);
  expect_fds_back(r, fds_before);
}

TEST(ReceiverFlood, MaxConnectionsIsFittedToTheOpenFileLimit) {
  // 10000 connections (the default) cannot fit in 256 descriptors: the
  // receiver lowers its limit at start, so a flood is refused and counted
  // instead of exhausting the descriptors (accept failing with EMFILE).
  ReceiverProcess r({{"receiver.read_timeout_ms=" + std::to_string(kReadTimeout.count()),
                      "receiver.io_threads=2"},
                     std::nullopt,
                     true,
                     "ulimit -n 256 &&"});
  ASSERT_NE(r.port(), 0);
  EXPECT_NE(r.log().find("does not fit in the open-file limit"), std::string::npos) << r.log();
  std::vector<std::unique_ptr<RawSocket>> flood;
  for (int i = 0; i < 200; ++i) flood.push_back(std::make_unique<RawSocket>(r.port()));
  EXPECT_TRUE(wait_until([&] { return r.metric("receiver_connections_refused_total") >= 72; }, 5s))
      << r.metrics();
  EXPECT_LE(fd_count(r.pid()), 256);
  auto took = time_to_200(r, "fd-limit-legit", kReadTimeout + 4s);
  EXPECT_TRUE(took) << r.log();
  EXPECT_EQ(r.log().find("accept failed"), std::string::npos) << "descriptors ran out:\n" << r.log();
}
