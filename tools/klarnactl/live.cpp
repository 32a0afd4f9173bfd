#include "live.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <sstream>

#include "kpay/core/config.hpp"
#include "kpay/klarna/kafka_contract.hpp"
#include "kpay/processor/daemon_settings.hpp"
#include "kpay/processor/state_machines.hpp"
#include "kpay/storage/defaults.hpp"
#include "kpay/storage/open_store.hpp"

namespace kpay::ctl::live {

namespace {

using Clock = std::chrono::steady_clock;

// ---- Prometheus text ------------------------------------------------------------

// Reads `{a="x",b="y"}` starting at `pos` (just after '{'); false when malformed.
bool parse_labels(const std::string& line, std::size_t& pos,
                  std::map<std::string, std::string>& out) {
  while (pos < line.size() && line[pos] != '}') {
    auto eq = line.find('=', pos);
    if (eq == std::string::npos || eq + 1 >= line.size() || line[eq + 1] != '"') return false;
    std::string name = line.substr(pos, eq - pos);
    std::string value;
    std::size_t i = eq + 2;
    for (; i < line.size() && line[i] != '"'; ++i) {
      if (line[i] == '\\' && i + 1 < line.size()) {
        ++i;
        value += line[i] == 'n' ? '\n' : line[i];
      } else {
        value += line[i];
      }
    }
    if (i >= line.size()) return false;
    out[name] = value;
    pos = i + 1;
    if (pos < line.size() && line[pos] == ',') ++pos;
  }
  if (pos >= line.size()) return false;
  ++pos;  // '}'
  return true;
}

std::optional<Sample> parse_line(const std::string& line) {
  if (line.empty() || line[0] == '#') return std::nullopt;
  Sample s;
  std::size_t pos = line.find_first_of("{ ");
  if (pos == std::string::npos || pos == 0) return std::nullopt;
  s.name = line.substr(0, pos);
  if (line[pos] == '{') {
    ++pos;
    if (!parse_labels(line, pos, s.labels)) return std::nullopt;
  }
  std::istringstream rest(line.substr(pos));
  std::string value;
  if (!(rest >> value)) return std::nullopt;
  try {
    s.value = std::stod(value);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  return s;
}

// ---- a bounded plain-HTTP GET (the admin endpoints are loopback HTTP) ------------

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// Waits for `events` on fd until the deadline; false on timeout.
bool wait_fd(int fd, short events, Clock::time_point deadline) {
  pollfd p{fd, events, 0};
  int r;
  do {
    r = ::poll(&p, 1, remaining_ms(deadline));
  } while (r < 0 && errno == EINTR);
  return r > 0;
}

void connect_to(Fd& s, const Endpoint& e, Clock::time_point deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const auto port = std::to_string(e.port);
  if (int rc = ::getaddrinfo(e.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    throw std::runtime_error(std::string("cannot resolve host: ") + ::gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(res, ::freeaddrinfo);
  s.fd = ::socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s.fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  if (::connect(s.fd, res->ai_addr, res->ai_addrlen) != 0 && errno != EINPROGRESS) {
    throw std::runtime_error(std::strerror(errno));
  }
  if (!wait_fd(s.fd, POLLOUT, deadline)) throw std::runtime_error("connect timed out");
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) throw std::runtime_error(std::strerror(err));
}

struct HttpAnswer {
  int status = 0;
  std::string body;
};

// GET `path` with HTTP/1.0 (the server closes after answering). Throws
// std::runtime_error with the reason when there is no complete answer in time.
HttpAnswer http_get(const Endpoint& e, const std::string& path, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  Fd s;
  connect_to(s, e, deadline);
  const std::string req = "GET " + path + " HTTP/1.0\r\nHost: " + e.host + "\r\n\r\n";
  if (::send(s.fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    throw std::runtime_error(std::string("send: ") + std::strerror(errno));
  }
  std::string raw;
  char buf[16384];
  for (;;) {
    if (!wait_fd(s.fd, POLLIN, deadline)) throw std::runtime_error("no answer in time");
    auto n = ::recv(s.fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) throw std::runtime_error(std::string("recv: ") + std::strerror(errno));
    if (n == 0) break;
    raw.append(buf, static_cast<std::size_t>(n));
    if (raw.size() > 64 * 1024 * 1024) throw std::runtime_error("answer too large");
  }
  auto head_end = raw.find("\r\n\r\n");
  int status = 0;
  if (head_end == std::string::npos || std::sscanf(raw.c_str(), "HTTP/%*d.%*d %d", &status) != 1) {
    throw std::runtime_error("not an HTTP answer");
  }
  return {status, raw.substr(head_end + 4)};
}

// {"ready":false,"reason":"…"} → the reason (the admin server writes it flat).
std::string reason_of(const std::string& body) {
  const std::string key = "\"reason\":\"";
  auto p = body.find(key);
  if (p == std::string::npos) return "not ready";
  auto end = body.find('"', p + key.size());
  return body.substr(p + key.size(), end == std::string::npos ? end : end - p - key.size());
}

bool contains(const std::map<std::string, std::string>& labels,
              const std::map<std::string, std::string>& match) {
  for (const auto& [k, v] : match) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

Endpoint endpoint_from(const std::string& name, const core::Config& cfg,
                       std::int64_t default_port) {
  Endpoint e;
  e.name = name;
  e.host = cfg.string("admin.listen_address", "127.0.0.1");
  if (e.host == "0.0.0.0" || e.host.empty()) e.host = "127.0.0.1";
  if (e.host == "::") e.host = "::1";
  const auto port = cfg.integer("admin.port", default_port, 0, 65535);
  if (port == 0) {
    throw core::ConfigError("", "the " + name + "'s admin.port is 0 (chosen at start): give --" +
                                    name + "-admin http://host:port");
  }
  e.port = static_cast<std::uint16_t>(port);
  return e;
}

core::Config load_file(const std::string& file, const std::vector<std::string>& overrides) {
  if (!std::filesystem::exists(file)) {
    throw core::ConfigError("", "no configuration file at '" + file + "'");
  }
  return core::load_config(std::filesystem::path(file), overrides);
}

}  // namespace

Metrics parse_prometheus(const std::string& text) {
  Metrics out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (auto s = parse_line(line)) out.push_back(std::move(*s));
  }
  return out;
}

double sum(const Metrics& m, const std::string& name,
           const std::map<std::string, std::string>& match) {
  double total = 0;
  for (const auto& s : m) {
    if (s.name == name && contains(s.labels, match)) total += s.value;
  }
  return total;
}

std::vector<std::string> label_values(const Metrics& m, const std::string& name,
                                      const std::string& label) {
  std::vector<std::string> out;
  for (const auto& s : m) {
    if (s.name != name) continue;
    auto it = s.labels.find(label);
    if (it != s.labels.end() && std::find(out.begin(), out.end(), it->second) == out.end()) {
      out.push_back(it->second);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string Endpoint::url() const {
  const bool v6 = host.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Endpoint parse_endpoint(const std::string& name, const std::string& text) {
  std::string rest = text;
  if (rest.rfind("http://", 0) == 0) rest = rest.substr(7);
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  auto colon = rest.rfind(':');
  if (colon == std::string::npos) {
    throw core::ConfigError("",
                            "--" + name + "-admin '" + text + "' has no port (http://host:port)");
  }
  Endpoint e;
  e.name = name;
  std::string host = rest.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (!host.empty()) e.host = host;
  const auto port = rest.substr(colon + 1);
  int value = 0;
  try {
    std::size_t used = 0;
    value = std::stoi(port, &used);
    if (used != port.size()) value = 0;
  } catch (const std::exception&) {
    value = 0;
  }
  if (value < 1 || value > 65535) {
    throw core::ConfigError("", "--" + name + "-admin '" + text + "': the port must be 1..65535");
  }
  e.port = static_cast<std::uint16_t>(value);
  return e;
}

Probe probe(const Endpoint& e, std::chrono::milliseconds timeout) {
  Probe p;
  p.endpoint = e;
  try {
    auto ready = http_get(e, "/readyz", timeout);
    p.reachable = true;
    p.ready = ready.status == 200;
    if (!p.ready) p.reason = reason_of(ready.body);
    auto metrics = http_get(e, "/metrics", timeout);
    if (metrics.status == 200) p.metrics = parse_prometheus(metrics.body);
  } catch (const std::exception& ex) {
    if (!p.reachable) p.reason = "unreachable at " + e.url() + ": " + ex.what();
  }
  return p;
}

Database read_database(const std::string& path) {
  Database d;
  d.path = path;
  if (!std::filesystem::exists(path)) {
    d.error = "no database at '" + path + "'";
    return d;
  }
  try {
    d.overview = storage::open_store(path, {.read_only = true, .cache_mib = 2})->overview();
  } catch (const std::exception& e) {
    d.error = std::string("cannot read '") + path + "': " + e.what();
  }
  return d;
}

Database read_database(const storage::PostgresSettings& settings) {
  Database d;
  d.path = "PostgreSQL (postgresql.dsn)";
  try {
    d.overview = storage::open_postgres_store(settings, true)->overview();
  } catch (const std::exception& e) {
    d.error = std::string("cannot read the PostgreSQL state: ") + e.what();
  }
  return d;
}

bool is_final_state(const std::string& kind, const std::string& state) {
  using namespace kpay::processor;
  if (kind == "payment_request") {
    auto s = parse_state<RequestState>(state);
    return s && (gen1_request_machine().is_final(*s) || gen2_request_machine().is_final(*s));
  }
  auto s = parse_state<TransactionState>(state);
  return s && transaction_machine().is_final(*s);
}

void add_target_options(CLI::App* cmd, Targets& t) {
  cmd->add_option("--receiver-config", t.receiver_config,
                  "klarna-receiver's TOML file (its [admin] section)");
  cmd->add_option("--processor-config", t.processor_config,
                  "klarna-processor's TOML file ([admin], processor.database); default: --config");
  cmd->add_option("--receiver-admin", t.receiver_admin,
                  "the receiver's admin endpoint, http://host:port (default 127.0.0.1:9464)");
  cmd->add_option("--processor-admin", t.processor_admin,
                  "the processor's admin endpoint, http://host:port (default 127.0.0.1:9102)");
  cmd->add_option("--database", t.database,
                  "the processor's SQLite database (default: processor.database, or the "
                  "PostgreSQL state when processor.store = \"postgresql\")");
  cmd->add_option("--timeout-ms", t.timeout_ms, "per request to an admin endpoint (default 2000)")
      ->check(CLI::Range(50, 60000));
}

Resolved resolve(const GlobalOptions& g, const Targets& t) {
  Resolved r;
  core::Config processor =
      t.processor_config ? load_file(*t.processor_config, g.overrides) : g.load();
  core::Config receiver = t.receiver_config ? load_file(*t.receiver_config, {}) : core::Config{};
  r.processor = t.processor_admin ? parse_endpoint("processor", *t.processor_admin)
                                  : endpoint_from("processor", processor, 9102);
  r.receiver = t.receiver_admin ? parse_endpoint("receiver", *t.receiver_admin)
                                : endpoint_from("receiver", receiver, 9464);
  r.database = t.database
                   ? *t.database
                   : processor.string("processor.database", kpay::storage::kDefaultStateDatabase);
  if (!t.database && processor.string("processor.store", "sqlite") == "postgresql") {
    r.postgresql = kpay::processor::daemon_settings_from_config(processor).postgresql;
    r.database = "PostgreSQL (postgresql.dsn)";
  }
  return r;
}

Snapshot take(const Resolved& r, std::chrono::milliseconds timeout) {
  Snapshot s;
  s.receiver = probe(r.receiver, timeout);
  s.processor = probe(r.processor, timeout);
  s.db = r.postgresql ? read_database(*r.postgresql) : read_database(r.database);
  s.at = Clock::now();
  return s;
}

Figures figures(const Snapshot& s) {
  Figures f;
  const auto& rm = s.receiver.metrics;
  namespace metric = klarna::contract::metric;
  const std::string requests = metric::receiver_requests;
  f.webhooks_accepted = sum(rm, requests, {{"outcome", "accepted"}});
  f.webhooks_rejected = sum(rm, requests, {{"outcome", "rejected"}});
  f.webhooks_unavailable = sum(rm, requests, {{"outcome", "unavailable"}});
  f.webhooks_dead_lettered = sum(rm, requests, {{"outcome", "dead_lettered"}});
  if (std::any_of(rm.begin(), rm.end(),
                  [](const Sample& x) { return x.name == metric::receiver_signing_keys; })) {
    f.signing_keys = sum(rm, metric::receiver_signing_keys);
  }
  const auto& pm = s.processor.metrics;
  f.kafka_lag = sum(pm, metric::processor_consumer_lag);
  f.calls_overdue = sum(pm, metric::processor_call_deadlines, {{"status", "overdue"}});
  f.calls_failed = sum(pm, metric::processor_call_deadlines, {{"status", "failed"}});
  f.calls_at_risk = sum(pm, metric::processor_call_deadlines, {{"status", "at_risk"}});
  f.processor_dead_letters = sum(pm, metric::processor_poison_messages);
  f.disputes_overdue = sum(pm, metric::processor_dispute_deadlines, {{"status", "overdue"}});
  f.settlement_findings = sum(pm, metric::processor_settlement_findings);
  f.payouts_failed = sum(pm, metric::processor_payouts_failed);
  if (s.db.overview) {
    for (const auto& p : s.db.overview->payments) {
      f.payments += p.count;
      if (is_final_state(p.group, p.status)) f.payments_final += p.count;
    }
    f.db_dead_letters = s.db.overview->dead_letters;
  }
  return f;
}

}  // namespace kpay::ctl::live
