#include <gtest/gtest.h>

#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"
#include "kpay/core/metrics.hpp"

using namespace kpay::core;

TEST(JsonWriter, EscapesAndNests) {
  JsonWriter w;
  w.begin_object().field("s", std::string_view("a\"b\\c\n\x01")).field("n", std::int64_t{-5});
  w.key("arr").begin_array().value(true).null().value(1.5).end_array().end_object();
  EXPECT_EQ(w.str(), R"({"s":"a\"b\\c\n\u0001","n":-5,"arr":[true,null,1.5]})");
}

TEST(Log, OneJsonObjectWithFields) {
  Logger log("receiver");
  auto line = log.format(LogLevel::warn, "rejected", {{"reason", "bad_signature"}, {"status", 400}});
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_NE(line.find(R"("level":"warn")"), std::string::npos);
  EXPECT_NE(line.find(R"("component":"receiver")"), std::string::npos);
  EXPECT_NE(line.find(R"("message":"rejected")"), std::string::npos);
  EXPECT_NE(line.find(R"("fields":{"reason":"bad_signature","status":400})"), std::string::npos);
  EXPECT_EQ(line.find(R"("time":")"), 1u);
}

TEST(Log, LevelParsing) {
  EXPECT_EQ(parse_log_level("debug"), LogLevel::debug);
  EXPECT_THROW(parse_log_level("verbose"), std::invalid_argument);
}

TEST(Log, Rfc3339Millis) {
  EXPECT_EQ(rfc3339_ms(1700000000123), "2023-11-14T22:13:20.123Z");
  // The date part is cached per second: same second, next second, and back.
  EXPECT_EQ(rfc3339_ms(1700000000005), "2023-11-14T22:13:20.005Z");
  EXPECT_EQ(rfc3339_ms(1700000001999), "2023-11-14T22:13:21.999Z");
  EXPECT_EQ(rfc3339_ms(1700000000040), "2023-11-14T22:13:20.040Z");
  EXPECT_EQ(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(rfc3339_ms(1767225599999), "2025-12-31T23:59:59.999Z");
  EXPECT_EQ(rfc3339_ms(1767225600000), "2026-01-01T00:00:00.000Z");
}

TEST(Metrics, RendersPrometheusText) {
  Registry r;
  auto& req = r.counter("kr_requests_total", "Requests by outcome.", {"outcome"});
  req.with({"accepted"}).inc(3);
  req.with({"rejected"}).inc();
  r.gauge("kr_in_flight", "In flight.").with({}).set(2);
  auto& h = r.histogram("kr_latency_seconds", "Latency.", {}, {0.01, 0.1});
  h.with({}).observe(0.005);
  h.with({}).observe(0.05);
  h.with({}).observe(5);
  r.gauge_callback("kr_lag", "Lag.", {"partition"}, [] {
    return std::vector<GaugeSample>{{{"0"}, 7}};
  });
  auto text = r.render();
  EXPECT_NE(text.find("# TYPE kr_requests_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("kr_requests_total{outcome=\"accepted\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("kr_requests_total{outcome=\"rejected\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("kr_in_flight 2\n"), std::string::npos);
  EXPECT_NE(text.find("kr_latency_seconds_bucket{le=\"0.01\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("kr_latency_seconds_bucket{le=\"0.1\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("kr_latency_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("kr_latency_seconds_count 3\n"), std::string::npos);
  EXPECT_NE(text.find("kr_lag{partition=\"0\"} 7\n"), std::string::npos);
}

TEST(Metrics, WrongLabelCountThrows) {
  Registry r;
  auto& c = r.counter("x_total", "x", {"a", "b"});
  EXPECT_THROW(c.with({"only-one"}), std::invalid_argument);
}

TEST(Metrics, LabelValuesAreEscaped) {
  Registry r;
  r.counter("x_total", "x", {"a"}).with({"q\"\\"}).inc();
  EXPECT_NE(r.render().find(R"(x_total{a="q\"\\"} 1)"), std::string::npos);
}

TEST(JsonWriter, InvalidUtf8BecomesReplacementCharacter) {
  std::string out;
  append_json_string(out, std::string("ok \xC3\xA9 \xF0\x9F\x98\x80 bad \xFF\xC0\x80 \xED\xA0\x80 end"));
  EXPECT_EQ(out, "\"ok \xC3\xA9 \xF0\x9F\x98\x80 bad \\ufffd\\ufffd\\ufffd \\ufffd\\ufffd\\ufffd end\"");
}

// Plain runs are appended whole: escapes at either end, back to back, and a
// string with none must come out as a character-by-character writer made them.
TEST(JsonWriter, PlainRunsAndEscapesAtTheEdges) {
  std::string out;
  append_json_string(out, std::string_view("\"a\"\"\\\x1f"
                                           "b\x7f\n"));
  EXPECT_EQ(out, "\"\\\"a\\\"\\\"\\\\\\u001fb\x7f\\n\"");
  out.clear();
  append_json_string(out, std::string(300, 'k'));
  EXPECT_EQ(out, "\"" + std::string(300, 'k') + "\"");
  out.clear();
  append_json_string(out, "");
  EXPECT_EQ(out, "\"\"");
}
