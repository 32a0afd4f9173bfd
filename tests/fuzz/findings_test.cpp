// The fuzz targets' entry points in the normal suite: the receiver's
// socket-free request reading (receiver/src/http_request.hpp) and the API
// client's answer reading (klarna/src/api_client_response.hpp), which the
// fuzz targets drive with raw bytes; then every fuzz finding, each with its
// minimized input (docs/RELIABILITY.md, "Fuzzing").
#include <gtest/gtest.h>

#include <boost/beast/http/error.hpp>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "api_client_response.hpp"
#include "http_request.hpp"
#include "kpay/core/log.hpp"
#include "kpay/processor/events.hpp"

using namespace kpay;
namespace http = boost::beast::http;

namespace {

struct Parsed {
  boost::system::error_code error;
  bool complete = false;
  std::string framing;
  receiver::http_request::Parser parser;
};

// The receiver's reading of one request from `wire`, delivered `chunk` bytes at a time.
void parse(std::string_view wire, std::size_t chunk, Parsed& out,
           std::size_t max_header = 16 * 1024, std::uint64_t max_body = 1024 * 1024) {
  using receiver::http_request::Stage;
  receiver::http_request::apply_limits(out.parser, max_header, max_body);
  boost::beast::flat_buffer buffer;
  std::size_t pos = 0;
  Stage stage = Stage::header;
  for (;;) {
    const auto fed = receiver::http_request::feed(out.parser, buffer, stage);
    if (fed.error) {
      out.error = fed.error;
      return;
    }
    if (fed.reached && stage == Stage::header) {
      out.framing = receiver::http_request::framing_error(out.parser);
      if (!out.framing.empty()) return;
      stage = Stage::complete;
      continue;
    }
    if (fed.reached) {
      out.complete = true;
      return;
    }
    if (pos == wire.size()) return;
    const std::size_t n = std::min(chunk, wire.size() - pos);
    std::memcpy(buffer.prepare(n).data(), wire.data() + pos, n);
    buffer.commit(n);
    pos += n;
  }
}

constexpr std::string_view kRequest =
    "POST /webhooks/klarna?x=1 HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n"
    "klarna-signing-key-id: kid\r\nKlarna-Signature: abc\r\nKlarna-Signature: second\r\n"
    "Content-Length: 2\r\n\r\n{}";

}  // namespace

TEST(ReceiverRequestReading, TheSameRequestWhateverTheReadSizes) {
  for (std::size_t chunk : {std::size_t{1}, std::size_t{3}, std::size_t{17}, kRequest.size()}) {
    SCOPED_TRACE(chunk);
    Parsed p;
    parse(kRequest, chunk, p);
    ASSERT_FALSE(p.error) << p.error.message();
    ASSERT_TRUE(p.complete);
    const auto in = receiver::http_request::incoming(p.parser.get());
    EXPECT_EQ(in.method, "POST");
    EXPECT_EQ(in.path, "/webhooks/klarna");
    EXPECT_EQ(in.signing_key_id, "kid");
    EXPECT_EQ(in.signature, "abc");  // the first of a repeated header
    EXPECT_EQ(in.content_type, "application/json");
    EXPECT_EQ(in.body, "{}");
  }
}

TEST(ReceiverRequestReading, AmbiguousFramingIsRefused) {
  struct Case {
    std::string wire, reason;
  };
  const Case cases[] = {
      {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
       "Transfer-Encoding is not allowed in HTTP/1.0"},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
       "Transfer-Encoding must end with chunked"},
  };
  for (const auto& c : cases) {
    Parsed p;
    parse(c.wire, c.wire.size(), p);
    EXPECT_EQ(p.framing, c.reason) << c.wire;
  }
  // Beast refuses this one itself (a 400 malformed_request).
  Parsed both;
  parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 64, both);
  EXPECT_TRUE(both.error);
}

TEST(ReceiverRequestReading, ReadErrorsAreAnsweredByKind) {
  using Kind = receiver::http_request::ReadFailure::Kind;
  using receiver::http_request::classify_read_error;
  Parsed big;
  parse("POST / HTTP/1.1\r\nContent-Length: 2000\r\n\r\n", 64, big, 16 * 1024, 1000);
  ASSERT_EQ(big.error, http::error::body_limit);
  auto f = classify_read_error(big.error, 1000);
  EXPECT_EQ(f.kind, Kind::answered);
  EXPECT_EQ(f.status, 413);
  EXPECT_EQ(f.reason, "body_too_large");
  EXPECT_EQ(f.message, "the body exceeds 1000 bytes");

  Parsed header;
  parse("POST / HTTP/1.1\r\nX: " + std::string(600, 'a') + "\r\n\r\n", 64, header, 512, 1000);
  EXPECT_EQ(classify_read_error(header.error, 1000).status, 431);

  Parsed garbage;
  parse("NOT HTTP AT ALL\r\n\r\n", 64, garbage);
  f = classify_read_error(garbage.error, 1000);
  EXPECT_EQ(f.status, 400);
  EXPECT_EQ(f.reason, "malformed_request");

  EXPECT_EQ(classify_read_error(http::error::partial_message, 1).kind, Kind::client_left);
  EXPECT_EQ(classify_read_error(boost::beast::error::timeout, 1).kind, Kind::timeout);
}

TEST(ApiAnswerReading, ARateLimitedAnswer) {
  std::string_view wire =
      "HTTP/1.1 429 Too Many Requests\r\nX-Ratelimit-Reset: 2.5\r\nRetry-After: 9\r\n"
      "Klarna-Correlation-Id: c-1\r\nContent-Length: 47\r\n\r\n"
      R"({"error_type":"ACCESS_ERROR","error_code":"RL"})";
  klarna::detail::ResponseParser parser;
  klarna::detail::apply_response_limits(parser);
  boost::system::error_code ec;
  while (!wire.empty() && !ec && !parser.is_done()) {  // the header, then the body
    wire.remove_prefix(parser.put(boost::asio::buffer(wire.data(), wire.size()), ec));
  }
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_TRUE(parser.is_done());
  const auto a = klarna::detail::to_answer(parser.release());
  EXPECT_EQ(a.status, 429);
  EXPECT_EQ(a.disposition, klarna::Disposition::retryable);
  EXPECT_EQ(a.klarna_correlation_id, "c-1");
  ASSERT_TRUE(a.error);
  EXPECT_EQ(a.error->error_code, "RL");
  EXPECT_EQ(a.retry_after, std::chrono::milliseconds(2500));
}

// ---- findings ---------------------------------------------------------------------

// Finding 1 (fuzz_events): parse_rfc3339_ms read each field with from_chars,
// which takes a sign: "T-1:00:00Z" was hour -1, an hour before midnight, and
// "12:01:-0" a time; a malformed occurred_at or deadline was used as a time
// instead of making the event poison.
TEST(FuzzFindings, Rfc3339FieldsAreDigitsOnly) {
  using processor::parse_rfc3339_ms;
  for (std::string_view bad :
       {"2025-02-28T12:01:-0.123+01:00", "2025-02-28T-1:00:00Z", "2025-02-28T12:-1:00Z",
        "2025-02-28T12:00:00+-1:00", "-025-02-28T12:00:00Z", "2025-+2-28T12:00:00Z"}) {
    EXPECT_EQ(parse_rfc3339_ms(bad), std::nullopt) << bad;
  }
  EXPECT_EQ(parse_rfc3339_ms("2025-02-28T12:00:00.123+01:00"), 1740740400123);

  const auto decoded = processor::decode_event(
      R"({"metadata":{"event_id":"e1","event_type":"payment.request.state-change.authorized",)"
      R"("event_version":"v1","occurred_at":"2025-02-28T-1:00:00Z"},)"
      R"("payload":{"payment_request_id":"pr1"}})",
      false);
  ASSERT_TRUE(std::holds_alternative<processor::Poison>(decoded));
  EXPECT_EQ(std::get<processor::Poison>(decoded).reason, "bad_occurred_at");
}

// Finding 2 (fuzz_events, its round-trip property): core::rfc3339_ms divided
// toward zero, so a time before 1970 with milliseconds came out as
// "1970-01-01T00:00:00.-01Z" (-1 ms): not RFC 3339, in whatever message
// rendered it (payment states, command results, klarnactl).
TEST(FuzzFindings, TimesBefore1970FormatAsRfc3339) {
  EXPECT_EQ(core::rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(core::rfc3339_ms(-1000), "1969-12-31T23:59:59.000Z");
  EXPECT_EQ(core::rfc3339_ms(-27'288'791'999'850), "1105-04-03T12:00:00.150Z");
  const auto ms = processor::parse_rfc3339_ms("1112-02-28T12:00:00.15z");
  ASSERT_TRUE(ms);
  EXPECT_EQ(core::rfc3339_ms(*ms), "1112-02-28T12:00:00.150Z");
  EXPECT_EQ(processor::parse_rfc3339_ms(core::rfc3339_ms(*ms)), ms);
}

// Finding 3 (fuzz_events, its property that a UTC timestamp reads back as
// written): parse_rfc3339_ms took any day up to 31 in any month, so
// "2025-02-29" was March 1st and "2025-04-31" May 1st.
TEST(FuzzFindings, Rfc3339DayMustExistInItsMonth) {
  using processor::parse_rfc3339_ms;
  for (std::string_view bad : {"2025-02-29T12:24:00Z", "2025-04-31T00:00:00Z",
                               "1900-02-29T00:00:00Z", "2024-02-30T00:00:00Z"}) {
    EXPECT_EQ(parse_rfc3339_ms(bad), std::nullopt) << bad;
  }
  for (std::string_view good : {"2024-02-29T00:00:00Z", "2000-02-29T00:00:00Z",
                                "2025-01-31T00:00:00Z", "2025-12-31T23:59:59.999Z"}) {
    EXPECT_NE(parse_rfc3339_ms(good), std::nullopt) << good;
  }
  const auto decoded = processor::decode_event(
      R"({"metadata":{"event_id":"e1","event_type":"payment.request.state-change.authorized",)"
      R"("event_version":"v1","occurred_at":"2025-02-29T12:24:00Z"},)"
      R"("payload":{"payment_request_id":"pr1"}})",
      false);
  ASSERT_TRUE(std::holds_alternative<processor::Poison>(decoded));
  EXPECT_EQ(std::get<processor::Poison>(decoded).reason, "bad_occurred_at");
}
