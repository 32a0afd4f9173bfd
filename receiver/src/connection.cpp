#include "connection.hpp"

#include <array>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <optional>
#include <string>

#include "http_request.hpp"
#include "kpay/core/traceparent.hpp"
#include "kpay/klarna/kafka_contract.hpp"

namespace kpay::receiver {

namespace {

namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using RequestParser = http_request::Parser;
namespace contract = klarna::contract;

std::string_view sv(beast::string_view s) {
  return {s.data(), s.size()};
}

// Bodies are buffered before the signature can be checked, so the bytes all
// connections may hold at once are capped.
class BodyReservation {
 public:
  BodyReservation(std::atomic<std::size_t>& pool, std::size_t limit, std::size_t bytes)
      : pool_(pool), n_(bytes) {
    std::size_t cur = pool_.load();
    do {
      if (cur + n_ > limit) return;
    } while (!pool_.compare_exchange_weak(cur, cur + n_));
    granted_ = true;
  }
  ~BodyReservation() {
    if (granted_) pool_.fetch_sub(n_);
  }
  BodyReservation(const BodyReservation&) = delete;
  BodyReservation& operator=(const BodyReservation&) = delete;
  bool granted() const { return granted_; }

 private:
  std::atomic<std::size_t>& pool_;
  std::size_t n_;
  bool granted_ = false;
};

// A gauge counting the scopes alive (requests in flight, open connections).
struct InFlight {
  explicit InFlight(core::Gauge& g) : gauge(g) { gauge.inc(); }
  ~InFlight() { gauge.dec(); }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;
  core::Gauge& gauge;
};

// What handle() decided to answer; serve() adds the connection handling.
struct Reply {
  Answer answer;
  std::optional<std::chrono::seconds> retry_after;
};

Task<bool> cancelled(asio::cancellation_type type) {
  asio::cancellation_state state = co_await asio::this_coro::cancellation_state;
  co_return (state.cancelled() & type) != asio::cancellation_type::none;
}

class Connection {
 public:
  Connection(const ConnectionServices& s, DeliveryMailbox& mailbox, std::string remote)
      : s_(s), mailbox_(mailbox), remote_(std::move(remote)) {}

  template <class Stream>
  Task<void> serve(Stream& stream);

 private:
  template <class Stream>
  Task<bool> wait_for_request(Stream& stream, beast::flat_buffer& buffer);
  template <class Stream>
  Task<boost::system::error_code> parse_until(Stream& stream, beast::flat_buffer& buffer,
                                              RequestParser& parser, http_request::Stage stage);
  template <class Stream>
  Task<void> answer_and_close(Stream& stream, Answer a,
                              std::optional<std::chrono::seconds> retry_after = {});
  template <class Stream>
  Task<void> answer_read_error(Stream& stream, const boost::system::error_code& ec);
  Task<Reply> handle(http_request::Request& req);
  Reply kafka_failed(std::string_view failure, const PublishPlan& plan,
                     std::string_view traceparent);
  void stored(const PublishPlan& plan, const IncomingRequest& in, const DeliveryReport& r,
              std::string_view traceparent);

  const ConnectionServices& s_;
  DeliveryMailbox& mailbox_;
  std::string remote_;
};

// Waits, with the idle timeout, until the next request's first bytes are
// buffered. False: the client left, the idle timeout, or shutdown. Only this
// wait lets a `total` cancellation through to the read.
template <class Stream>
Task<bool> Connection::wait_for_request(Stream& stream, beast::flat_buffer& buffer) {
  if (buffer.size() > 0) co_return true;  // pipelined
  if (s_.stopping.load() || co_await cancelled(asio::cancellation_type::all)) co_return false;
  auto& lowest = beast::get_lowest_layer(stream);
  lowest.expires_after(s_.listener.idle_timeout);
  co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
  // The coroutine's slot cancels the socket itself. Handed to the read, the
  // slot would not reach the socket under Asio's TLS stream (Boost 1.81: a
  // TLS connection waiting here ignored both total and terminal), so the
  // read runs without one.
  asio::cancellation_state state = co_await asio::this_coro::cancellation_state;
  auto slot = state.slot();
  if (slot.is_connected()) slot.assign([&lowest](asio::cancellation_type) { lowest.cancel(); });
  auto [ec, n] = co_await stream.async_read_some(
      buffer.prepare(16 * 1024),
      asio::bind_cancellation_slot(asio::cancellation_slot(), kUseTuple));
  if (slot.is_connected()) slot.clear();
  co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation(),
                                                     asio::enable_terminal_cancellation());
  if (ec) co_return false;
  buffer.commit(n);
  co_return true;
}

template <class Stream>
Task<void> Connection::serve(Stream& stream) {
  auto& lowest = beast::get_lowest_layer(stream);
  beast::flat_buffer buffer;
  while (co_await wait_for_request(stream, buffer)) {
    RequestParser parser;
    http_request::apply_limits(parser, s_.listener.max_header_bytes, s_.listener.max_body_bytes);
    lowest.expires_after(s_.listener.read_timeout);  // header and body together
    auto hec = co_await parse_until(stream, buffer, parser, http_request::Stage::header);
    if (hec) co_return co_await answer_read_error(stream, hec);
    if (auto why = http_request::framing_error(parser); !why.empty()) {
      s_.handler.count_rejection("malformed_request");
      s_.metrics.rejected.inc();
      co_return co_await answer_and_close(stream,
                                          s_.handler.error_answer(400, "malformed_request", why));
    }
    // Past the body budget, 503 sends Klarna back later instead of letting
    // memory run out.
    BodyReservation reservation(s_.body_bytes_reserved, s_.listener.max_body_bytes_in_flight,
                                parser.content_length().value_or(s_.listener.max_body_bytes));
    if (!reservation.granted()) {
      s_.handler.count_rejection("overloaded");
      s_.metrics.unavailable.inc();
      auto a = s_.handler.error_answer(503, "overloaded",
                                       "too many request bodies in flight; retry later");
      co_return co_await answer_and_close(stream, std::move(a), s_.kafka.retry_after);
    }
    if (parser.get().version() == 11 &&
        beast::iequals(sv(parser.get()[http::field::expect]), "100-continue")) {
      http::response<http::empty_body> cont{http::status::continue_, 11};
      auto [cec, cn] = co_await http::async_write(stream, cont, kUseTuple);
      if (cec) co_return;
    }
    parser.eager(true);
    auto bec = co_await parse_until(stream, buffer, parser, http_request::Stage::complete);
    if (bec) co_return co_await answer_read_error(stream, bec);

    auto& req = parser.get();
    Reply reply;
    {
      InFlight counted(s_.metrics.in_flight);
      reply = co_await handle(req);
    }
    if (co_await cancelled(asio::cancellation_type::terminal)) co_return;
    // After a refusal the client is either misconfigured or hostile: free
    // the connection rather than keep it alive.
    bool keep_alive = req.keep_alive() && !s_.stopping.load() && reply.answer.status < 400;
    const std::string bytes =
        serialize_response(reply.answer, req.version(), keep_alive, reply.retry_after);
    lowest.expires_after(s_.listener.read_timeout);
    auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(bytes), kUseTuple);
    if (wec || !keep_alive) co_return;
  }
}

// Feeds the parser what is already buffered and reads only while it needs
// more. Beast's async_read_header/async_read would complete through the
// scheduler even when the whole request is already buffered (the usual case:
// a webhook arrives in one segment); this saves two round trips a request.
// Errors are Beast's own, as its read operations report them.
template <class Stream>
Task<boost::system::error_code> Connection::parse_until(Stream& stream, beast::flat_buffer& buffer,
                                                        RequestParser& parser,
                                                        http_request::Stage stage) {
  for (;;) {
    const auto fed = http_request::feed(parser, buffer, stage);
    if (fed.error) co_return fed.error;
    if (fed.reached) co_return boost::system::error_code{};
    auto [ec, n] = co_await stream.async_read_some(buffer.prepare(16 * 1024), kUseTuple);
    if (ec == asio::error::eof) {
      co_return parser.got_some() || buffer.size() > 0 ? http::error::partial_message
                                                       : http::error::end_of_stream;
    }
    if (ec) co_return ec;
    buffer.commit(n);
  }
}

// Writes `a` with "Connection: close"; the caller then ends the connection.
template <class Stream>
Task<void> Connection::answer_and_close(Stream& stream, Answer a,
                                        std::optional<std::chrono::seconds> retry_after) {
  s_.log.warn("request refused", {{"remote", remote_}, {"reason", a.reason}, {"status", a.status}});
  const std::string bytes = serialize_response(a, 11, false, retry_after);
  auto& lowest = beast::get_lowest_layer(stream);
  lowest.expires_after(std::chrono::seconds(5));
  auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(bytes), kUseTuple);
  if (wec) co_return;
  // Lingering close: the client may still be sending (e.g. the rest of a
  // body we refused). Closing with unread input would make the kernel send
  // a reset that can destroy the answer before the client reads it, so stop
  // sending, then drain for a bounded time and volume.
  boost::system::error_code ec;
  lowest.socket().shutdown(tcp::socket::shutdown_send, ec);
  lowest.expires_after(std::chrono::seconds(2));
  std::array<char, 16384> sink;
  for (std::size_t drained = 0; drained < 4 * s_.listener.max_body_bytes;) {
    auto [rec, n] = co_await lowest.async_read_some(asio::buffer(sink), kUseTuple);
    if (rec) break;
    drained += n;
  }
}

template <class Stream>
Task<void> Connection::answer_read_error(Stream& stream, const boost::system::error_code& ec) {
  using Kind = http_request::ReadFailure::Kind;
  const auto failure = http_request::classify_read_error(ec, s_.listener.max_body_bytes);
  if (failure.kind == Kind::client_left) co_return;  // nothing to answer
  s_.handler.count_rejection(failure.reason);
  s_.metrics.rejected.inc();
  if (failure.kind == Kind::timeout) {
    s_.log.warn("request not received in time; connection closed",
                {{"remote", remote_}, {"reason", failure.reason}});
    co_return;  // a slow client is cut, not answered
  }
  co_await answer_and_close(
      stream, s_.handler.error_answer(failure.status, failure.reason, failure.message));
}

// The value is the webhook byte for byte; what the receiver knows of it goes
// in headers (schemas/KAFKA-CONTRACT.md), the trace context among them.
// The value (the body) is set by publish_and_wait, which keeps it.
OutgoingMessage kafka_message(const PublishPlan& plan, const IncomingRequest& in,
                              std::string_view traceparent) {
  OutgoingMessage msg{*plan.topic, plan.key, {}, false, {}, 0};
  if (!plan.dead_letter) {
    msg.add_header(contract::header::event_id, plan.event_id);
    msg.add_header(contract::header::event_type, plan.event_type);
    msg.add_header(contract::header::event_version, plan.event_version);
  } else {
    msg.add_header(contract::header::dead_letter_reason, plan.dead_letter_reason);
  }
  msg.add_header(contract::header::signing_key_id, in.signing_key_id);
  msg.add_header(contract::header::signature, in.signature);
  msg.add_header(contract::header::received_at, plan.received_at);
  msg.add_header(contract::header::content_type,
                 in.content_type.empty() ? std::string_view("application/json") : in.content_type);
  msg.add_header(contract::header::traceparent, traceparent);
  return msg;
}

Task<Reply> Connection::handle(http_request::Request& req) {
  const IncomingRequest in = http_request::incoming(req);
  auto keyring = s_.keys.current();
  Decision d = s_.handler.decide(in, *keyring);
  if (d.reject) {
    s_.metrics.rejected.inc();
    // The key id is attacker-controlled here: log a bounded prefix.
    s_.log.warn("webhook rejected", {{"remote", remote_},
                                     {"reason", d.reject->reason},
                                     {"status", d.reject->status},
                                     {"signing_key_id", in.signing_key_id.substr(0, 256)}});
    co_return Reply{std::move(*d.reject), std::nullopt};
  }
  auto& plan = d.publish;
  // Our span of this delivery: a child of Klarna's trace when its request
  // carried a valid traceparent, else a new trace.
  const std::string traceparent = core::child_traceparent(in.traceparent);
  const auto started = std::chrono::steady_clock::now();
  // The body moves to the wait, which keeps it for librdkafka until Kafka's
  // report (byte for byte, not copied); `in.body` is not used past here.
  const Published published =
      co_await publish_and_wait(s_.publisher, mailbox_, kafka_message(plan, in, traceparent),
                                std::move(req.body()), s_.kafka.publish_timeout);
  if (!published.failure.empty()) co_return kafka_failed(published.failure, plan, traceparent);
  s_.metrics.publish_latency.observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  stored(plan, in, published.report, traceparent);
  co_return Reply{std::move(plan.on_success), std::nullopt};
}

Reply Connection::kafka_failed(std::string_view failure, const PublishPlan& plan,
                               std::string_view traceparent) {
  s_.metrics.unavailable.inc();
  s_.log.warn("Kafka did not confirm the event; answering 503 so Klarna retries",
              {{"event_id", plan.event_id},
               {"topic", *plan.topic},
               {"error", failure},
               {"trace_id", core::trace_id_of(traceparent)}});
  auto a = s_.handler.error_answer(503, "kafka_unavailable",
                                   "the event could not be stored; retry later");
  return Reply{std::move(a), s_.kafka.retry_after};
}

void Connection::stored(const PublishPlan& plan, const IncomingRequest& in, const DeliveryReport& r,
                        std::string_view traceparent) {
  (plan.dead_letter ? s_.metrics.dead_lettered : s_.metrics.accepted).inc();
  if (plan.dead_letter) {
    s_.log.warn("signed webhook with an unusable body kept on the dead-letter topic",
                {{"reason", plan.dead_letter_reason},
                 {"topic", *plan.topic},
                 {"signing_key_id", in.signing_key_id},
                 {"partition", r.partition},
                 {"offset", r.offset},
                 {"trace_id", core::trace_id_of(traceparent)}});
  } else if (s_.log.enabled(core::LogLevel::info)) {
    s_.log.info("event stored", {{"event_id", plan.event_id},
                                 {"event_type", plan.event_type},
                                 {"topic", *plan.topic},
                                 {"partition", r.partition},
                                 {"offset", r.offset},
                                 {"trace_id", core::trace_id_of(traceparent)}});
  }
}

}  // namespace

Task<void> run_connection(Socket socket, const ConnectionServices& services,
                          DeliveryMailbox& mailbox) {
  // Total cancellation is recorded but reaches only the wait for the next
  // request (Connection::wait_for_request); terminal reaches every operation.
  // Cancelled operations return errors rather than throw, so the connection
  // can still close its stream.
  co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation(),
                                                     asio::enable_terminal_cancellation());
  co_await asio::this_coro::throw_if_cancelled(false);
  InFlight open(services.metrics.open_connections);
  boost::system::error_code ec;
  socket.set_option(tcp::no_delay(true), ec);
  std::string remote = socket.remote_endpoint(ec).address().to_string();
  Connection connection(services, mailbox, remote);
  TcpStream tcp_stream(std::move(socket));
  if (services.tls == nullptr) {
    co_await connection.serve(tcp_stream);
    tcp_stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    co_return;
  }
  beast::ssl_stream<TcpStream> stream(std::move(tcp_stream), *services.tls);
  beast::get_lowest_layer(stream).expires_after(services.listener.read_timeout);
  auto [hec] = co_await stream.async_handshake(ssl::stream_base::server, kUseTuple);
  if (hec) {
    services.metrics.tls_failures.inc();
    services.log.debug("TLS handshake failed", {{"remote", remote}, {"error", hec.message()}});
    co_return;
  }
  co_await connection.serve(stream);
  if (co_await cancelled(asio::cancellation_type::terminal)) co_return;
  beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
  auto [sec] = co_await stream.async_shutdown(kUseTuple);
  (void)sec;  // stream_truncated / timeouts here are the client's business
}

}  // namespace kpay::receiver
