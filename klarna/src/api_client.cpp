// The Klarna API client's I/O: a bounded pool of connection workers taking
// calls from one FIFO queue.
//
// A worker is one coroutine on its own strand owning at most one kept-alive
// TLS connection: take the next call → wait for the rate limiter → write →
// read → answer → take the next call. send() queues a call and wakes an idle
// worker, or starts a new one while fewer than max_connections exist; a worker
// without work ends after idle_timeout. The shared state (queue, idle list,
// counters) is behind one mutex that is never held across a suspension; a
// worker's connection and timers are touched only on its strand.
#include "kpay/klarna/api_client.hpp"

#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <future>
#include <list>
#include <thread>

#include "api_client_internal.hpp"
#include "api_client_response.hpp"
#include "kpay/core/log.hpp"
#include "kpay/core/traceparent.hpp"

namespace kpay::klarna {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using detail::Clock;
using detail::TransportFailure;

namespace {

// After the abort, cancelled calls answer within milliseconds; one that does
// not (a resolve blocked in getaddrinfo, which nothing can cancel) is abandoned.
constexpr auto kShutdownGrace = std::chrono::seconds(1);
constexpr auto kDefaultRateLimitHold = std::chrono::seconds(1);  // a 429 without a reset header
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

using Strand = asio::strand<asio::io_context::executor_type>;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;
using Request = http::request<http::string_body>;

Answer refused(std::string why, Disposition d) {
  Answer a;
  a.transport_error = std::move(why);
  a.disposition = d;
  return a;
}

Answer transport_answer(TransportFailure f) {
  return refused(std::move(f.text), f.disposition);
}

// An idle HTTP/1.1 connection has nothing to read. A pending EOF or bytes (a
// TLS close_notify), buffered by OpenSSL or waiting in the socket, mean the
// server closed it: reconnect before sending rather than after a failed attempt.
bool still_open(beast::ssl_stream<beast::tcp_stream>& stream) {
  if (SSL_has_pending(stream.native_handle()) == 1) return false;
  char byte;
  auto fd = beast::get_lowest_layer(stream).socket().native_handle();
  ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

const std::string& log_path(const Call& c) {
  return c.path_for_logs.empty() ? c.path : c.path_for_logs;
}

// One call from send() to its answer.
struct Pending {
  Pending(asio::io_context& ioc, Call c, std::function<void(Answer)> d, Clock::time_point now)
      : call(std::move(c)), done(std::move(d)), accepted(now), queue_timer(ioc) {}
  Call call;
  std::function<void(Answer)> done;
  Clock::time_point accepted, deadline;
  // Answers "timeout" when no connection took the call before its deadline.
  asio::steady_timer queue_timer;
  // Guarded by Impl::mu.
  bool queued = false;
  std::list<std::shared_ptr<Pending>>::iterator position;
};

// A pool slot: the coroutine driving it and its connection. Members above
// `idle` are used only on `strand`.
struct Worker : std::enable_shared_from_this<Worker> {
  explicit Worker(asio::io_context& ioc)
      : strand(asio::make_strand(ioc)), idle_timer(strand), wait_timer(strand), resolver(strand) {}
  Strand strand;
  asio::steady_timer idle_timer;  // waiting for work; cancelled to wake the worker
  asio::steady_timer wait_timer;  // the rate limiter; the resolve deadline
  tcp::resolver resolver;
  std::optional<TlsStream> stream;  // engaged while connected
  // The credentials the connection was opened with (keeps their TLS context
  // alive); a call finding newer ones opens a new connection.
  std::shared_ptr<const detail::Credentials> stream_credentials;
  beast::flat_buffer buffer;
  bool counted_open = false;  // the handshake completed: counted in open_connections
  bool aborting = false;      // shutdown cancelled this worker
  // Guarded by Impl::mu.
  bool idle = false;
  Clock::time_point idle_since;
};

}  // namespace

struct ApiClient::Impl {
  explicit Impl(ClientSettings s);

  void start();
  void submit(Call call, std::function<void(Answer)> done);
  bool stop();  // true: every call was answered (see ApiClient::shutdown)
  Stats snapshot() const;

  asio::awaitable<void> worker_loop(std::shared_ptr<Worker> w);
  asio::awaitable<std::shared_ptr<Pending>> next_call(std::shared_ptr<Worker> w);
  asio::awaitable<void> serve(std::shared_ptr<Worker> w, std::shared_ptr<Pending> p);
  asio::awaitable<std::optional<Answer>> wait_for_start(Worker& w, const Pending& p);
  asio::awaitable<Answer> exchange(Worker& w, const Pending& p);
  asio::awaitable<std::optional<TransportFailure>> connect(Worker& w, Clock::time_point deadline);

  std::optional<TransportFailure> prepare_tls(TlsStream& stream) const;
  Request build_request(const Call& c, const std::string& authorization) const;
  std::shared_ptr<const detail::Credentials> current_credentials() const {
    std::lock_guard lock(credentials_mu);
    return credentials;
  }
  std::shared_ptr<Pending> take_queued(Worker& w);  // with mu held
  void drop_idle(Worker& w);                        // with mu held
  void release(const std::shared_ptr<Worker>& w, const Answer& a, bool on_wire);
  void retire(const std::shared_ptr<Worker>& w);
  void close_connection(Worker& w);
  void on_queue_deadline(const std::shared_ptr<Pending>& p);
  void finish(Pending& p, Answer a);
  void log_call(const Call& c, const Answer& a) const;
  void spawn(std::shared_ptr<Worker> w);
  void run_io();
  void count(std::uint64_t Stats::*counter);

  ClientSettings settings;
  detail::RateLimiter limiter;
  detail::Target target;
  std::string user_agent, metadata;
  core::Logger log{"klarna-client"};
  // Basic credentials and TLS context; replaced whole by reload().
  mutable std::mutex credentials_mu;
  std::shared_ptr<const detail::Credentials> credentials;
  // Declared after everything its handlers use, so it is destroyed first.
  asio::io_context ioc;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::vector<std::thread> threads;

  mutable std::mutex mu;
  std::condition_variable all_retired;
  bool stopping = false;
  bool joined = false;           // stop() has run to its end
  bool calls_abandoned = false;  // … leaving calls whose callbacks never run
  std::list<std::shared_ptr<Pending>> queue;
  std::deque<std::shared_ptr<Worker>> idle;
  std::vector<std::shared_ptr<Worker>> workers;
  std::size_t in_flight = 0;
  Stats counters;  // the cumulative fields, open_connections and peak_in_flight
};

ApiClient::Impl::Impl(ClientSettings s)
    : settings(std::move(s)), limiter(settings.max_requests_per_second) {
  detail::validate_settings(settings);
  target = detail::resolve_target(settings);
  credentials = detail::load_credentials(settings);
  user_agent = settings.user_agent + "/" + settings.version;
  metadata = detail::integration_metadata(settings);
}

void ApiClient::Impl::start() {
  work.emplace(ioc.get_executor());
  for (int i = 0; i < settings.io_threads; ++i) threads.emplace_back([this] { run_io(); });
}

void ApiClient::Impl::run_io() {
  for (;;) {
    try {
      ioc.run();
      return;
    } catch (const std::exception& e) {  // a handler must not take the thread down
      log.error("klarna client I/O handler threw", {{"error", e.what()}});
    }
  }
}

void ApiClient::Impl::count(std::uint64_t Stats::*counter) {
  std::lock_guard lock(mu);
  ++(counters.*counter);
}

void ApiClient::Impl::spawn(std::shared_ptr<Worker> w) {
  auto strand = w->strand;
  asio::co_spawn(strand, worker_loop(std::move(w)), asio::detached);
}

// --- queueing ---------------------------------------------------------------

void ApiClient::Impl::submit(Call call, std::function<void(Answer)> done) {
  auto now = Clock::now();
  std::string why = detail::refuse_reason(call);
  auto timeout = call.timeout.value_or(settings.request_timeout);
  auto p = std::make_shared<Pending>(ioc, std::move(call), std::move(done), now);
  p->deadline = now + timeout;
  std::shared_ptr<Worker> to_wake, to_start;
  // Decided under the lock: once the call is queued, a worker may take it
  // (and clear p->queued) on an I/O thread before this thread looks again.
  bool accepted = false;
  {
    std::lock_guard lock(mu);
    if (!stopping && !why.empty()) {
      // Answered on an I/O thread like every other call; the I/O threads run
      // until this handler did (stop() lets the queue drain).
      asio::post(ioc, [this, p, why = std::move(why)]() mutable {
        finish(*p, refused(std::move(why), Disposition::permanent));
      });
      return;
    }
    if (!stopping) {
      accepted = true;
      p->queued = true;
      p->position = queue.insert(queue.end(), p);
      p->queue_timer.expires_at(p->deadline);
      p->queue_timer.async_wait([this, p](boost::system::error_code ec) {
        if (!ec) on_queue_deadline(p);
      });
      if (!idle.empty()) {
        to_wake = idle.front();
        drop_idle(*to_wake);
      } else if (workers.size() < settings.max_connections) {
        to_start = std::make_shared<Worker>(ioc);
        workers.push_back(to_start);
      }
    }
  }
  if (!accepted) {  // stopped: no I/O thread may be left to answer
    finish(*p, refused("cancelled", Disposition::retryable));
    return;
  }
  if (to_wake) asio::post(to_wake->strand, [to_wake] { to_wake->idle_timer.cancel(); });
  if (to_start) spawn(std::move(to_start));
}

std::shared_ptr<Pending> ApiClient::Impl::take_queued(Worker& w) {
  if (queue.empty()) return nullptr;
  auto p = std::move(queue.front());
  queue.pop_front();
  p->queued = false;
  p->queue_timer.cancel();
  drop_idle(w);
  ++in_flight;
  counters.peak_in_flight = std::max(counters.peak_in_flight, in_flight);
  return p;
}

void ApiClient::Impl::drop_idle(Worker& w) {
  if (!w.idle) return;
  w.idle = false;
  auto it = std::find_if(idle.begin(), idle.end(), [&](const auto& x) { return x.get() == &w; });
  if (it != idle.end()) idle.erase(it);
}

void ApiClient::Impl::on_queue_deadline(const std::shared_ptr<Pending>& p) {
  {
    std::lock_guard lock(mu);
    if (!p->queued) return;  // a worker took it meanwhile
    p->queued = false;
    queue.erase(p->position);
  }
  finish(*p, refused("timeout", Disposition::retryable));
}

// --- workers ----------------------------------------------------------------

asio::awaitable<void> ApiClient::Impl::worker_loop(std::shared_ptr<Worker> w) {
  try {
    while (auto p = co_await next_call(w)) co_await serve(w, std::move(p));
  } catch (const std::exception& e) {
    log.error("klarna client worker failed", {{"error", e.what()}});
  }
  close_connection(*w);
  retire(w);
}

// The next queued call, waiting idle (connection kept) for one. nullptr: end
// the worker (shutdown, idle too long, or nothing to do and no connection).
asio::awaitable<std::shared_ptr<Pending>> ApiClient::Impl::next_call(std::shared_ptr<Worker> w) {
  for (;;) {
    Clock::time_point idle_until;
    {
      std::lock_guard lock(mu);
      if (stopping || w->aborting) co_return nullptr;
      if (auto p = take_queued(*w)) co_return p;
      if (!w->stream) {
        drop_idle(*w);
        co_return nullptr;
      }
      if (!w->idle) {
        w->idle = true;
        w->idle_since = Clock::now();
        idle.push_back(w);
      }
      idle_until = w->idle_since + settings.idle_timeout;
    }
    w->idle_timer.expires_at(idle_until);
    co_await w->idle_timer.async_wait(use_tuple);  // woken by cancel(), or idle too long
    std::lock_guard lock(mu);
    if (w->idle && queue.empty() && Clock::now() >= idle_until) {
      drop_idle(*w);
      co_return nullptr;
    }
  }
}

asio::awaitable<void> ApiClient::Impl::serve(std::shared_ptr<Worker> w,
                                             std::shared_ptr<Pending> p) {
  Answer a;
  bool on_wire = false;
  if (auto held = co_await wait_for_start(*w, *p)) {
    a = std::move(*held);
  } else {
    on_wire = true;
    try {
      a = co_await exchange(*w, *p);
    } catch (const std::exception& e) {
      a = refused(std::string("internal error: ") + e.what(), Disposition::retryable);
      close_connection(*w);
    }
  }
  if (w->aborting && a.status == 0) a = refused("cancelled", Disposition::retryable);
  if (a.status == 429) limiter.hold(Clock::now() + a.retry_after.value_or(kDefaultRateLimitHold));
  // Back on the idle list before the callback runs, so a call it makes at
  // once reuses this connection instead of opening another.
  release(w, a, on_wire);
  finish(*p, std::move(a));
}

// No call starts before the limiter allows it: after a 429 every call waits
// for the hold (which a later 429 may extend), and pacing spaces starts out.
asio::awaitable<std::optional<Answer>> ApiClient::Impl::wait_for_start(Worker& w,
                                                                       const Pending& p) {
  const auto slot = limiter.reserve(Clock::now());
  bool waited = false;
  for (;;) {
    auto now = Clock::now();
    auto until = std::max(slot, limiter.hold_until());
    if (until <= now) co_return std::nullopt;
    if (until > p.deadline) {
      Answer a = refused("rate limited: held past this call's deadline", Disposition::retryable);
      a.retry_after = std::chrono::ceil<std::chrono::milliseconds>(until - now);
      co_return a;
    }
    if (!waited) count(&Stats::rate_limit_waits);
    waited = true;
    w.wait_timer.expires_at(until);
    co_await w.wait_timer.async_wait(use_tuple);
    if (w.aborting) co_return refused("cancelled", Disposition::retryable);
  }
}

// One request on the worker's connection (opened if needed). A kept-alive
// connection the server closed while idle is seen closed before use (still_open)
// or fails before any answer byte: the request is then resent once, at once,
// on a new connection when detail::may_resend allows it (not completely
// written; or GET, or a POST/PATCH under its idempotency key).
asio::awaitable<Answer> ApiClient::Impl::exchange(Worker& w, const Pending& p) {
  const auto credentials = current_credentials();
  const Request req = build_request(p.call, credentials->authorization);
  if (w.stream && (w.buffer.size() != 0 || !still_open(*w.stream))) close_connection(w);
  // Reloaded since this connection opened: the next call uses the new ones.
  if (w.stream && w.stream_credentials != credentials) close_connection(w);
  bool reused = w.stream.has_value();
  count(&Stats::sent);
  for (;;) {
    if (!w.stream) {
      if (auto failure = co_await connect(w, p.deadline)) co_return transport_answer(*failure);
    } else {
      count(&Stats::connections_reused);
    }
    auto& layer = beast::get_lowest_layer(*w.stream);
    layer.expires_at(p.deadline);
    detail::ResponseParser parser;
    detail::apply_response_limits(parser);
    [[maybe_unused]] auto [ec, written] = co_await http::async_write(*w.stream, req, use_tuple);
    const bool sent_whole = !ec;
    if (!ec) {
      [[maybe_unused]] auto [read_ec, read] =
          co_await http::async_read(*w.stream, w.buffer, parser, use_tuple);
      ec = read_ec;
    }
    if (!ec) {
      auto res = parser.release();
      if (res.keep_alive() && !w.aborting) {
        layer.expires_never();
      } else {
        close_connection(w);
      }
      co_return detail::to_answer(std::move(res));
    }
    bool stale = reused && !parser.got_some() && detail::is_stale_connection_error(ec) &&
                 detail::may_resend(p.call, sent_whole) && !w.aborting && Clock::now() < p.deadline;
    close_connection(w);
    if (!stale) co_return transport_answer(detail::describe_transport_error(ec, X509_V_OK));
    reused = false;
    count(&Stats::stale_retries);
    log.debug("kept-alive connection was closed by the server; resending on a new one",
              {{"method", p.call.method}, {"path", log_path(p.call)}});
  }
}

// Resolve, connect and handshake, all within min(deadline, connect_timeout).
asio::awaitable<std::optional<TransportFailure>> ApiClient::Impl::connect(
    Worker& w, Clock::time_point deadline) {
  const auto until = std::min(deadline, Clock::now() + settings.connect_timeout);
  w.wait_timer.expires_at(until);
  w.wait_timer.async_wait([self = w.shared_from_this()](boost::system::error_code ec) {
    if (!ec) self->resolver.cancel();  // the resolver has no deadline of its own
  });
  auto [resolve_ec, endpoints] =
      co_await w.resolver.async_resolve(target.host, target.port, use_tuple);
  w.wait_timer.cancel();
  if (resolve_ec == asio::error::operation_aborted && !w.aborting) {
    co_return TransportFailure{"timeout"};
  }
  if (resolve_ec) co_return detail::describe_transport_error(resolve_ec, X509_V_OK);

  w.buffer.clear();
  w.stream_credentials = current_credentials();
  w.stream.emplace(w.strand, *w.stream_credentials->tls);
  auto& layer = beast::get_lowest_layer(*w.stream);
  layer.expires_at(until);
  [[maybe_unused]] auto [connect_ec, endpoint] = co_await layer.async_connect(endpoints, use_tuple);
  if (connect_ec) {
    close_connection(w);
    co_return detail::describe_transport_error(connect_ec, X509_V_OK);
  }
  boost::system::error_code ignored;
  layer.socket().set_option(tcp::no_delay(true), ignored);
  if (auto failure = prepare_tls(*w.stream)) {
    close_connection(w);
    co_return failure;
  }
  auto [handshake_ec] = co_await w.stream->async_handshake(ssl::stream_base::client, use_tuple);
  if (handshake_ec) {
    long verify = SSL_get_verify_result(w.stream->native_handle());
    close_connection(w);
    co_return detail::describe_transport_error(handshake_ec, verify);
  }
  w.counted_open = true;
  std::lock_guard lock(mu);
  ++counters.connections_opened;
  ++counters.open_connections;
  co_return std::nullopt;
}

// SNI and the identity the certificate must prove: the host name, or the IP
// address of an IP literal (checked against the certificate's IP SANs).
std::optional<TransportFailure> ApiClient::Impl::prepare_tls(TlsStream& stream) const {
  SSL* ssl = stream.native_handle();
  if (target.host_is_ip) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), target.host.c_str()) != 1) {
      return TransportFailure{"tls: cannot set the expected IP address", Disposition::permanent};
    }
    return std::nullopt;
  }
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (SSL_set_tlsext_host_name(ssl, target.host.c_str()) != 1 ||
      SSL_set1_host(ssl, target.host.c_str()) != 1) {
    return TransportFailure{"tls: cannot set the expected host name", Disposition::permanent};
  }
  return std::nullopt;
}

void ApiClient::Impl::close_connection(Worker& w) {
  if (!w.stream) return;
  // Closed without close_notify: the answer is complete or abandoned, and a
  // TLS shutdown would need a wait of its own.
  boost::system::error_code ignored;
  beast::get_lowest_layer(*w.stream).socket().close(ignored);
  w.stream.reset();
  w.buffer.clear();
  if (std::exchange(w.counted_open, false)) {
    std::lock_guard lock(mu);
    --counters.open_connections;
  }
}

void ApiClient::Impl::release(const std::shared_ptr<Worker>& w, const Answer& a, bool on_wire) {
  std::lock_guard lock(mu);
  --in_flight;
  if (a.status != 0) {
    ++counters.answered;
  } else if (on_wire) {
    ++counters.transport_errors;
  }
  if (a.status == 429) ++counters.rate_limited;
  if (w->stream && !w->aborting && !stopping && !w->idle) {
    w->idle = true;
    w->idle_since = Clock::now();
    idle.push_back(w);
  }
}

void ApiClient::Impl::retire(const std::shared_ptr<Worker>& w) {
  std::shared_ptr<Worker> replacement;
  {
    std::lock_guard lock(mu);
    drop_idle(*w);
    std::erase(workers, w);
    // A call queued while this worker was deciding to end must not wait for
    // its deadline: it gets the freed slot.
    if (!stopping && !queue.empty() && workers.size() < settings.max_connections) {
      replacement = std::make_shared<Worker>(ioc);
      workers.push_back(replacement);
    }
    if (workers.empty()) all_retired.notify_all();
  }
  if (replacement) spawn(std::move(replacement));
}

// --- answers ----------------------------------------------------------------

Request ApiClient::Impl::build_request(const Call& c, const std::string& authorization) const {
  Request req;
  req.method_string(c.method);
  req.target(c.path);
  req.version(11);
  req.set(http::field::host, target.host_header);
  req.set(http::field::user_agent, user_agent);
  req.set(http::field::accept, "application/json");
  req.set("Klarna-Integration-Metadata", metadata);
  if (!authorization.empty()) req.set(http::field::authorization, authorization);
  if (!c.idempotency_key.empty()) req.set("Klarna-Idempotency-Key", c.idempotency_key);
  if (!c.correlation_id.empty()) req.set("Partner-Correlation-Id", c.correlation_id);
  if (!c.traceparent.empty()) req.set("traceparent", c.traceparent);
  for (const auto& [name, value] : c.sensitive_headers) req.set(name, value);
  if (!c.body.empty()) {
    req.set(http::field::content_type,
            c.content_type.empty() ? std::string_view("application/json") : c.content_type);
    req.body() = c.body;
  }
  req.keep_alive(true);
  req.prepare_payload();
  return req;
}

void ApiClient::Impl::finish(Pending& p, Answer a) {
  a.elapsed = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - p.accepted);
  log_call(p.call, a);
  auto done = std::move(p.done);
  if (!done) return;
  try {
    done(std::move(a));
  } catch (const std::exception& e) {
    log.error("klarna client callback threw", {{"error", e.what()}});
  } catch (...) {
    log.error("klarna client callback threw", {{"error", "unknown exception"}});
  }
}

// One line per call; never the body, a header value or the credentials.
void ApiClient::Impl::log_call(const Call& c, const Answer& a) const {
  auto level = a.disposition == Disposition::success ? core::LogLevel::debug : core::LogLevel::info;
  if (!log.enabled(level)) return;
  static const std::string kNone;
  const ErrorBody* e = a.error ? &*a.error : nullptr;
  log.log(level, "klarna call",
          {{"method", c.method},
           {"path", log_path(c)},
           {"status", a.status},
           {"disposition", disposition_name(a.disposition)},
           {"elapsed_us", static_cast<std::int64_t>(a.elapsed.count())},
           {"error_id", e ? e->error_id : kNone},
           {"error_code", e ? e->error_code : kNone},
           {"klarna_correlation_id", a.klarna_correlation_id},
           {"partner_correlation_id", c.correlation_id},
           {"trace_id", core::trace_id_of(c.traceparent)},
           {"span_id", core::span_id_of(c.traceparent)},
           {"transport_error", a.transport_error}});
}

// --- shutdown ---------------------------------------------------------------

bool ApiClient::Impl::stop() {
  std::list<std::shared_ptr<Pending>> abandoned;
  std::vector<std::shared_ptr<Worker>> running;
  {
    std::lock_guard lock(mu);
    if (joined) return !calls_abandoned;  // stopped before: no second grace
    if (!stopping) {
      stopping = true;
      abandoned.swap(queue);
      running = workers;
      for (auto& p : abandoned) {
        p->queued = false;
        p->queue_timer.cancel();
      }
    }
  }
  for (auto& p : abandoned) {
    asio::post(ioc, [this, p] { finish(*p, refused("cancelled", Disposition::retryable)); });
  }
  for (auto& w : running) {
    asio::post(w->strand, [w] {
      w->aborting = true;
      w->idle_timer.cancel();
      w->wait_timer.cancel();
      w->resolver.cancel();
      boost::system::error_code ignored;
      if (w->stream) beast::get_lowest_layer(*w->stream).socket().close(ignored);
    });
  }
  // From a callback: cancelled, but the I/O threads are joined by the destructor.
  if (ioc.get_executor().running_in_this_thread()) return false;
  bool drained;
  {
    std::unique_lock lock(mu);
    drained = all_retired.wait_for(lock, kShutdownGrace, [&] { return workers.empty(); });
  }
  work.reset();
  if (!drained) {
    // Their callbacks will never run: the caller must not wait for them.
    log.warn("klarna client: calls still running after the shutdown grace; abandoned");
    ioc.stop();
  }
  for (auto& t : threads) {
    if (t.joinable()) t.join();
  }
  std::lock_guard lock(mu);
  joined = true;
  calls_abandoned = !drained;
  return drained;
}

ApiClient::Stats ApiClient::Impl::snapshot() const {
  std::lock_guard lock(mu);
  Stats s = counters;
  s.in_flight = in_flight;
  s.queued = queue.size();
  s.idle_connections = idle.size();
  return s;
}

// --- public surface ---------------------------------------------------------

ApiClient::ApiClient(ClientSettings settings) : impl_(std::make_unique<Impl>(std::move(settings))) {
  impl_->start();
}

ApiClient::~ApiClient() {
  if (!impl_) return;
  if (impl_->stop()) return;
  // A call could not be cancelled (a resolve blocked in getaddrinfo):
  // destroying the I/O context would join the resolver's thread, i.e. wait for
  // that resolve. Destroyed on a thread of its own instead, abandoned to the
  // process exit if it does not end first (as the processor does with Kafka
  // handles). Nothing runs our callbacks any more: the I/O context is stopped.
  std::thread([impl = impl_.release()] { delete impl; }).detach();
}

void ApiClient::send(Call call, std::function<void(Answer)> done) {
  if (!done) done = [](Answer) {};
  impl_->submit(std::move(call), std::move(done));
}

Answer ApiClient::call(Call call) {
  if (impl_->ioc.get_executor().running_in_this_thread()) {
    return refused("call() on a client I/O thread would deadlock; use send()",
                   Disposition::permanent);
  }
  auto promise = std::make_shared<std::promise<Answer>>();
  auto answer = promise->get_future();
  send(std::move(call), [promise](Answer a) { promise->set_value(std::move(a)); });
  return answer.get();
}

bool ApiClient::shutdown() {
  return impl_->stop();
}

ApiClient::Stats ApiClient::stats() const {
  return impl_->snapshot();
}

bool ApiClient::reload(std::string& error) {
  std::shared_ptr<const detail::Credentials> fresh;
  try {
    fresh = detail::load_credentials(impl_->settings);
  } catch (const std::exception& e) {
    error = e.what();
    return false;
  }
  std::lock_guard lock(impl_->credentials_mu);
  impl_->credentials = std::move(fresh);
  return true;
}

std::int64_t ApiClient::credentials_loaded_at_ms() const {
  return impl_->current_credentials()->loaded_at_ms;
}

std::optional<std::int64_t> ApiClient::client_certificate_not_after_ms() const {
  return impl_->current_credentials()->certificate_not_after_ms;
}

const ClientSettings& ApiClient::settings() const {
  return impl_->settings;
}

}  // namespace kpay::klarna
