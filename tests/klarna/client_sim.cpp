#include "client_sim.hpp"

#include <simdjson.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

namespace kpay::test::client {

using namespace std::chrono_literals;

std::string json_field(const std::string& json, std::initializer_list<std::string_view> path) {
  simdjson::dom::parser p;
  simdjson::dom::element e;
  if (p.parse(json).get(e) != simdjson::SUCCESS) return "<not json>";
  for (auto k : path) {
    if (e[k].get(e) != simdjson::SUCCESS) return "<missing>";
  }
  std::string_view s;
  if (e.get_string().get(s) == simdjson::SUCCESS) return std::string(s);
  std::int64_t i;
  if (e.get_int64().get(i) == simdjson::SUCCESS) return std::to_string(i);
  return "<other>";
}

void write_file(const std::string& path, const std::string& text, unsigned mode) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  ::chmod(path.c_str(), static_cast<mode_t>(mode));
}

Sim::Sim(std::vector<std::string> extra, std::optional<CertFiles> server_cert) {
  dir = make_temp_dir("api-client");
  cert = server_cert ? *server_cert : write_self_signed_cert(dir);
  credentials_file = dir + "/api-key";
  write_file(credentials_file, kApiKey + "\n", 0600);  // one trailing newline is dropped
  std::string port_file = dir + "/port.json";
  std::vector<std::string> argv{binary("sim/klarna-sim"),
                                "--set",
                                "sim.port=0",
                                "--set",
                                "sim.port_file=" + port_file,
                                "--set",
                                "sim.seed=7",
                                "--set",
                                "sim.api_key=" + kApiKey,
                                "--set",
                                "sim.tls=true",
                                "--set",
                                "sim.tls_certificate=" + cert.certificate,
                                "--set",
                                "sim.tls_private_key=" + cert.private_key};
  argv.insert(argv.end(), extra.begin(), extra.end());
  proc = std::make_unique<ChildProcess>(argv, dir + "/sim.log");
  wait_until(
      [&] {
        if (!proc->running()) return true;
        return json_field(read_file(port_file), {"port"}).find('<') == std::string::npos;
      },
      15s);
  if (!proc->running()) {
    exit_code = proc->wait(0ms);
    return;
  }
  port = static_cast<std::uint16_t>(std::stoi(json_field(read_file(port_file), {"port"})));
}

std::string Sim::log() const {
  return read_file(dir + "/sim.log");
}

std::optional<HttpResponse> Sim::control(std::string_view method, const std::string& target,
                                         std::string_view body) {
  return http_request(port, method, target, body, {}, true);
}

bool Sim::try_set_faults(const std::string& rules) {
  auto r = control("POST", "/_sim/faults", R"({"rules":[)" + rules + "]}");
  return r && r->status == 200;
}

int Sim::executions(const std::string& route) {
  auto r = control("GET", "/_sim/executions");
  if (!r) return -1;
  auto n = json_field(r->body, {"by_route", route});
  return n.find('<') == std::string::npos ? std::stoi(n) : 0;
}

klarna::ClientSettings Sim::settings() const {
  klarna::ClientSettings s;
  s.environment = klarna::Environment::custom;
  s.base_url = base_url();
  s.ca_file = cert.certificate;
  s.credentials_file = credentials_file;
  s.request_timeout = 10s;
  return s;
}

bool sim_built() {
  return ::access(binary("sim/klarna-sim").c_str(), X_OK) == 0;
}

klarna::Call get(std::string path) {
  klarna::Call c;
  c.method = "GET";
  c.path = std::move(path);
  return c;
}

klarna::Call create_request(std::string key, int amount) {
  klarna::Call c;
  c.method = "POST";
  c.path = klarna::account_path(kAccount) + "/payment/requests";
  c.body = R"({"currency":"USD","amount":)" + std::to_string(amount) +
           R"(,"payment_request_reference":"ref-)" + key + R"("})";
  c.idempotency_key = std::move(key);
  return c;
}

std::function<void(klarna::Answer)> Collector::callback() {
  return [this](klarna::Answer a) {
    std::lock_guard lock(mu_);
    answers_.push_back(std::move(a));
    cv_.notify_all();
  };
}

bool Collector::wait_for(std::size_t n, std::chrono::milliseconds limit) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, limit, [&] { return answers_.size() >= n; });
}

std::vector<klarna::Answer> Collector::answers() {
  std::lock_guard lock(mu_);
  return answers_;
}

}  // namespace kpay::test::client
