#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "kpay/klarna/envelope.hpp"
#include "kpay/klarna/signature.hpp"

using namespace kpay::klarna;

namespace {
// The test vector from docs/klarna/WEBHOOKS.md §1.
constexpr std::string_view kKey = "example-signing-key-NOT-REAL";
constexpr std::string_view kBody =
    R"({"metadata":{"event_type":"payment.request.state-change.completed","event_id":"00000000-0000-4000-8000-000000000000","event_version":"v2"},"payload":{"state":"COMPLETED"}})";
constexpr std::string_view kSig =
    "09259eb5ff0e54a1f2a8f57ccc10f4e5d35800b056696a11071ce4e3d549d83f";
}  // namespace

TEST(Signature, DocumentedTestVector) {
  ASSERT_EQ(kBody.size(), 171u);
  EXPECT_EQ(hmac_sha256_hex(kKey, kBody), kSig);
  SigningKey key(kKey);
  EXPECT_TRUE(key.verify(kBody, kSig));
}

TEST(Signature, OneByteChangeFails) {
  SigningKey key(kKey);
  std::string body(kBody);
  body[body.size() - 3] = 'D';
  EXPECT_FALSE(key.verify(body, kSig));
  std::string sig(kSig);
  sig[10] = sig[10] == 'a' ? 'b' : 'a';
  EXPECT_FALSE(key.verify(kBody, sig));
  EXPECT_FALSE(key.verify(kBody, kSig.substr(0, 63)));
  EXPECT_FALSE(key.verify(kBody, std::string(kSig) + "0"));
  // Uppercase hex is not what Klarna sends: the comparison is exact.
  std::string upper(kSig);
  for (auto& c : upper) c = static_cast<char>(std::toupper(c));
  EXPECT_FALSE(key.verify(kBody, upper));
}

TEST(Signature, KeyIsUsedByteExact) {
  EXPECT_NE(hmac_sha256_hex(std::string(kKey) + " ", kBody), kSig);
  EXPECT_NE(hmac_sha256_hex(std::string(kKey) + "\n", kBody), kSig);
}

// Each thread reuses a working MAC context per key: a failed verification,
// interleaved keys, more keys than a thread keeps, keys destroyed and new ones
// made, and other threads must all leave every answer exact.
TEST(Signature, ReusedContextsStayExact) {
  SigningKey key(kKey);
  EXPECT_FALSE(key.verify("tampered", kSig));
  EXPECT_TRUE(key.verify(kBody, kSig));
  EXPECT_TRUE(key.verify(kBody, kSig));  // reset after a completed MAC
  std::vector<std::unique_ptr<SigningKey>> others;
  for (int i = 0; i < 20; ++i) {
    const std::string secret = "secret-" + std::to_string(i);
    others.push_back(std::make_unique<SigningKey>(secret));
    EXPECT_EQ(others.back()->sign(kBody), hmac_sha256_hex(secret, kBody));
    EXPECT_TRUE(key.verify(kBody, kSig)) << i;
  }
  others.clear();  // freed templates; the thread's copies age out
  SigningKey fresh("secret-0");
  EXPECT_EQ(fresh.sign(kBody), hmac_sha256_hex("secret-0", kBody));
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        if (!key.verify(kBody, kSig) || fresh.verify(kBody, kSig)) ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(KeyRing, FindsById) {
  KeyRing ring;
  ring.add("k1", "secret-one");
  ring.add("k2", "secret-two");
  ASSERT_NE(ring.find("k1"), nullptr);
  EXPECT_EQ(ring.find("k3"), nullptr);
  EXPECT_TRUE(ring.find("k2")->verify("x", hmac_sha256_hex("secret-two", "x")));
  EXPECT_FALSE(ring.find("k1")->verify("x", hmac_sha256_hex("secret-two", "x")));
}

TEST(Envelope, ParsesMetadataAndEntity) {
  auto r = parse_envelope(
      R"({"metadata":{"event_type":"payment.request.state-change.submitted","event_id":"e1","event_version":"v1","occurred_at":"2025-01-01T00:00:00Z","live":false,"extra":1},"payload":{"payment_request_id":"krn:payment:eu1:request:1"}})");
  ASSERT_TRUE(r) << r.error.reason;
  EXPECT_EQ(r.envelope->event_id, "e1");
  EXPECT_EQ(r.envelope->event_version, "v1");
  EXPECT_EQ(r.envelope->family, EventFamily::payment_request);
  EXPECT_EQ(r.envelope->entity_id, "krn:payment:eu1:request:1");
  EXPECT_FALSE(r.envelope->entity_id_is_fallback);
  EXPECT_EQ(r.envelope->live, false);
}

TEST(Envelope, FallsBackToEventId) {
  auto r = parse_envelope(
      R"({"metadata":{"event_type":"something.new","event_id":"e2","event_version":"v2"}})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r.envelope->family, EventFamily::unrouted);
  EXPECT_EQ(r.envelope->entity_id, "e2");
  EXPECT_TRUE(r.envelope->entity_id_is_fallback);
}

TEST(Envelope, Errors) {
  EXPECT_EQ(parse_envelope("").error.reason, "empty_body");
  EXPECT_EQ(parse_envelope("{not json").error.reason, "not_json");
  EXPECT_EQ(parse_envelope("[1]").error.reason, "not_object");
  EXPECT_EQ(parse_envelope("{}").error.reason, "missing_metadata");
  EXPECT_EQ(parse_envelope(R"({"metadata":{"event_type":"a","event_version":"v1"}})").error.reason,
            "missing_event_id");
  EXPECT_EQ(parse_envelope(R"({"metadata":{"event_id":"a","event_version":"v1"}})").error.reason,
            "missing_event_type");
  EXPECT_EQ(parse_envelope(R"({"metadata":{"event_id":"a","event_type":"x"}})").error.reason,
            "missing_event_version");
  EXPECT_EQ(parse_envelope(R"({"metadata":{"event_id":7,"event_type":"x","event_version":"v1"}})")
                .error.reason,
            "missing_event_id");
}

TEST(Envelope, Classification) {
  EXPECT_EQ(classify_event_type("payment.funding.state-change.funded"),
            EventFamily::payment_transaction);
  EXPECT_EQ(classify_event_type("payment.transaction.captured"), EventFamily::payment_transaction);
  EXPECT_EQ(classify_event_type("payment.dispute.state-change.initiated"), EventFamily::dispute);
  EXPECT_EQ(classify_event_type("settlement.payout.processed"), EventFamily::settlement);
  EXPECT_EQ(classify_event_type("partner.account.change.created"), EventFamily::account);
  EXPECT_EQ(classify_event_type("payment.requestx"), EventFamily::unrouted);
}

TEST(Topics, PrefixApplies) {
  Topics t;
  t.apply_prefix("prod.");
  EXPECT_EQ(t.for_family(EventFamily::dispute), "prod.klarna.disputes");
  EXPECT_EQ(t.dead_letter, "prod.klarna.dead-letter");
}
