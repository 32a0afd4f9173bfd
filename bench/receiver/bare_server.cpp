// The baseline for the receiver benchmark: a Beast server with the same shape
// (coroutine per connection, TLS optional, keep-alive, same parser limits)
// that answers 200 to every request without verifying or storing anything.
// --answer-after-us N holds each answer N µs, as the receiver holds it until
// Kafka acknowledges (a diagnostic; scripts/bench-receiver.sh does not use it).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <fstream>
#include <iostream>
#include <memory>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
// --answer-after-us: each answer waits this long after its request was read,
// as the receiver's waits for Kafka's acknowledgement (0: answer at once).
std::chrono::microseconds answer_after{0};

template <class Stream>
asio::awaitable<void> serve(Stream& stream) {
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(1024 * 1024);
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(30));
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, kTuple);
    if (ec) co_return;
    http::response<http::string_body> res{http::status::ok, parser.get().version()};
    res.set(http::field::content_type, "application/json");
    res.body() = R"({"status":"accepted"})";
    res.keep_alive(parser.get().keep_alive());
    res.prepare_payload();
    if (answer_after.count() > 0) {
      asio::steady_timer wait(co_await asio::this_coro::executor, answer_after);
      co_await wait.async_wait(kTuple);
    }
    auto [wec, wn] = co_await http::async_write(stream, res, kTuple);
    if (wec || !res.keep_alive()) co_return;
  }
}

asio::awaitable<void> session(tcp::socket socket, ssl::context* ctx) {
  socket.set_option(tcp::no_delay(true));
  beast::tcp_stream tcp_stream(std::move(socket));
  if (ctx != nullptr) {
    beast::ssl_stream<beast::tcp_stream> s(std::move(tcp_stream), *ctx);
    auto [ec] = co_await s.async_handshake(ssl::stream_base::server, kTuple);
    if (ec) co_return;
    co_await serve(s);
  } else {
    co_await serve(tcp_stream);
  }
}

int main(int argc, char** argv) {
  CLI::App app{"Bare Beast server answering 200 (benchmark baseline)"};
  std::string cert, key, port_file;
  int threads = 2;
  app.add_option("--tls-certificate", cert);
  app.add_option("--tls-private-key", key);
  app.add_option("--threads", threads);
  long answer_after_us = 0;
  app.add_option("--answer-after-us", answer_after_us,
                 "hold each answer this long (the receiver waits for Kafka)");
  app.add_option("--port-file", port_file)->required();
  CLI11_PARSE(app, argc, argv);
  answer_after = std::chrono::microseconds(answer_after_us);

  // The receiver's shape: one io_context per thread, connections dealt round
  // robin, no strands (receiver/src/receiver.cpp, IoContext).
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  for (int i = 0; i < std::max(1, threads); ++i)
    contexts.push_back(std::make_unique<asio::io_context>(1));
  auto& ioc = *contexts.front();
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work;
  for (auto& c : contexts) work.emplace_back(c->get_executor());
  std::optional<ssl::context> ctx;
  if (!cert.empty()) {
    ctx.emplace(ssl::context::tls_server);
    ctx->use_certificate_chain_file(cert);
    ctx->use_private_key_file(key, ssl::context::pem);
  }
  tcp::acceptor acceptor(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  std::ofstream(port_file) << acceptor.local_endpoint().port() << "\n";
  std::size_t next = 0;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        for (;;) {
          auto& home = *contexts[next++ % contexts.size()];
          auto [ec, s] = co_await acceptor.async_accept(home.get_executor(), kTuple);
          if (ec) co_return;
          auto ex = s.get_executor();
          asio::co_spawn(ex, session(std::move(s), ctx ? &*ctx : nullptr), asio::detached);
        }
      },
      asio::detached);
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](auto, auto) {
    for (auto& c : contexts) c->stop();
  });
  std::vector<std::thread> pool;
  for (std::size_t i = 1; i < contexts.size(); ++i)
    pool.emplace_back([&, i] { contexts[i]->run(); });
  ioc.run();
  for (auto& t : pool) t.join();
}
