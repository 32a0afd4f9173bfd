#include "kpay/core/log.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <stdexcept>

#include "kpay/core/json_writer.hpp"

namespace kpay::core {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::info)};
std::atomic<int> g_fd{2};

constexpr std::string_view level_name(LogLevel l) {
  switch (l) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warn: return "warn";
    case LogLevel::error: return "error";
  }
  return "info";
}
}  // namespace

LogLevel parse_log_level(std::string_view name) {
  if (name == "debug") return LogLevel::debug;
  if (name == "info") return LogLevel::info;
  if (name == "warn") return LogLevel::warn;
  if (name == "error") return LogLevel::error;
  throw std::invalid_argument("must be one of debug, info, warn, error");
}

void set_log_level(LogLevel level) { g_level.store(static_cast<int>(level)); }
void set_log_fd(int fd) { g_fd.store(fd); }

std::string rfc3339_ms(std::int64_t unix_millis) {
  // Floor division: before 1970 the millisecond part counts up from the
  // earlier second (-1 ms is 23:59:59.999 of 1969-12-31, not "00:00:00.-01";
  // found by fuzzing).
  std::int64_t whole = unix_millis / 1000;
  int ms = static_cast<int>(unix_millis % 1000);
  if (ms < 0) {
    ms += 1000;
    whole -= 1;
  }
  std::time_t secs = static_cast<std::time_t>(whole);
  if (unix_millis < 0) {  // rare: no cache, same format
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[80];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    return buf;
  }
  // Every received webhook is stamped: formatting the date (gmtime_r and
  // snprintf) was ~3% of an I/O thread, and it changes once a second.
  thread_local std::time_t cached_secs = -1;
  thread_local char date[64];
  thread_local int date_len = 0;
  if (secs != cached_secs) {
    std::tm tm{};
    gmtime_r(&secs, &tm);
    date_len = std::snprintf(date, sizeof date, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    cached_secs = secs;
  }
  std::string out;
  out.reserve(static_cast<std::size_t>(date_len) + 5);
  out.append(date, static_cast<std::size_t>(date_len));
  out.push_back('.');
  out.push_back(static_cast<char>('0' + ms / 100));
  out.push_back(static_cast<char>('0' + ms / 10 % 10));
  out.push_back(static_cast<char>('0' + ms % 10));
  out.push_back('Z');
  return out;
}

std::string rfc3339_now_ms() {
  auto now = std::chrono::system_clock::now();
  return rfc3339_ms(
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count());
}

bool Logger::enabled(LogLevel level) const {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

std::string Logger::format(LogLevel level, std::string_view message,
                           std::initializer_list<LogField> fields) const {
  JsonWriter w;
  w.begin_object()
      .field("time", rfc3339_now_ms())
      .field("level", level_name(level))
      .field("component", component_)
      .field("message", message);
  if (fields.size() > 0) {
    w.key("fields").begin_object();
    for (const auto& f : fields) {
      w.key(f.key);
      std::visit([&](const auto& v) { w.value(v); }, f.value);
    }
    w.end_object();
  }
  w.end_object();
  return w.take();
}

void Logger::log(LogLevel level, std::string_view message,
                 std::initializer_list<LogField> fields) const {
  if (!enabled(level)) return;
  std::string line = format(level, message, fields);
  line.push_back('\n');
  const char* p = line.data();
  size_t left = line.size();
  int fd = g_fd.load(std::memory_order_relaxed);
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n <= 0) return;  // nowhere to report a failing log sink
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace kpay::core
