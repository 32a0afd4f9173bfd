// Request-smuggling shapes against the running receiver over raw TLS sockets.
// Every request below carries a valid signature over the body the receiver
// would see if it accepted the framing, so a wrongly accepted one would be
// answered 200 and land on Kafka. Each must be answered 400 and closed,
// counted as malformed_request, and nothing may reach any topic.
#include <gtest/gtest.h>

#include "kafka_reader.hpp"
#include "security_support.hpp"

using namespace kpay::test;
using namespace kpay::test::security;

namespace {

struct Case {
  std::string name;
  std::string bytes;
};

std::string head(const std::string& body, const std::string& lines, const char* version = "1.1") {
  return std::string("POST /webhooks/klarna HTTP/") + version + "\r\nHost: 127.0.0.1\r\n" +
         signed_headers(body) + lines + "\r\n";
}

std::string chunked(const std::string& body) {
  char size[32];
  std::snprintf(size, sizeof size, "%zx", body.size());
  return std::string(size) + "\r\n" + body + "\r\n0\r\n\r\n";
}

std::string length(const std::string& body) {
  return "Content-Length: " + std::to_string(body.size()) + "\r\n";
}

std::vector<Case> smuggling_cases() {
  const std::string b = webhook("smuggle-1");
  const std::string n = std::to_string(b.size());
  return {
      {"CL then TE", head(b, length(b) + "Transfer-Encoding: chunked\r\n") + chunked(b)},
      {"TE then CL", head(b, "Transfer-Encoding: chunked\r\n" + length(b)) + chunked(b)},
      {"CL twice, equal", head(b, length(b) + length(b)) + b},
      {"CL twice, different", head(b, length(b) + "Content-Length: 5\r\n") + b},
      {"CL as a list", head(b, "Content-Length: " + n + ", " + n + "\r\n") + b},
      {"CL with a sign", head(b, "Content-Length: +" + n + "\r\n") + b},
      {"obs-fold in an extension header", head(b, length(b) + "X-Note: a\r\n b\r\n") + b},
      {"obs-fold of Transfer-Encoding", head(b, "Transfer-Encoding:\r\n chunked\r\n") + chunked(b)},
      {"obs-fold with a tab", head(b, length(b) + "X-Note: a\r\n\tb\r\n") + b},
      {"NUL in a value", head(b, length(b) + std::string("X-Note: a\0b\r\n", 12)) + b},
      {"CR alone in a value", head(b, length(b) + "X-Note: a\rb\r\n") + b},
      {"LF alone ends a line", head(b, length(b) + "X-Note: a\nX-Other: b\r\n") + b},
      {"high byte in a name", head(b, length(b) + "X-N\xe9: a\r\n") + b},
      {"space before the colon", head(b, "Content-Length : " + n + "\r\n") + b},
      {"chunk size not hex", head(b, "Transfer-Encoding: chunked\r\n") + "zz\r\n" + b + "\r\n0\r\n\r\n"},
      {"chunk size negative", head(b, "Transfer-Encoding: chunked\r\n") + "-1\r\n" + b + "\r\n0\r\n\r\n"},
      {"chunk size 0x-prefixed", head(b, "Transfer-Encoding: chunked\r\n") + "0x10\r\n" + b + "\r\n0\r\n\r\n"},
      {"chunk size overflows", head(b, "Transfer-Encoding: chunked\r\n") + "10000000000000000\r\n" + b + "\r\n0\r\n\r\n"},
      {"chunk longer than its size", head(b, "Transfer-Encoding: chunked\r\n") + "5\r\n" + b + "\r\n0\r\n\r\n"},
      {"TE gzip, chunked", head(b, "Transfer-Encoding: gzip, chunked\r\n") + chunked(b)},
      {"TE identity", head(b, "Transfer-Encoding: identity\r\n" + length(b)) + b},
      {"TE identity alone", head(b, "Transfer-Encoding: identity\r\n") + b},
      {"TE twice, identity then chunked",
       head(b, "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n") + chunked(b)},
      {"TE chunked, chunked", head(b, "Transfer-Encoding: chunked, chunked\r\n") + chunked(chunked(b))},
      {"TE on HTTP/1.0", head(b, "Transfer-Encoding: chunked\r\n", "1.0") + chunked(b)},
  };
}

}  // namespace

TEST(ReceiverSmuggling, EveryAmbiguousFramingIs400ClosedCountedAndNeverPublished) {
  ReceiverProcess r;
  ASSERT_NE(r.port(), 0);
  KafkaReader reader(shared_kafka().bootstrap_servers(), r.topic_names(), 1);
  const auto cases = smuggling_cases();
  const double before = r.metric("receiver_rejections_total{reason=\"malformed_request\"}");
  for (const auto& c : cases) {
    HttpConnection conn(r.port(), true, std::chrono::seconds(5));
    conn.send_raw(c.bytes);
    auto response = conn.read_response();
    ASSERT_TRUE(response) << c.name << ": no answer";
    EXPECT_EQ(response->status, 400) << c.name << ": " << response->body;
    EXPECT_NE(response->body.find("malformed_request"), std::string::npos) << c.name;
    EXPECT_EQ(response->header("connection"), "close") << c.name;
    EXPECT_TRUE(conn.wait_closed(std::chrono::seconds(5))) << c.name << ": connection left open";
  }
  const double after = r.metric("receiver_rejections_total{reason=\"malformed_request\"}");
  EXPECT_EQ(after - before, static_cast<double>(cases.size()));
  EXPECT_TRUE(reader.drain(std::chrono::milliseconds(500)).empty())
      << "a smuggled request reached Kafka: " << reader.messages().front().value;

  // Control: the same body, framed plainly, is accepted and lands on Kafka,
  // so the silence above is the receiver's refusal, not a broken reader.
  const std::string b = webhook("smuggle-1");
  HttpConnection conn(r.port(), true);
  conn.send_raw(head(b, length(b)) + b);
  auto ok = conn.read_response();
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
  EXPECT_EQ(reader.read_at_least(1, std::chrono::seconds(10)).size(), 1u);
  // Chunked alone (any letter case) is legitimate.
  HttpConnection conn2(r.port(), true);
  conn2.send_raw(head(b, "Transfer-Encoding: Chunked\r\n") + chunked(b));
  auto ok2 = conn2.read_response();
  ASSERT_TRUE(ok2);
  EXPECT_EQ(ok2->status, 200) << ok2->body;
}
