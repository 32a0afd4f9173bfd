// Start-up side of the API client: settings validation, the target URL,
// the Basic credentials, the TLS context. Everything here throws
// ClientConfigError naming the setting and never quoting a secret.
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <sys/stat.h>
#include <unistd.h>
#include <chrono>
#include <ctime>
#include <memory>

#include <boost/asio/ip/address.hpp>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "api_client_internal.hpp"
#include "kpay/core/secret_files.hpp"

namespace kpay::klarna::detail {

namespace ssl = boost::asio::ssl;

namespace {

[[noreturn]] void refuse(const std::string& setting, const std::string& why) {
  throw ClientConfigError(setting + ": " + why);
}

bool is_token_text(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_' || c == '+';
    if (!ok) return false;
  }
  return true;
}

void require_readable(const std::string& setting, const std::string& path) {
  if (::access(path.c_str(), R_OK) != 0) refuse(setting, "cannot read '" + path + "'");
}

// A private key others can read is a key others may have copied.
void require_owner_only(const std::string& setting, const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) refuse(setting, "cannot stat '" + path + "'");
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    refuse(setting, "'" + path + "' is readable by group or others (mode " + mode +
                        "); make it 0600 or 0400");
  }
}

}  // namespace

void validate_settings(const ClientSettings& s) {
  if (s.max_connections == 0) refuse("max_connections", "must be at least 1");
  if (s.io_threads < 1) refuse("io_threads", "must be at least 1");
  if (s.request_timeout.count() <= 0) refuse("request_timeout", "must be positive");
  if (s.connect_timeout.count() <= 0) refuse("connect_timeout", "must be positive");
  if (s.idle_timeout.count() <= 0) refuse("idle_timeout", "must be positive");
  if (!std::isfinite(s.max_requests_per_second) || s.max_requests_per_second < 0) {
    refuse("max_requests_per_second", "must be 0 (no pacing) or positive");
  }
  if (!is_token_text(s.user_agent)) refuse("user_agent", "must be [A-Za-z0-9._+-]+");
  if (!is_token_text(s.version)) refuse("version", "must be [A-Za-z0-9._+-]+");
  if (s.client_certificate_file.empty() != s.client_private_key_file.empty()) {
    refuse("client_certificate_file",
           "mTLS needs both client_certificate_file and "
           "client_private_key_file, or neither");
  }
}

Target resolve_target(const ClientSettings& s) {
  std::string url;
  if (s.environment == Environment::custom) {
    if (s.base_url.empty()) refuse("base_url", "required when environment is custom");
    url = s.base_url;
  } else {
    if (!s.base_url.empty()) refuse("base_url", "only allowed when environment is custom");
    url = std::string(default_base_url(s.environment));
  }
  constexpr std::string_view kScheme = "https://";
  if (url.rfind(kScheme, 0) != 0) refuse("base_url", "must start with https://");
  std::string authority = url.substr(kScheme.size());
  if (!authority.empty() && authority.back() == '/') authority.pop_back();
  if (authority.empty() || authority.find_first_of("/?#@ ") != std::string::npos) {
    refuse("base_url", "must be https://host[:port] (no path, query or user info)");
  }
  Target t;
  std::string port_text;
  if (authority.front() == '[') {  // [IPv6]:port
    auto close = authority.find(']');
    if (close == std::string::npos) refuse("base_url", "unterminated IPv6 literal");
    t.host = authority.substr(1, close - 1);
    std::string rest = authority.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') refuse("base_url", "bad text after the IPv6 literal");
    if (!rest.empty()) port_text = rest.substr(1);
  } else {
    auto colon = authority.rfind(':');
    t.host = authority.substr(0, colon);
    if (colon != std::string::npos) port_text = authority.substr(colon + 1);
  }
  if (t.host.empty()) refuse("base_url", "has no host");
  int port = 443;
  if (!port_text.empty() || authority.back() == ':') {
    try {
      std::size_t used = 0;
      port = std::stoi(port_text, &used);
      if (used != port_text.size()) port = -1;
    } catch (const std::exception&) {
      port = -1;
    }
    if (port < 1 || port > 65535) refuse("base_url", "bad port '" + port_text + "'");
  }
  boost::system::error_code ec;
  auto ip = boost::asio::ip::make_address(t.host, ec);
  t.host_is_ip = !ec;
  t.port = std::to_string(port);
  std::string host_part = (t.host_is_ip && ip.is_v6()) ? "[" + t.host + "]" : t.host;
  t.host_header = port == 443 ? host_part : host_part + ":" + t.port;
  return t;
}

std::string read_authorization(const ClientSettings& s) {
  if (s.credentials_file.empty()) return {};
  require_readable("credentials_file", s.credentials_file);
  require_owner_only("credentials_file", s.credentials_file);
  std::ifstream in(s.credentials_file, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  if (!in) refuse("credentials_file", "cannot read '" + s.credentials_file + "'");
  std::string key = ss.str();
  if (!key.empty() && key.back() == '\n') key.pop_back();
  if (!key.empty() && key.back() == '\r') key.pop_back();
  if (key.empty()) refuse("credentials_file", "'" + s.credentials_file + "' is empty");
  for (char c : key) {
    if (c == '\r' || c == '\n' || c == '\0') {
      refuse("credentials_file", "holds more than one line (only one trailing newline allowed)");
    }
  }
  std::string header = "Basic " + key;
  OPENSSL_cleanse(key.data(), key.size());
  return header;
}

void configure_tls(ssl::context& ctx, const ClientSettings& s) {
  SSL_CTX* native = ctx.native_handle();
  if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1) {
    throw ClientConfigError("tls: cannot require TLS 1.2");
  }
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_compression);
  // The same TLS 1.2 suites as our servers: ECDHE + AEAD only.
  if (SSL_CTX_set_cipher_list(native, core::kTls12Ciphers) != 1) {
    throw ClientConfigError("tls: OpenSSL offers none of the TLS 1.2 ciphers we allow");
  }
  ctx.set_verify_mode(ssl::verify_peer);
  // An encrypted key would make OpenSSL prompt on the terminal: refuse instead.
  ctx.set_password_callback([](std::size_t, ssl::context::password_purpose) { return ""; });
  boost::system::error_code ec;
  if (!s.ca_file.empty()) {
    require_readable("ca_file", s.ca_file);
    ctx.load_verify_file(s.ca_file, ec);
    if (ec) refuse("ca_file", "cannot load '" + s.ca_file + "': " + ec.message());
  } else {
    ctx.set_default_verify_paths(ec);
    if (ec) refuse("ca_file", "empty, and the system store cannot be loaded: " + ec.message());
  }
  if (s.client_certificate_file.empty()) return;
  require_readable("client_certificate_file", s.client_certificate_file);
  require_readable("client_private_key_file", s.client_private_key_file);
  require_owner_only("client_private_key_file", s.client_private_key_file);
  ctx.use_certificate_chain_file(s.client_certificate_file, ec);
  if (ec) refuse("client_certificate_file", "not a PEM certificate chain: " + ec.message());
  ctx.use_private_key_file(s.client_private_key_file, ssl::context::pem, ec);
  if (ec) {
    refuse("client_private_key_file", "not an unencrypted PEM private key: " + ec.message());
  }
  if (SSL_CTX_check_private_key(native) != 1) {
    refuse("client_private_key_file", "does not match client_certificate_file");
  }
}

namespace {
// notAfter of the context's client certificate, ms since the epoch.
std::optional<std::int64_t> certificate_not_after_ms(ssl::context& ctx) {
  X509* cert = SSL_CTX_get0_certificate(ctx.native_handle());
  if (cert == nullptr) return std::nullopt;
  std::tm tm{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1) return std::nullopt;
  return static_cast<std::int64_t>(timegm(&tm)) * 1000;
}
}  // namespace

Credentials::~Credentials() {
  OPENSSL_cleanse(authorization.data(), authorization.size());
}

std::shared_ptr<const Credentials> load_credentials(const ClientSettings& s) {
  auto c = std::make_shared<Credentials>();
  c->tls = std::make_shared<ssl::context>(ssl::context::tls_client);
  configure_tls(*c->tls, s);
  c->authorization = read_authorization(s);
  c->loaded_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  if (!s.client_certificate_file.empty())
    c->certificate_not_after_ms = certificate_not_after_ms(*c->tls);
  return c;
}

std::string integration_metadata(const ClientSettings& s) {
  // Both values are validated token text: no JSON escaping needed.
  return R"({"integrator":"kpay-)" + s.user_agent + R"(","version":")" + s.version + R"("})";
}

}  // namespace kpay::klarna::detail
