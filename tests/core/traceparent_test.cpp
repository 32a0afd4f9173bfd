// W3C traceparent values: parsing, new traces, child spans.
#include "kpay/core/traceparent.hpp"

#include <gtest/gtest.h>

#include <set>

using namespace kpay::core;

namespace {
const std::string kKlarna = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
}

TEST(Traceparent, AcceptsTheSpecExampleAndRefusesMalformedValues) {
  EXPECT_TRUE(valid_traceparent(kKlarna));
  EXPECT_TRUE(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"));
  // A later version may append fields after a '-'.
  EXPECT_TRUE(valid_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz"));
  for (std::string bad : {
           std::string(), std::string("garbage"),
           std::string("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-"),  // 00 + more
           std::string("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),   // version ff
           std::string("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),   // upper case
           std::string("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),   // zero trace
           std::string("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),   // zero span
           std::string("00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01"),   // separator
           std::string("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01"),   // not hex
           std::string("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"),  // no '-'
       }) {
    EXPECT_FALSE(valid_traceparent(bad)) << bad;
    EXPECT_TRUE(trace_id_of(bad).empty()) << bad;
  }
  EXPECT_EQ(trace_id_of(kKlarna), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(span_id_of(kKlarna), "00f067aa0ba902b7");
}

TEST(Traceparent, NewTracesAreValidSampledAndDistinct) {
  std::set<std::string> traces, spans;
  for (int i = 0; i < 1000; ++i) {
    const auto tp = new_traceparent();
    ASSERT_TRUE(valid_traceparent(tp)) << tp;
    EXPECT_EQ(tp.substr(0, 3), "00-");
    EXPECT_EQ(tp.substr(53), "01");
    traces.emplace(trace_id_of(tp));
    spans.emplace(span_id_of(tp));
  }
  EXPECT_EQ(traces.size(), 1000u);
  EXPECT_EQ(spans.size(), 1000u);
}

TEST(Traceparent, AChildKeepsTheTraceIdWithANewSpan) {
  const auto child = child_traceparent(kKlarna);
  ASSERT_TRUE(valid_traceparent(child)) << child;
  EXPECT_EQ(trace_id_of(child), trace_id_of(kKlarna));
  EXPECT_NE(span_id_of(child), span_id_of(kKlarna));
  EXPECT_EQ(child.substr(53), "01");
  // An invalid parent starts a new trace.
  const auto fresh = child_traceparent("00-nonsense");
  ASSERT_TRUE(valid_traceparent(fresh));
  EXPECT_NE(trace_id_of(fresh), trace_id_of(kKlarna));
  EXPECT_EQ(traceparent_or_new(kKlarna), kKlarna);
  EXPECT_TRUE(valid_traceparent(traceparent_or_new("")));
}
