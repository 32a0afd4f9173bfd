// The Asio types every part of the listener shares. Every I/O object and
// coroutine is bound to its io_context's own executor type: the polymorphic
// any_io_executor was copied, destroyed and queried on every operation;
// dropping it saved 6% of the receiver's CPU per request (docs/PERFORMANCE.md).
// Internal to the receiver; not installed.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <chrono>

namespace kpay::receiver {

namespace asio = boost::asio;
namespace beast = boost::beast;

using Executor = asio::io_context::executor_type;
template <class T>
using Task = asio::awaitable<T, Executor>;
using Socket = asio::basic_stream_socket<asio::ip::tcp, Executor>;
using Acceptor = asio::basic_socket_acceptor<asio::ip::tcp, Executor>;
using Timer = asio::basic_waitable_timer<std::chrono::steady_clock,
                                         asio::wait_traits<std::chrono::steady_clock>, Executor>;
using TcpStream = beast::basic_stream<asio::ip::tcp, Executor>;

inline constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable_t<Executor>{});

}  // namespace kpay::receiver
