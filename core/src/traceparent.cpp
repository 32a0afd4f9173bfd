#include "kpay/core/traceparent.hpp"

#include <array>
#include <cstdint>
#include <random>

namespace kpay::core {

namespace {

constexpr std::size_t kLength = 55;  // 2 + 1 + 32 + 1 + 16 + 1 + 2

bool lower_hex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool all_zeros(std::string_view s) {
  return s.find_first_not_of('0') == std::string_view::npos;
}

// splitmix64 over a per-thread seed from the OS: cheap (no lock, no
// syscall per id) and well distributed; ids are not secrets.
std::uint64_t next_random() {
  thread_local std::uint64_t state = [] {
    std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  }();
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// 16 lower-case hex digits, appended at once (a push_back per digit cost
// ~1k instructions per new trace context).
void append_hex(std::string& out, std::uint64_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::array<char, 16> digits;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    digits[i] = kDigits[(v >> (60 - 4 * i)) & 0xf];
  }
  out.append(digits.data(), digits.size());
}

void append_span_id(std::string& out) {
  std::uint64_t span = next_random();
  if (span == 0) span = 1;
  append_hex(out, span);
}

}  // namespace

bool valid_traceparent(std::string_view v) {
  if (v.size() < kLength || v[2] != '-' || v[35] != '-' || v[52] != '-') return false;
  const auto version = v.substr(0, 2);
  if (!lower_hex(version) || version == "ff") return false;
  if (version == "00" ? v.size() != kLength : (v.size() > kLength && v[kLength] != '-')) {
    return false;
  }
  const auto trace = v.substr(3, 32), span = v.substr(36, 16), flags = v.substr(53, 2);
  return lower_hex(trace) && lower_hex(span) && lower_hex(flags) && !all_zeros(trace) &&
         !all_zeros(span);
}

std::string new_traceparent() {
  std::string out;
  out.reserve(kLength);
  out.append("00-");
  std::uint64_t hi = next_random(), lo = next_random();
  if (hi == 0 && lo == 0) lo = 1;
  append_hex(out, hi);
  append_hex(out, lo);
  out.push_back('-');
  append_span_id(out);
  out.append("-01");
  return out;
}

std::string child_traceparent(std::string_view parent) {
  if (!valid_traceparent(parent)) return new_traceparent();
  std::string out;
  out.reserve(kLength);
  out.append("00-").append(parent.substr(3, 32)).push_back('-');
  append_span_id(out);
  out.append("-01");
  return out;
}

std::string traceparent_or_new(std::string_view value) {
  if (valid_traceparent(value)) return std::string(value.substr(0, kLength));
  return new_traceparent();
}

std::string_view trace_id_of(std::string_view tp) {
  return valid_traceparent(tp) ? tp.substr(3, 32) : std::string_view();
}

std::string_view span_id_of(std::string_view tp) {
  return valid_traceparent(tp) ? tp.substr(36, 16) : std::string_view();
}

}  // namespace kpay::core
