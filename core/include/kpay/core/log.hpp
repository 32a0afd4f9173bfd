// Structured logs: one JSON object per line on stderr (journald and any log
// shipper take it as is):
//   {"time":"2026-11-21T23:10:00.123Z","level":"info","component":"receiver",
//    "message":"event published","fields":{"event_id":"…","topic":"…"}}
// A line is written with a single write(2), so lines from threads never interleave.
// Never pass a secret as a field: nothing here can tell a secret from a value.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <variant>

namespace kpay::core {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3 };

// Throws std::invalid_argument for a name other than debug/info/warn/error.
LogLevel parse_log_level(std::string_view name);
void set_log_level(LogLevel level);
// Redirect log lines to a file descriptor (default 2, stderr).
void set_log_fd(int fd);

struct LogField {
  using Value = std::variant<std::string_view, std::int64_t, std::uint64_t, double, bool>;
  LogField(std::string_view k, std::string_view v) : key(k), value(v) {}
  LogField(std::string_view k, const std::string& v) : key(k), value(std::string_view(v)) {}
  LogField(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
  LogField(std::string_view k, int v) : key(k), value(static_cast<std::int64_t>(v)) {}
  LogField(std::string_view k, long v) : key(k), value(static_cast<std::int64_t>(v)) {}
  LogField(std::string_view k, long long v) : key(k), value(static_cast<std::int64_t>(v)) {}
  LogField(std::string_view k, unsigned v) : key(k), value(static_cast<std::uint64_t>(v)) {}
  LogField(std::string_view k, unsigned long v) : key(k), value(static_cast<std::uint64_t>(v)) {}
  LogField(std::string_view k, unsigned long long v)
      : key(k), value(static_cast<std::uint64_t>(v)) {}
  LogField(std::string_view k, double v) : key(k), value(v) {}
  LogField(std::string_view k, bool v) : key(k), value(v) {}
  std::string_view key;
  Value value;
};

class Logger {
 public:
  explicit Logger(std::string component) : component_(std::move(component)) {}

  void log(LogLevel level, std::string_view message,
           std::initializer_list<LogField> fields = {}) const;
  void debug(std::string_view m, std::initializer_list<LogField> f = {}) const {
    log(LogLevel::debug, m, f);
  }
  void info(std::string_view m, std::initializer_list<LogField> f = {}) const {
    log(LogLevel::info, m, f);
  }
  void warn(std::string_view m, std::initializer_list<LogField> f = {}) const {
    log(LogLevel::warn, m, f);
  }
  void error(std::string_view m, std::initializer_list<LogField> f = {}) const {
    log(LogLevel::error, m, f);
  }
  bool enabled(LogLevel level) const;

  // The line that log() would write (without the newline); exposed for tests.
  std::string format(LogLevel level, std::string_view message,
                     std::initializer_list<LogField> fields) const;

 private:
  std::string component_;
};

// RFC 3339 UTC timestamp with milliseconds, e.g. 2026-11-21T23:10:00.123Z.
std::string rfc3339_now_ms();
std::string rfc3339_ms(std::int64_t unix_millis);

}  // namespace kpay::core
