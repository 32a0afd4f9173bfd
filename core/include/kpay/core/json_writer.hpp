// A minimal streaming JSON writer for the shapes we emit (logs, error bodies,
// API responses, Kafka state-change messages). Parsing is simdjson's job.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kpay::core {

// Appends `s` as a JSON string literal (with quotes), escaping control
// characters, quotes and backslashes. Valid UTF-8 is copied as is; each byte
// of an invalid sequence becomes U+FFFD, so the output is always valid JSON.
void append_json_string(std::string& out, std::string_view s);

class JsonWriter {
 public:
  JsonWriter& begin_object();
  JsonWriter& end_object();
  JsonWriter& begin_array();
  JsonWriter& end_array();
  JsonWriter& key(std::string_view k);
  JsonWriter& value(std::string_view v);
  JsonWriter& value(const char* v) { return value(std::string_view(v)); }
  JsonWriter& value(const std::string& v) { return value(std::string_view(v)); }
  JsonWriter& value(std::int64_t v);
  JsonWriter& value(std::uint64_t v);
  JsonWriter& value(int v) { return value(static_cast<std::int64_t>(v)); }
  JsonWriter& value(unsigned v) { return value(static_cast<std::uint64_t>(v)); }
  JsonWriter& value(double v);
  JsonWriter& value(bool v);
  JsonWriter& null();
  // Inserts already-serialized JSON verbatim.
  JsonWriter& raw(std::string_view json);

  template <class T>
  JsonWriter& field(std::string_view k, const T& v) {
    key(k);
    return value(v);
  }

  // Room for `bytes` of output at once (when the caller knows about how long
  // it will be), instead of growing step by step.
  JsonWriter& reserve(std::size_t bytes) {
    out_.reserve(bytes);
    return *this;
  }

  const std::string& str() const { return out_; }
  std::string take() { return std::move(out_); }

 private:
  void separate();
  std::string out_;
  bool need_comma_ = false;
};

}  // namespace kpay::core
