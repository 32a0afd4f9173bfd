#include "kpay/sim/server.hpp"

#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <memory>
#include <thread>
#include <vector>

#include "kpay/core/log.hpp"
#include "kpay/core/secret_files.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace kpay::sim {

namespace {

ApiRequest to_api_request(const http::request<http::string_body>& req) {
  ApiRequest r;
  r.method = std::string(req.method_string());
  r.target = std::string(req.target());
  for (const auto& f : req) {
    std::string name(f.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    r.headers[name] = std::string(f.value());
  }
  r.body = req.body();
  return r;
}

http::response<http::string_body> to_http(const ApiResponse& a, unsigned version, bool keep_alive) {
  http::response<http::string_body> res{static_cast<http::status>(a.status), version};
  res.set(http::field::server, "klarna-sim");
  for (const auto& [k, v] : a.headers) res.set(k, v);
  res.body() = a.body;
  res.keep_alive(keep_alive);
  res.prepare_payload();
  return res;
}

// The client certificate of an mTLS connection, when one was presented and verified.
struct PeerCertificate {
  bool verified = false;
  std::string subject;  // RFC 2253
};

std::string subject_of(X509* cert) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!bio) return {};
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  auto n = BIO_get_mem_data(bio.get(), &data);
  return n > 0 ? std::string(data, static_cast<std::size_t>(n)) : std::string();
}

PeerCertificate peer_certificate(SSL* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) return {};
  return {true, subject_of(cert)};
}

const char* fault_name(FaultKind k) {
  switch (k) {
    case FaultKind::rate_limit:
      return "429";
    case FaultKind::server_error:
      return "5xx";
    case FaultKind::timeout:
      return "timeout";
    case FaultKind::drop:
      return "drop";
    case FaultKind::drop_after:
      return "drop-after";
    case FaultKind::close:
      return "close";
    default:
      return "";
  }
}

// mTLS: the handshake fails unless the client presents a certificate that
// verifies against `ca_file`; its subjects are offered as acceptable CAs.
void require_client_certificates(ssl::context& ctx, const std::string& ca_file) {
  boost::system::error_code ec;
  ctx.load_verify_file(ca_file, ec);
  if (ec) throw std::runtime_error("sim.tls_client_ca: " + ec.message());
  if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(ca_file.c_str())) {
    SSL_CTX_set_client_CA_list(ctx.native_handle(), names);
  }
  ctx.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
}

}  // namespace

struct SimServer::Impl {
  Impl(ServerOptions o, SimApi& a, FaultPlan& f) : opt(std::move(o)), api(a), faults(f) {}
  ServerOptions opt;
  SimApi& api;
  FaultPlan& faults;
  asio::io_context ioc;
  ssl::context tls_ctx{ssl::context::tls_server};
  std::unique_ptr<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;
  core::Logger log{"sim"};

  // What to do with one request. `close` = drop the connection without
  // answering; `close_after` = answer (kept alive), then close it.
  struct Outcome {
    std::optional<ApiResponse> response;
    bool close = false;
    bool close_after = false;
  };

  asio::awaitable<Outcome> serve(const http::request<http::string_body>& req,
                                 const PeerCertificate& peer) {
    ApiRequest areq = to_api_request(req);
    areq.mtls_verified = peer.verified;
    areq.client_certificate_subject = peer.subject;
    auto route = SimApi::route_name(areq.method, areq.target);
    FaultDecision fault;
    if (route != "sim.control") fault = faults.decide(route);
    auto executor = co_await asio::this_coro::executor;
    if (fault.added_latency_ms > 0) {
      asio::steady_timer t(executor, std::chrono::milliseconds(fault.added_latency_ms));
      co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    switch (fault.kind) {
      case FaultKind::rate_limit: {
        auto res = klarna_error(429, "ACCESS_ERROR", "RATE_LIMITED", "Rate limit exceeded");
        res.headers.emplace_back("Content-Type", "application/json");
        res.headers.emplace_back("X-Ratelimit-Limit",
                                 std::to_string(fault.rate ? fault.rate->limit : 100));
        res.headers.emplace_back("X-Ratelimit-Remaining", "0");
        res.headers.emplace_back("X-Ratelimit-Reset", std::to_string(fault.param));
        res.headers.emplace_back("Retry-After", std::to_string(fault.param));
        api.note_fault(areq, fault_name(fault.kind), 429);
        co_return Outcome{res, false};
      }
      case FaultKind::server_error: {
        auto res = klarna_error(static_cast<int>(fault.param), "TECHNICAL_ERROR", "INTERNAL_ERROR",
                                "Injected technical error");
        res.headers.emplace_back("Content-Type", "application/json");
        api.note_fault(areq, fault_name(fault.kind), static_cast<int>(fault.param));
        co_return Outcome{res, false};
      }
      case FaultKind::timeout: {
        asio::steady_timer t(executor, std::chrono::milliseconds(fault.param));
        co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
        auto res = klarna_error(500, "TECHNICAL_ERROR", "TIMEOUT", "The request timed out");
        res.headers.emplace_back("Content-Type", "application/json");
        api.note_fault(areq, fault_name(fault.kind), 500);
        co_return Outcome{res, false};
      }
      case FaultKind::drop:
        api.note_fault(areq, fault_name(fault.kind), 0);
        co_return Outcome{std::nullopt, true};
      case FaultKind::drop_after:
        (void)api.handle(areq);  // executed and remembered under its key, then the answer is lost
        co_return Outcome{std::nullopt, true};
      default:
        break;
    }
    ApiResponse res = api.handle(areq);
    if (fault.rate) {
      res.headers.emplace_back("X-Ratelimit-Limit", std::to_string(fault.rate->limit));
      res.headers.emplace_back("X-Ratelimit-Remaining", std::to_string(fault.rate->remaining));
      res.headers.emplace_back("X-Ratelimit-Reset", std::to_string(fault.rate->reset_s));
    }
    co_return Outcome{std::move(res), false, fault.kind == FaultKind::close};
  }

  template <class Stream>
  asio::awaitable<void> session_loop(Stream& stream, beast::flat_buffer& buffer,
                                     const PeerCertificate& peer) {
    for (;;) {
      beast::get_lowest_layer(stream).expires_after(std::chrono::milliseconds(opt.read_timeout_ms));
      // The header first, then the body under the route's limit: an evidence
      // upload may be larger than sim.body_limit. (Beast checks a
      // Content-Length against the limit when the header completes.)
      http::request_parser<http::string_body> parser;
      parser.body_limit(std::max(opt.body_limit, kAttachmentBodyLimit));
      auto [ec, n] = co_await http::async_read_header(stream, buffer, parser,
                                                      asio::as_tuple(asio::use_awaitable));
      if (!ec) {
        const auto& head = parser.get();
        const auto limit = api.body_limit(std::string_view(head.method_string()),
                                          std::string_view(head.target()), opt.body_limit);
        parser.body_limit(limit);
        if (parser.content_length() && *parser.content_length() > limit) {
          ec = http::error::body_limit;
        } else {
          std::tie(ec, n) = co_await http::async_read(stream, buffer, parser,
                                                      asio::as_tuple(asio::use_awaitable));
        }
      }
      if (ec == http::error::end_of_stream || ec == asio::error::eof ||
          ec == ssl::error::stream_truncated)
        co_return;
      if (ec == http::error::body_limit) {
        auto res = to_http(klarna_error(413, "INPUT_ERROR", "PAYLOAD_TOO_LARGE", "Body too large"),
                           11, false);
        co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
        co_return;
      }
      if (ec) co_return;  // timeout, reset, garbage: nothing to answer
      beast::get_lowest_layer(stream).expires_never();
      const auto& req = parser.get();
      Outcome out = co_await serve(req, peer);
      if (out.close) co_return;
      if (peer.verified) {
        out.response->headers.emplace_back("Klarna-Mtls-Verification-Status", "VERIFIED");
      }
      bool keep = req.keep_alive();
      auto res = to_http(*out.response, req.version(), keep);
      beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(30));
      auto [wec, wn] = co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
      // `close` fault: the answer said keep-alive, yet the connection ends now.
      if (wec || !keep || out.close_after) co_return;
    }
  }

  asio::awaitable<void> session(tcp::socket socket) {
    beast::flat_buffer buffer;
    try {
      if (opt.tls) {
        beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), tls_ctx);
        beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(10));
        auto [hec] = co_await stream.async_handshake(ssl::stream_base::server,
                                                     asio::as_tuple(asio::use_awaitable));
        if (hec) co_return;  // includes a missing or unverifiable client certificate (mTLS)
        // A named local: GCC 12 mishandles temporaries bound to coroutine parameters.
        const PeerCertificate peer = peer_certificate(stream.native_handle());
        co_await session_loop(stream, buffer, peer);
        beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(5));
        co_await stream.async_shutdown(asio::as_tuple(asio::use_awaitable));
      } else {
        beast::tcp_stream stream(std::move(socket));
        const PeerCertificate none;
        co_await session_loop(stream, buffer, none);
        beast::error_code ec;
        stream.socket().shutdown(tcp::socket::shutdown_send, ec);
      }
    } catch (const std::exception& e) {
      // No exception escapes into the I/O loop; one bad connection is one log line.
      log.debug("connection ended with an exception", {{"error", e.what()}});
    }
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      // One strand per connection: with sim.threads > 1, a stream's timeout
      // handler and its operations must never run at once (Beast's
      // basic_stream state is not thread-safe; a Debug build asserted on it).
      const asio::any_io_executor strand = asio::make_strand(ioc);
      auto [ec, socket] =
          co_await acceptor->async_accept(strand, asio::as_tuple(asio::use_awaitable));
      if (ec == asio::error::operation_aborted) co_return;
      if (ec) continue;
      asio::co_spawn(strand, session(std::move(socket)), asio::detached);
    }
  }
};

SimServer::SimServer(ServerOptions options, SimApi& api, FaultPlan& faults)
    : impl_(std::make_unique<Impl>(std::move(options), api, faults)) {}

SimServer::~SimServer() {
  stop();
}

std::uint16_t SimServer::start() {
  auto& im = *impl_;
  if (im.opt.tls) {
    im.tls_ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                           ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                           ssl::context::no_tlsv1_1);
    SSL_CTX_set_min_proto_version(im.tls_ctx.native_handle(), TLS1_2_VERSION);
    SSL_CTX_set_cipher_list(im.tls_ctx.native_handle(), core::kTls12Ciphers);  // like Klarna's
    boost::system::error_code ec;
    im.tls_ctx.use_certificate_chain_file(im.opt.tls_certificate, ec);
    if (ec) throw std::runtime_error("sim.tls_certificate: " + ec.message());
    im.tls_ctx.use_private_key_file(im.opt.tls_private_key, ssl::context::pem, ec);
    if (ec) throw std::runtime_error("sim.tls_private_key: " + ec.message());
    if (!im.opt.tls_client_ca.empty())
      require_client_certificates(im.tls_ctx, im.opt.tls_client_ca);
  }
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(im.opt.listen_address, ec);
  if (ec)
    throw std::runtime_error("sim.listen_address: bad address '" + im.opt.listen_address + "'");
  im.acceptor = std::make_unique<tcp::acceptor>(im.ioc);
  tcp::endpoint ep(addr, im.opt.port);
  im.acceptor->open(ep.protocol());
  im.acceptor->set_option(asio::socket_base::reuse_address(true));
  im.acceptor->bind(ep, ec);
  if (ec) {
    throw std::runtime_error("cannot bind " + im.opt.listen_address + ":" +
                             std::to_string(im.opt.port) + ": " + ec.message());
  }
  im.acceptor->listen();
  auto bound = im.acceptor->local_endpoint().port();
  asio::co_spawn(im.ioc, im.accept_loop(), asio::detached);
  for (int i = 0; i < std::max(1, im.opt.threads); ++i)
    im.threads.emplace_back([&im] { im.ioc.run(); });
  return bound;
}

void SimServer::stop() {
  if (!impl_) return;
  impl_->ioc.stop();
  for (auto& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
  impl_->threads.clear();
}

}  // namespace kpay::sim
