// The HTTPS listener. One coroutine per connection, written as the protocol
// reads: [TLS handshake] → loop { wait for a request → read it (deadline, size
// limits) → decide → publish and await Kafka's report → answer } → close.
// The connection handling lives here; the socket-free part of reading a request
// (parser limits, framing rules, header extraction) is in http_request.cpp.
#include <sys/resource.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "kpay/core/admin_server.hpp"
#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"
#include "kpay/core/process.hpp"
#include "kpay/core/secret_files.hpp"
#include "kpay/receiver/key_ring_source.hpp"
#include "kpay/receiver/publisher.hpp"
#include "kpay/receiver/receiver.hpp"
#include "kpay/receiver/webhook_handler.hpp"
#include "http_request.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace kpay::receiver {

namespace {

// Every I/O object and coroutine is bound to its io_context's own executor
// type. The polymorphic any_io_executor was copied, destroyed and queried on
// every operation; dropping it saved 6% of the receiver's CPU per request
// (docs/PERFORMANCE.md).
using Executor = asio::io_context::executor_type;
template <class T>
using Task = asio::awaitable<T, Executor>;
using Socket = asio::basic_stream_socket<tcp, Executor>;
using Acceptor = asio::basic_socket_acceptor<tcp, Executor>;
using Timer = asio::basic_waitable_timer<std::chrono::steady_clock,
                                         asio::wait_traits<std::chrono::steady_clock>, Executor>;
using TcpStream = beast::basic_stream<tcp, Executor>;

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable_t<Executor>{});

// What shutdown needs to reach a connection: run on the connection's I/O
// context, it cancels the connection's I/O if it is waiting for a request.
struct ConnectionControl {
  explicit ConnectionControl(Executor e) : executor(std::move(e)) {}
  Executor executor;
  bool idle = true;                 // touched on the connection's context only
  std::function<void()> cancel_io;  // set while the session runs (same)
};

// Kafka's delivery report, handed from the producer's poll thread to the
// connection's I/O context. The timer doubles as the deadline and the wake-up.
struct PendingDelivery {
  explicit PendingDelivery(const Executor& ex) : timer(ex) {}
  Timer timer;
  std::optional<DeliveryReport> report;
};

// Delivery reports reach an I/O context through its mailbox. librdkafka's
// poll thread hands over many reports per round under load; the mailbox posts
// to the context only when it was empty, so one wake-up serves them all
// instead of one cross-thread post (lock, futex) per message.
class DeliveryMailbox {
 public:
  explicit DeliveryMailbox(asio::io_context::executor_type ex) : ex_(ex) {}

  void deliver(std::shared_ptr<PendingDelivery> p, const DeliveryReport& report) {
    bool was_empty;
    {
      std::lock_guard lock(mu_);
      was_empty = incoming_.empty();
      incoming_.push_back({std::move(p), report});
    }
    if (was_empty) asio::post(ex_, [this] { drain(); });
  }

 private:
  struct Item {
    std::shared_ptr<PendingDelivery> pending;
    DeliveryReport report;
  };
  void drain() {  // on the context's thread only
    {
      std::lock_guard lock(mu_);
      draining_.swap(incoming_);
    }
    for (auto& item : draining_) {
      item.pending->report = item.report;
      item.pending->timer.cancel();
    }
    draining_.clear();  // keeps its capacity for the next round
  }

  asio::io_context::executor_type ex_;
  std::mutex mu_;
  std::vector<Item> incoming_;  // guarded by mu_
  std::vector<Item> draining_;  // the context's thread only
};

class WakeOnDelivery final : public DeliveryCallback {
 public:
  WakeOnDelivery(DeliveryMailbox& mailbox, std::shared_ptr<PendingDelivery> p)
      : mailbox_(mailbox), pending_(std::move(p)) {}
  void delivered(const DeliveryReport& report) noexcept override {
    mailbox_.deliver(std::move(pending_), report);
  }

 private:
  DeliveryMailbox& mailbox_;
  std::shared_ptr<PendingDelivery> pending_;
};

int io_thread_count(const ListenerSettings& l) {
  return l.io_threads > 0 ? l.io_threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// One io_context per I/O thread. A connection lives on one of them, so its
// handlers never run concurrently and need no strand: no lock per handler,
// and its delivery reports are batched per context (DeliveryMailbox).
struct IoContext {
  asio::io_context ioc{1};  // concurrency hint: run by exactly one thread
  asio::executor_work_guard<asio::io_context::executor_type> work{ioc.get_executor()};
  DeliveryMailbox mailbox{ioc.get_executor()};
  std::atomic<std::int64_t> heartbeat_ms{0};
};

std::string_view sv(beast::string_view s) {
  return {s.data(), s.size()};
}

}  // namespace

struct Receiver::Impl {
  explicit Impl(Settings s)
      : settings(std::move(s)),
        contexts(make_contexts(io_thread_count(settings.listener))),
        acceptor_ex(contexts.front()->ioc.get_executor()),
        keys(settings.keys_database, settings.keys_reload_interval),
        publisher(settings.kafka, topic_list(settings.topics), registry),
        handler(settings.listener.path, settings.topics, registry),
        admin(registry, [this] { return readiness(); }),
        requests(registry.counter("kpay_receiver_requests_total",
                                  "Webhook requests by outcome (accepted, dead_lettered, "
                                  "rejected, unavailable).",
                                  {"outcome"})),
        publish_latency(registry
                            .histogram("kpay_receiver_publish_latency_seconds",
                                       "Time from publish to Kafka's delivery report.", {},
                                       core::latency_buckets_seconds())
                            .with({})),
        in_flight(
            registry
                .gauge("kpay_receiver_in_flight_requests", "Requests read and not yet answered.")
                .with({})),
        open_connections(
            registry.gauge("kpay_receiver_connections", "Open client connections.").with({})),
        refused_connections(registry
                                .counter("kpay_receiver_connections_refused_total",
                                         "Connections closed at once: max_connections reached.")
                                .with({})),
        tls_failures(registry
                         .counter("kpay_receiver_tls_handshake_failures_total",
                                  "TLS handshakes that failed or timed out.")
                         .with({})) {
    // Series resolved once: the hot path only touches atomics.
    accepted = &requests.with({"accepted"});
    dead_lettered = &requests.with({"dead_lettered"});
    rejected = &requests.with({"rejected"});
    unavailable = &requests.with({"unavailable"});
    registry.gauge_callback(
        "kpay_receiver_signing_keys", "Active signing keys in the key ring.", {}, [this] {
          return std::vector<core::GaugeSample>{{{}, static_cast<double>(keys.current()->size())}};
        });
    registry.gauge_callback(
        "kpay_receiver_kafka_ready", "1 when Kafka answered the last metadata probe.", {},
        [this] {
          return std::vector<core::GaugeSample>{{{}, publisher.ready() ? 1.0 : 0.0}};
        });
    if (settings.listener.tls) setup_tls();
  }

  void setup_tls() {
    tls.emplace(ssl::context::tls_server);
    tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                     ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                     ssl::context::single_dh_use);
    SSL_CTX_set_min_proto_version(tls->native_handle(), TLS1_2_VERSION);
    // Client-initiated TLS 1.2 renegotiation costs us CPU and buys nothing.
    SSL_CTX_set_options(tls->native_handle(), SSL_OP_NO_RENEGOTIATION);
    // TLS 1.2: forward secrecy and AEAD only (no RSA key exchange, no CBC,
    // 3DES, RC4, NULL or export suites). TLS 1.3's suites are all AEAD.
    if (SSL_CTX_set_cipher_list(tls->native_handle(), core::kTls12Ciphers) != 1) {
      throw core::ConfigError("receiver.tls", "OpenSSL offers none of the TLS 1.2 ciphers we allow");
    }
    SSL_CTX_set_options(tls->native_handle(), SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (auto why = core::private_file_problem(settings.listener.tls_private_key); !why.empty()) {
      throw core::ConfigError("receiver.tls_private_key", why);
    }
    boost::system::error_code ec;
    tls->use_certificate_chain_file(settings.listener.tls_certificate, ec);
    if (ec) {
      throw core::ConfigError(
          "receiver.tls_certificate",
          "cannot load '" + settings.listener.tls_certificate + "': " + ec.message());
    }
    tls->use_private_key_file(settings.listener.tls_private_key, ssl::context::pem, ec);
    if (ec) {
      // Never echo key material; the path and OpenSSL's reason are enough.
      throw core::ConfigError(
          "receiver.tls_private_key",
          "cannot load '" + settings.listener.tls_private_key + "': " + ec.message());
    }
  }

  static std::vector<std::string> topic_list(const klarna::Topics& t) {
    return {t.payment_requests, t.payment_transactions, t.disputes, t.settlements, t.accounts,
            t.unrouted,         t.dead_letter};
  }

  core::Readiness readiness() {
    if (stopping.load()) return {false, "shutting down"};
    if (accept_failed.load()) return {false, "not accepting connections"};
    if (keys.current()->size() == 0) {
      return {false, "no active signing keys: every webhook would be refused (klarnactl keys add)"};
    }
    if (!publisher.ready()) return {false, publisher.not_ready_reason()};
    return {};
  }

  // --- accepting ------------------------------------------------------------

  Task<void> accept_loop() {
    for (;;) {
      // Round robin over the I/O contexts.
      auto& home = *contexts[next_context++ % contexts.size()];
      auto [ec, socket] = co_await acceptor->async_accept(home.ioc.get_executor(), kUseTuple);
      if (ec == asio::error::operation_aborted || stopping.load()) co_return;
      if (ec) {
        // EMFILE/ENFILE/ENOBUFS: retrying at once would spin; back off.
        log.warn("accept failed", {{"error", ec.message()}});
        Timer backoff(acceptor_ex, std::chrono::milliseconds(100));
        co_await backoff.async_wait(kUseTuple);
        continue;
      }
      if (connection_count.load() >= settings.listener.max_connections) {
        refused_connections.inc();
        boost::system::error_code ignored;
        socket.close(ignored);
        continue;
      }
      auto executor = socket.get_executor();
      auto ctl = std::make_shared<ConnectionControl>(executor);
      connection_started(ctl);
      asio::co_spawn(executor, connection(std::move(socket), ctl),
                     [this, ctl](std::exception_ptr e) {
                       if (e) log.error("connection ended by an unexpected exception");
                       connection_finished(ctl);
                     });
    }
  }

  // One per context: the watchdog is fed only while every context runs.
  Task<void> heartbeat(IoContext& c) {
    Timer timer(c.ioc.get_executor());
    while (!stopping.load()) {
      c.heartbeat_ms.store(now_ms());
      timer.expires_after(std::chrono::milliseconds(500));
      co_await timer.async_wait(kUseTuple);
    }
  }

  static std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

  bool io_alive() const {
    const auto now = now_ms();
    for (const auto& c : contexts) {
      if (now - c->heartbeat_ms.load() >= 5000) return false;
    }
    return true;
  }

  static std::vector<std::unique_ptr<IoContext>> make_contexts(int n) {
    std::vector<std::unique_ptr<IoContext>> out;
    for (int i = 0; i < n; ++i) out.push_back(std::make_unique<IoContext>());
    return out;
  }

  // The mailbox of the context running the calling coroutine.
  DeliveryMailbox& mailbox_of(const Executor& ex) {
    auto& ctx = ex.context();
    for (auto& c : contexts) {
      if (&c->ioc == &ctx) return c->mailbox;
    }
    throw std::logic_error("coroutine outside the receiver's I/O contexts");
  }

  void connection_started(const std::shared_ptr<ConnectionControl>& ctl) {
    std::lock_guard lock(conn_mu);
    connections.insert(ctl);
    connection_count.fetch_add(1);
    open_connections.inc();
  }

  void connection_finished(const std::shared_ptr<ConnectionControl>& ctl) {
    {
      std::lock_guard lock(conn_mu);
      connections.erase(ctl);
      connection_count.fetch_sub(1);
      open_connections.dec();
    }
    conn_cv.notify_all();
  }

  Task<void> connection(Socket socket, std::shared_ptr<ConnectionControl> ctl) {
    boost::system::error_code ec;
    socket.set_option(tcp::no_delay(true), ec);
    std::string remote = socket.remote_endpoint(ec).address().to_string();
    TcpStream tcp_stream(std::move(socket));
    if (tls) {
      beast::ssl_stream<TcpStream> stream(std::move(tcp_stream), *tls);
      beast::get_lowest_layer(stream).expires_after(settings.listener.read_timeout);
      auto [hec] = co_await stream.async_handshake(ssl::stream_base::server, kUseTuple);
      if (hec) {
        tls_failures.inc();
        log.debug("TLS handshake failed", {{"remote", remote}, {"error", hec.message()}});
        co_return;
      }
      co_await serve(stream, *ctl, remote);
      beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
      auto [sec] = co_await stream.async_shutdown(kUseTuple);
      (void)sec;  // stream_truncated / timeouts here are the client's business
    } else {
      co_await serve(tcp_stream, *ctl, remote);
      tcp_stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    }
  }

  // --- one connection's requests -----------------------------------------------

  template <class Stream>
  Task<void> serve(Stream& stream, ConnectionControl& ctl, const std::string& remote) {
    auto& lowest = beast::get_lowest_layer(stream);
    ctl.cancel_io = [&lowest] { lowest.cancel(); };
    struct ClearOnExit {
      ConnectionControl& c;
      ~ClearOnExit() { c.cancel_io = nullptr; }
    } clear{ctl};

    beast::flat_buffer buffer;
    for (;;) {
      // Wait for the next request with the idle timeout; shutdown cancels
      // this wait (and only this one: requests already read get answered).
      if (buffer.size() == 0) {
        ctl.idle = true;
        if (stopping.load()) co_return;
        lowest.expires_after(settings.listener.idle_timeout);
        auto [ec, n] = co_await stream.async_read_some(buffer.prepare(16 * 1024), kUseTuple);
        if (ec) co_return;  // closed by the client, idle timeout or shutdown
        buffer.commit(n);
      }
      ctl.idle = false;

      RequestParser parser;
      http_request::apply_limits(parser, settings.listener.max_header_bytes,
                                 settings.listener.max_body_bytes);
      lowest.expires_after(settings.listener.read_timeout);  // header and body together
      auto hec = co_await parse_until(stream, buffer, parser, http_request::Stage::header);
      if (hec) {
        co_await answer_read_error(stream, hec, remote);
        co_return;
      }
      if (auto why = http_request::framing_error(parser); !why.empty()) {
        handler.count_rejection("malformed_request");
        rejected->inc();
        co_await answer_and_close(stream, handler.error_answer(400, "malformed_request", why),
                                  remote);
        co_return;
      }
      // Bodies are buffered before the signature can be checked, so the
      // bytes all connections may hold at once are capped; past the cap,
      // 503 sends Klarna back later instead of letting memory run out.
      BodyReservation reservation(
          *this, parser.content_length().value_or(settings.listener.max_body_bytes));
      if (!reservation.granted()) {
        handler.count_rejection("overloaded");
        unavailable->inc();
        auto a = handler.error_answer(503, "overloaded",
                                      "too many request bodies in flight; retry later");
        co_await answer_and_close(stream, std::move(a), remote, settings.kafka.retry_after);
        co_return;
      }
      if (parser.get().version() == 11 &&
          beast::iequals(sv(parser.get()[http::field::expect]), "100-continue")) {
        http::response<http::empty_body> cont{http::status::continue_, 11};
        auto [cec, cn] = co_await http::async_write(stream, cont, kUseTuple);
        if (cec) co_return;
      }
      parser.eager(true);
      auto bec = co_await parse_until(stream, buffer, parser, http_request::Stage::complete);
      if (bec) {
        co_await answer_read_error(stream, bec, remote);
        co_return;
      }

      auto& req = parser.get();
      Reply reply;
      {
        InFlight counted(in_flight);
        reply = co_await handle(req, remote);
      }
      // After a refusal the client is either misconfigured or hostile:
      // free the connection rather than keep it alive.
      bool keep_alive = req.keep_alive() && !stopping.load() && reply.answer.status < 400;
      const std::string bytes =
          serialize_response(reply.answer, req.version(), keep_alive, reply.retry_after);
      lowest.expires_after(settings.listener.read_timeout);
      auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(bytes), kUseTuple);
      if (wec || !keep_alive) co_return;
    }
  }

  using RequestParser = http_request::Parser;

  // Feeds the parser what is already buffered and reads only while it needs
  // more. Beast's async_read_header/async_read would complete through the
  // scheduler even when the whole request is already buffered (the usual case:
  // a webhook arrives in one segment); this saves two round trips a request.
  // Errors are Beast's own, as its read operations report them.
  template <class Stream>
  Task<boost::system::error_code> parse_until(Stream& stream, beast::flat_buffer& buffer,
                                              RequestParser& parser, http_request::Stage stage) {
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

  struct BodyReservation {
    BodyReservation(Impl& impl, std::size_t bytes) : pool(impl.body_bytes_reserved), n(bytes) {
      std::size_t cur = pool.load();
      do {
        if (cur + n > impl.settings.listener.max_body_bytes_in_flight) return;
      } while (!pool.compare_exchange_weak(cur, cur + n));
      ok = true;
    }
    ~BodyReservation() {
      if (ok) pool.fetch_sub(n);
    }
    BodyReservation(const BodyReservation&) = delete;
    BodyReservation& operator=(const BodyReservation&) = delete;
    bool granted() const { return ok; }
    std::atomic<std::size_t>& pool;
    std::size_t n;
    bool ok = false;
  };

  struct InFlight {
    explicit InFlight(core::Gauge& g) : gauge(g) { gauge.inc(); }
    ~InFlight() { gauge.dec(); }
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;
    core::Gauge& gauge;
  };

  // Writes `a` with "Connection: close"; the caller then ends the connection.
  template <class Stream>
  Task<void> answer_and_close(Stream& stream, Answer a, const std::string& remote,
                              std::optional<std::chrono::seconds> retry_after = {}) {
    log.warn("request refused", {{"remote", remote}, {"reason", a.reason}, {"status", a.status}});
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
    for (std::size_t drained = 0; drained < 4 * settings.listener.max_body_bytes;) {
      auto [rec, n] = co_await lowest.async_read_some(asio::buffer(sink), kUseTuple);
      if (rec) break;
      drained += n;
    }
  }

  template <class Stream>
  Task<void> answer_read_error(Stream& stream, const boost::system::error_code& ec,
                               const std::string& remote) {
    using Kind = http_request::ReadFailure::Kind;
    const auto failure = http_request::classify_read_error(ec, settings.listener.max_body_bytes);
    if (failure.kind == Kind::client_left) co_return;  // nothing to answer
    handler.count_rejection(failure.reason);
    rejected->inc();
    if (failure.kind == Kind::timeout) {
      log.warn("request not received in time; connection closed",
               {{"remote", remote}, {"reason", failure.reason}});
      co_return;  // a slow client is cut, not answered
    }
    co_await answer_and_close(
        stream, handler.error_answer(failure.status, failure.reason, failure.message), remote);
  }

  // What handle() decided to answer; serve() adds the connection handling.
  struct Reply {
    Answer answer;
    std::optional<std::chrono::seconds> retry_after;
  };

  Task<Reply> handle(const http::request<http::string_body>& req, const std::string& remote) {
    const IncomingRequest in = http_request::incoming(req);

    auto keyring = keys.current();
    Decision d = handler.decide(in, *keyring);
    if (d.reject) {
      rejected->inc();
      // The key id is attacker-controlled here: log a bounded prefix.
      log.warn("webhook rejected", {{"remote", remote},
                                    {"reason", d.reject->reason},
                                    {"status", d.reject->status},
                                    {"signing_key_id", in.signing_key_id.substr(0, 256)}});
      co_return Reply{std::move(*d.reject), std::nullopt};
    }

    auto& plan = d.publish;
    OutgoingMessage msg{*plan.topic, plan.key, in.body, {}};
    msg.headers.reserve(9);
    if (!plan.dead_letter) {
      msg.headers.emplace_back("klarna-event-id", plan.event_id);
      msg.headers.emplace_back("klarna-event-type", plan.event_type);
      msg.headers.emplace_back("klarna-event-version", plan.event_version);
    } else {
      msg.headers.emplace_back("dead-letter-reason", plan.dead_letter_reason);
    }
    msg.headers.emplace_back("klarna-signing-key-id", in.signing_key_id);
    msg.headers.emplace_back("klarna-signature", in.signature);
    msg.headers.emplace_back("received-at", plan.received_at);
    msg.headers.emplace_back("content-type", in.content_type.empty()
                                                 ? std::string_view("application/json")
                                                 : in.content_type);

    auto executor = co_await asio::this_coro::executor;
    auto pending = std::make_shared<PendingDelivery>(executor);
    pending->timer.expires_after(settings.kafka.publish_timeout);
    auto started = std::chrono::steady_clock::now();
    auto err =
        publisher.publish(msg, std::make_unique<WakeOnDelivery>(mailbox_of(executor), pending));
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      co_await pending->timer.async_wait(kUseTuple);
    }
    std::string_view failure;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      failure = rd_kafka_err2name(err);
    } else if (!pending->report) {
      failure = "publish_timeout";
    } else if (pending->report->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      failure = rd_kafka_err2name(pending->report->err);
    }
    if (!failure.empty()) {
      unavailable->inc();
      log.warn("Kafka did not confirm the event; answering 503 so Klarna retries",
               {{"event_id", plan.event_id}, {"topic", *plan.topic}, {"error", failure}});
      auto a = handler.error_answer(503, "kafka_unavailable",
                                    "the event could not be stored; retry later");
      co_return Reply{std::move(a), settings.kafka.retry_after};
    }
    publish_latency.observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    (plan.dead_letter ? dead_lettered : accepted)->inc();
    if (plan.dead_letter) {
      log.warn("signed webhook with an unusable body kept on the dead-letter topic",
               {{"reason", plan.dead_letter_reason},
                {"topic", *plan.topic},
                {"signing_key_id", in.signing_key_id},
                {"partition", pending->report->partition},
                {"offset", pending->report->offset}});
    } else if (log.enabled(core::LogLevel::info)) {
      log.info("event stored", {{"event_id", plan.event_id},
                                {"event_type", plan.event_type},
                                {"topic", *plan.topic},
                                {"partition", pending->report->partition},
                                {"offset", pending->report->offset}});
    }
    co_return Reply{std::move(plan.on_success), std::nullopt};
  }

  // --- lifecycle --------------------------------------------------------------

  // Every connection holds a descriptor. A max_connections above the
  // open-file limit would let a flood exhaust it: accept() then fails with
  // EMFILE and legitimate clients wait in the backlog instead of being
  // counted and refused. The soft limit is raised to the hard one, and
  // max_connections lowered to what fits, leaving room for Kafka's sockets,
  // the admin endpoint and SQLite.
  void fit_connections_to_open_file_limit() {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_cur < rl.rlim_max) {
      rlimit raised = rl;
      raised.rlim_cur = rl.rlim_max;
      if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
    }
    constexpr rlim_t kReserved = 128;
    auto& max = settings.listener.max_connections;
    if (rl.rlim_cur == RLIM_INFINITY || max + kReserved <= rl.rlim_cur) return;
    const std::size_t fitted =
        rl.rlim_cur > 2 * kReserved ? rl.rlim_cur - kReserved : rl.rlim_cur / 2;
    log.warn("receiver.max_connections does not fit in the open-file limit; lowered",
             {{"configured", max}, {"open_file_limit", static_cast<std::uint64_t>(rl.rlim_cur)},
              {"max_connections", fitted}});
    max = fitted;
  }

  void start() {
    fit_connections_to_open_file_limit();
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(settings.listener.address, ec);
    if (ec) throw core::ConfigError("receiver.listen_address", "not an IP address");
    tcp::endpoint ep(addr, settings.listener.port);
    acceptor.emplace(acceptor_ex);
    acceptor->open(ep.protocol());
    acceptor->set_option(asio::socket_base::reuse_address(true));
    acceptor->bind(ep, ec);
    if (ec) {
      throw std::runtime_error("cannot listen on " + settings.listener.address + ":" +
                               std::to_string(settings.listener.port) + ": " + ec.message());
    }
    acceptor->listen(asio::socket_base::max_listen_connections);
    bound_port = acceptor->local_endpoint().port();
    bound_admin_port = admin.start(settings.admin_address, settings.admin_port);
    keys.start_watching();
    asio::co_spawn(acceptor_ex, accept_loop(), [this](std::exception_ptr e) {
      if (e && !stopping.load()) {
        accept_failed.store(true);
        log.error("the accept loop stopped unexpectedly; reporting not ready");
      }
    });
    for (auto& c : contexts) {
      asio::co_spawn(c->ioc, heartbeat(*c), asio::detached);
      threads.emplace_back([&c] { c->ioc.run(); });
    }
    write_port_file();
    log.info("listening", {{"address", settings.listener.address},
                           {"port", static_cast<unsigned>(bound_port)},
                           {"tls", settings.listener.tls},
                           {"path", settings.listener.path},
                           {"admin_port", static_cast<unsigned>(bound_admin_port)},
                           {"signing_keys", keys.current()->size()},
                           {"kafka", settings.kafka.bootstrap_servers}});
  }

  void write_port_file() {
    if (settings.listener.port_file.empty()) return;
    core::JsonWriter w;
    w.begin_object()
        .field("port", static_cast<unsigned>(bound_port))
        .field("admin_port", static_cast<unsigned>(bound_admin_port))
        .end_object();
    auto tmp = settings.listener.port_file + ".tmp";
    std::ofstream(tmp) << w.str() << "\n";
    std::filesystem::rename(tmp, settings.listener.port_file);
  }

  bool shutdown() {
    if (stopped) return true;
    stopped = true;
    auto deadline = std::chrono::steady_clock::now() + settings.shutdown_grace;
    stopping.store(true);
    core::notify_stopping();
    log.info("shutting down: no new connections, answering requests in flight");
    asio::post(acceptor_ex, [this] {
      boost::system::error_code ec;
      if (acceptor) acceptor->close(ec);
    });
    {
      std::lock_guard lock(conn_mu);
      for (const auto& c : connections) {
        asio::post(c->executor, [c] {
          if (c->idle && c->cancel_io) c->cancel_io();
        });
      }
    }
    bool drained;
    {
      std::unique_lock lock(conn_mu);
      drained = conn_cv.wait_until(lock, deadline, [&] { return connections.empty(); });
    }
    if (!drained) {
      log.warn("grace period over with connections still open; closing them",
               {{"connections", connection_count.load()}});
    }
    for (auto& c : contexts) c->ioc.stop();
    for (auto& t : threads) t.join();
    threads.clear();
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    int outstanding = publisher.flush(std::max(left, std::chrono::milliseconds(1000)));
    if (outstanding > 0) {
      log.error("Kafka messages still unconfirmed at exit (their requests got 503)",
                {{"messages", outstanding}});
    }
    admin.stop();
    log.info("stopped", {{"drained", drained}, {"unconfirmed_messages", outstanding}});
    return drained && outstanding == 0;
  }

  Settings settings;
  core::Registry registry;
  core::Logger log{"receiver"};
  // Declared before the publisher so they are destroyed after it: the
  // publisher's last delivery reports go to their mailboxes.
  std::vector<std::unique_ptr<IoContext>> contexts;
  asio::io_context::executor_type acceptor_ex;  // context 0
  std::size_t next_context = 0;                 // accept loop only
  KeyRingSource keys;
  KafkaPublisher publisher;
  WebhookHandler handler;
  core::AdminServer admin;
  std::optional<ssl::context> tls;
  std::optional<Acceptor> acceptor;
  std::vector<std::thread> threads;
  std::uint16_t bound_port = 0;
  std::uint16_t bound_admin_port = 0;
  std::atomic<bool> stopping{false};
  std::atomic<bool> accept_failed{false};
  bool stopped = false;

  std::mutex conn_mu;
  std::condition_variable conn_cv;
  std::unordered_set<std::shared_ptr<ConnectionControl>> connections;
  std::atomic<std::size_t> connection_count{0};
  std::atomic<std::size_t> body_bytes_reserved{0};

  core::CounterFamily& requests;
  core::Counter* accepted = nullptr;
  core::Counter* dead_lettered = nullptr;
  core::Counter* rejected = nullptr;
  core::Counter* unavailable = nullptr;
  core::Histogram& publish_latency;
  core::Gauge& in_flight;
  core::Gauge& open_connections;
  core::Counter& refused_connections;
  core::Counter& tls_failures;
};

Receiver::Receiver(Settings settings) : impl_(std::make_unique<Impl>(std::move(settings))) {}
Receiver::~Receiver() {
  if (impl_) impl_->shutdown();
}
void Receiver::start() {
  impl_->start();
}
std::uint16_t Receiver::port() const {
  return impl_->bound_port;
}
std::uint16_t Receiver::admin_port() const {
  return impl_->bound_admin_port;
}
void Receiver::reload_keys() {
  impl_->keys.reload();
}
bool Receiver::shutdown() {
  return impl_->shutdown();
}
core::Registry& Receiver::metrics() {
  return impl_->registry;
}

int Receiver::run_until_signalled() {
  core::notify_ready();
  auto watchdog = core::watchdog_interval();
  auto tick = std::chrono::milliseconds(1000);
  if (watchdog) {
    tick = std::min(tick, std::chrono::duration_cast<std::chrono::milliseconds>(*watchdog));
  }
  for (;;) {
    auto sig = core::wait_for_signal(tick);
    if (watchdog && impl_->io_alive()) core::notify_watchdog();
    if (impl_->publisher.fatal()) {
      // librdkafka cannot recover from a fatal idempotent-producer error:
      // exit non-zero so systemd restarts us with a fresh producer.
      impl_->log.error("fatal Kafka producer error: restarting the process");
      shutdown();
      return 1;
    }
    if (!sig) continue;
    if (*sig == SIGHUP) {
      core::notify_reloading();
      impl_->log.info("SIGHUP: reloading signing keys");
      reload_keys();
      core::notify_ready();
      continue;
    }
    impl_->log.info("termination signal received", {{"signal", *sig}});
    return shutdown() ? 0 : 1;
  }
}

}  // namespace kpay::receiver
