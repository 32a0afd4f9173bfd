#include "kpay/core/admin_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <thread>

#include "kpay/core/json_writer.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace kpay::core {

struct AdminServer::Impl {
  Impl(Registry& r, std::function<Readiness()> ready) : registry(r), readiness(std::move(ready)) {}
  Registry& registry;
  std::function<Readiness()> readiness;
  asio::io_context ioc{1};
  std::unique_ptr<tcp::acceptor> acceptor;
  std::thread thread;

  http::response<http::string_body> handle(const http::request<http::string_body>& req) {
    http::response<http::string_body> res;
    res.version(req.version());
    res.keep_alive(req.keep_alive());
    std::string_view target(req.target().data(), req.target().size());
    if (auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
    if (req.method() != http::verb::get) {
      res.result(http::status::method_not_allowed);
      res.set(http::field::allow, "GET");
      res.set(http::field::content_type, "application/json");
      res.body() = R"({"error":"method_not_allowed"})";
    } else if (target == "/metrics") {
      res.result(http::status::ok);
      res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      res.body() = registry.render();
    } else if (target == "/healthz") {
      res.result(http::status::ok);
      res.set(http::field::content_type, "application/json");
      res.body() = R"({"status":"ok"})";
    } else if (target == "/readyz") {
      Readiness r = readiness ? readiness() : Readiness{};
      res.result(r.ready ? http::status::ok : http::status::service_unavailable);
      res.set(http::field::content_type, "application/json");
      JsonWriter w;
      w.begin_object().field("ready", r.ready);
      if (!r.reason.empty()) w.field("reason", r.reason);
      w.end_object();
      res.body() = w.take();
    } else {
      res.result(http::status::not_found);
      res.set(http::field::content_type, "application/json");
      res.body() = R"({"error":"not_found"})";
    }
    res.prepare_payload();
    return res;
  }

  asio::awaitable<void> session(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    try {
      for (;;) {
        stream.expires_after(std::chrono::seconds(30));
        http::request_parser<http::string_body> parser;
        parser.body_limit(64 * 1024);
        co_await http::async_read(stream, buffer, parser, asio::use_awaitable);
        auto res = handle(parser.get());
        bool keep = res.keep_alive();
        co_await http::async_write(stream, res, asio::use_awaitable);
        if (!keep) break;
      }
    } catch (const std::exception&) {
      // Client went away or sent garbage: nothing to report on an admin port.
    }
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] =
          co_await acceptor->async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec == asio::error::operation_aborted) co_return;
      if (ec) continue;
      asio::co_spawn(ioc, session(std::move(socket)), asio::detached);
    }
  }
};

AdminServer::AdminServer(Registry& registry, std::function<Readiness()> readiness)
    : impl_(std::make_unique<Impl>(registry, std::move(readiness))) {}

AdminServer::~AdminServer() { stop(); }

std::uint16_t AdminServer::start(const std::string& host, std::uint16_t port) {
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) throw std::runtime_error("admin listener: bad address '" + host + "'");
  impl_->acceptor = std::make_unique<tcp::acceptor>(impl_->ioc);
  tcp::endpoint ep(addr, port);
  impl_->acceptor->open(ep.protocol());
  impl_->acceptor->set_option(asio::socket_base::reuse_address(true));
  impl_->acceptor->bind(ep, ec);
  if (ec) {
    throw std::runtime_error("admin listener: cannot bind " + host + ":" + std::to_string(port) +
                             ": " + ec.message());
  }
  impl_->acceptor->listen();
  auto bound = impl_->acceptor->local_endpoint().port();
  asio::co_spawn(impl_->ioc, impl_->accept_loop(), asio::detached);
  impl_->thread = std::thread([this] { impl_->ioc.run(); });
  return bound;
}

void AdminServer::stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  impl_->ioc.stop();
  impl_->thread.join();
}

}  // namespace kpay::core
