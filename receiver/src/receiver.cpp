// The receiver's lifecycle, laid out as Beast's advanced_server_flex_awaitable
// example: an accept loop spawns every connection (connection.cpp) as a child
// of a task group (task_group.hpp); Kafka's delivery reports are served by the
// I/O loop itself (delivery.cpp). Shutdown stops accepting, emits a `total`
// cancellation to the connections (idle ones close, requests already read are
// answered), waits for them within the grace period, then emits `terminal`;
// the I/O threads then run out of work and return.
#include <pthread.h>
#include <sys/resource.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ssl.hpp>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include "connection.hpp"
#include "delivery.hpp"
#include "io_types.hpp"
#include "kpay/core/admin_server.hpp"
#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"
#include "kpay/core/process.hpp"
#include "kpay/core/secret_files.hpp"
#include "kpay/klarna/kafka_contract.hpp"
#include "kpay/receiver/key_ring_source.hpp"
#include "kpay/receiver/publisher.hpp"
#include "kpay/receiver/receiver.hpp"
#include "kpay/receiver/webhook_handler.hpp"
#include "receiver_metrics.hpp"
#include "task_group.hpp"

namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;

namespace kpay::receiver {

namespace {

int io_thread_count(const ListenerSettings& l) {
  return l.io_threads > 0 ? l.io_threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// One io_context per I/O thread. A connection lives on one of them, so its
// handlers never run concurrently and need no strand: no lock per handler,
// and its delivery reports are batched per context (DeliveryMailbox).
struct IoContext {
  asio::io_context ioc{1};  // concurrency hint: run by exactly one thread
  asio::executor_work_guard<Executor> work{ioc.get_executor()};
  DeliveryMailbox mailbox{ioc.get_executor()};
  std::atomic<std::int64_t> heartbeat_ms{0};
};

std::vector<std::unique_ptr<IoContext>> make_contexts(int n) {
  std::vector<std::unique_ptr<IoContext>> out;
  for (int i = 0; i < n; ++i) out.push_back(std::make_unique<IoContext>());
  return out;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::vector<std::string> topic_list(const klarna::Topics& t) {
  return {t.payment_requests, t.payment_transactions, t.disputes, t.settlements, t.accounts,
          t.unrouted,         t.dead_letter};
}

// TLS 1.2+ with forward secrecy and AEAD only, no renegotiation, the server's
// cipher order; the certificate and key as configured.
void configure_tls(ssl::context& tls, const ListenerSettings& listener) {
  tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                  ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                  ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(tls.native_handle(), TLS1_2_VERSION);
  // Client-initiated TLS 1.2 renegotiation costs us CPU and buys nothing.
  SSL_CTX_set_options(tls.native_handle(), SSL_OP_NO_RENEGOTIATION);
  // TLS 1.2: forward secrecy and AEAD only (no RSA key exchange, no CBC,
  // 3DES, RC4, NULL or export suites). TLS 1.3's suites are all AEAD.
  if (SSL_CTX_set_cipher_list(tls.native_handle(), core::kTls12Ciphers) != 1) {
    throw core::ConfigError("receiver.tls", "OpenSSL offers none of the TLS 1.2 ciphers we allow");
  }
  SSL_CTX_set_options(tls.native_handle(), SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (auto why = core::private_file_problem(listener.tls_private_key); !why.empty()) {
    throw core::ConfigError("receiver.tls_private_key", why);
  }
  boost::system::error_code ec;
  tls.use_certificate_chain_file(listener.tls_certificate, ec);
  if (ec) {
    throw core::ConfigError("receiver.tls_certificate",
                            "cannot load '" + listener.tls_certificate + "': " + ec.message());
  }
  tls.use_private_key_file(listener.tls_private_key, ssl::context::pem, ec);
  if (ec) {
    // Never echo key material; the path and OpenSSL's reason are enough.
    throw core::ConfigError("receiver.tls_private_key",
                            "cannot load '" + listener.tls_private_key + "': " + ec.message());
  }
}

}  // namespace

struct Receiver::Impl {
  explicit Impl(Settings s)
      : settings(std::move(s)),
        contexts(make_contexts(io_thread_count(settings.listener))),
        keys(settings.keys_database, settings.keys_reload_interval),
        publisher(settings.kafka, topic_list(settings.topics), registry),
        handler(settings.listener.path, settings.topics, registry),
        admin(registry, [this] { return readiness(); }),
        metrics(registry),
        services{settings.listener, settings.kafka,      keys, handler, publisher, metrics, nullptr,
                 stopping,          body_bytes_reserved, log} {
    registry.gauge_callback(
        klarna::contract::metric::receiver_signing_keys, "Active signing keys in the key ring.", {},
        [this] {
          return std::vector<core::GaugeSample>{{{}, static_cast<double>(keys.current()->size())}};
        });
    registry.gauge_callback(
        "kpay_receiver_kafka_ready", "1 when Kafka answered the last metadata probe.", {}, [this] {
          return std::vector<core::GaugeSample>{{{}, publisher.ready() ? 1.0 : 0.0}};
        });
    if (settings.listener.tls) {
      tls.emplace(ssl::context::tls_server);
      configure_tls(*tls, settings.listener);
      services.tls = &*tls;
    }
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

  Executor acceptor_executor() { return contexts.front()->ioc.get_executor(); }

  // --- accepting ------------------------------------------------------------

  Task<void> accept_loop() {
    for (;;) {
      // Round robin over the I/O contexts.
      auto& home = *contexts[next_context++ % contexts.size()];
      auto [ec, socket] = co_await acceptor->async_accept(home.ioc.get_executor(), kUseTuple);
      if (ec == asio::error::operation_aborted || stopping.load()) {
        boost::system::error_code ignored;
        acceptor->close(ignored);  // new connections are refused from now on
        co_return;
      }
      if (ec) {
        // EMFILE/ENFILE/ENOBUFS: retrying at once would spin; back off.
        log.warn("accept failed", {{"error", ec.message()}});
        Timer backoff(acceptor_executor(), std::chrono::milliseconds(100));
        co_await backoff.async_wait(kUseTuple);
        continue;
      }
      if (connections.size() >= settings.listener.max_connections) {
        metrics.refused_connections.inc();
        boost::system::error_code ignored;
        socket.close(ignored);
        continue;
      }
      connections.spawn(
          home.ioc.get_executor(), run_connection(std::move(socket), services, home.mailbox),
          [this](std::exception_ptr) { log.error("connection ended by an unexpected exception"); });
    }
  }

  // One per context: the watchdog is fed only while every context runs.
  Task<void> heartbeat(IoContext& c) {
    Timer timer(c.ioc.get_executor());
    while (!stopping.load()) {
      c.heartbeat_ms.store(now_ms());
      timer.expires_after(std::chrono::milliseconds(500));
      auto [ec] = co_await timer.async_wait(kUseTuple);
      if (ec) co_return;  // cancelled: shutting down
    }
  }

  bool io_alive() const {
    const auto now = now_ms();
    for (const auto& c : contexts) {
      if (now - c->heartbeat_ms.load() >= 5000) return false;
    }
    return true;
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
             {{"configured", max},
              {"open_file_limit", static_cast<std::uint64_t>(rl.rlim_cur)},
              {"max_connections", fitted}});
    max = fitted;
  }

  void listen() {
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(settings.listener.address, ec);
    if (ec) throw core::ConfigError("receiver.listen_address", "not an IP address");
    tcp::endpoint ep(addr, settings.listener.port);
    acceptor.emplace(acceptor_executor());
    acceptor->open(ep.protocol());
    acceptor->set_option(asio::socket_base::reuse_address(true));
    acceptor->bind(ep, ec);
    if (ec) {
      throw std::runtime_error("cannot listen on " + settings.listener.address + ":" +
                               std::to_string(settings.listener.port) + ": " + ec.message());
    }
    acceptor->listen(asio::socket_base::max_listen_connections);
    bound_port = acceptor->local_endpoint().port();
  }

  void start() {
    fit_connections_to_open_file_limit();
    listen();
    bound_admin_port = admin.start(settings.admin_address, settings.admin_port);
    keys.start_watching();
    accepting.spawn(acceptor_executor(), accept_loop(), [this](std::exception_ptr) {
      if (stopping.load()) return;
      accept_failed.store(true);
      log.error("the accept loop stopped unexpectedly; reporting not ready");
    });
    services_group.spawn(
        acceptor_executor(), serve_delivery_reports(publisher),
        [this](std::exception_ptr) { log.error("serving Kafka delivery reports failed"); });
    for (std::size_t i = 0; i < contexts.size(); ++i) {
      auto& c = *contexts[i];
      services_group.spawn(c.ioc.get_executor(), heartbeat(c), [](std::exception_ptr) {});
      threads.emplace_back([&c, i] {
        // Named for top, perf and the benchmark's CPU per thread.
        const std::string name = "kpay-io-" + std::to_string(i);
        ::pthread_setname_np(::pthread_self(), name.c_str());
        c.ioc.run();
      });
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

  // Stops accepting, then cancels the connections: `total` (idle ones close,
  // requests already read are answered) and, if they have not finished
  // within the grace period, `terminal`. True when they finished in time.
  bool drain_connections(std::chrono::steady_clock::time_point deadline) {
    accepting.emit(asio::cancellation_type::terminal);
    connections.emit(asio::cancellation_type::total);
    if (connections.wait_until(deadline)) return true;
    log.warn("grace period over with connections still open; closing them",
             {{"connections", connections.size()}});
    connections.emit(asio::cancellation_type::terminal);
    return false;
  }

  // Ends the services (report serving, heartbeats), lets the I/O threads run
  // out of work and joins them.
  void stop_io() {
    const auto soon = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    const bool ended = connections.wait_until(soon) && accepting.wait_until(soon);
    services_group.emit(asio::cancellation_type::terminal);
    for (auto& c : contexts) c->work.reset();
    if (!ended || !services_group.wait_until(soon)) {
      // Only when an operation ignored terminal cancellation.
      log.error("I/O tasks did not end when cancelled; stopping the I/O threads");
      for (auto& c : contexts) c->ioc.stop();
    }
    for (auto& t : threads) t.join();
    threads.clear();
  }

  bool shutdown() {
    if (stopped) return true;
    stopped = true;
    auto deadline = std::chrono::steady_clock::now() + settings.shutdown_grace;
    stopping.store(true);
    core::notify_stopping();
    log.info("shutting down: no new connections, answering requests in flight");
    const bool drained = threads.empty() || drain_connections(deadline);
    stop_io();
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
  std::size_t next_context = 0;  // accept loop only
  KeyRingSource keys;
  KafkaPublisher publisher;
  WebhookHandler handler;
  core::AdminServer admin;
  ReceiverMetrics metrics;
  std::optional<ssl::context> tls;
  std::atomic<bool> stopping{false};
  std::atomic<bool> accept_failed{false};
  std::atomic<std::size_t> body_bytes_reserved{0};
  ConnectionServices services;
  std::optional<Acceptor> acceptor;
  TaskGroup accepting;       // the accept loop
  TaskGroup connections;     // one child per open connection
  TaskGroup services_group;  // delivery reports, heartbeats
  std::vector<std::thread> threads;
  std::uint16_t bound_port = 0;
  std::uint16_t bound_admin_port = 0;
  bool stopped = false;
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
