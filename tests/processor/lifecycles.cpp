#include "lifecycles.hpp"

#include <algorithm>
#include <cstdio>

#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"

namespace kpay::test {

namespace {

constexpr std::int64_t kBase = 1'767'225'600'000;  // 2026-01-01T00:00:00Z

struct Builder {
  const klarna::Topics& topics;
  std::vector<TestEvent>& out;
  std::uint64_t& next_id;

  std::string uuid(std::string_view kind, int n) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%08x-0000-4000-8000-%012d", static_cast<unsigned>(n),
                  static_cast<int>(next_id % 1000000000));
    return std::string(kind) + std::string(buf);
  }

  // `payload` is the JSON object body without braces.
  void emit(const std::string& topic, const std::string& key, std::string_view type,
            std::string_view version, std::int64_t at_ms, const std::string& payload) {
    char id[64];
    std::snprintf(id, sizeof id, "00000000-%04x-4000-8000-%012llx",
                  static_cast<unsigned>(next_id >> 48),
                  static_cast<unsigned long long>(next_id & 0xffffffffffffULL));
    ++next_id;
    std::string body = R"({"metadata":{"event_type":")";
    body += type;
    body += R"(","event_id":")";
    body += id;
    body += R"(","event_version":")";
    body += version;
    body += R"(","occurred_at":")";
    body += core::rfc3339_ms(at_ms);
    body += R"(","subject_account_id":"krn:partner:global:account:test:MERCHANT1",)"
            R"("recipient_account_id":"krn:partner:global:account:test:ACQUIRER1","live":false},)"
            R"("payload":{)";
    body += payload;
    body += "}}";
    out.push_back({topic, key, std::move(body), id, std::string(type)});
  }
};

std::string q(std::string_view s) {
  std::string out;
  core::append_json_string(out, s);
  return out;
}

}  // namespace

std::vector<TestEvent> make_lifecycles(int payments, const klarna::Topics& topics,
                                       std::uint32_t seed) {
  std::vector<TestEvent> out;
  std::uint64_t next_id = static_cast<std::uint64_t>(seed) << 40;
  Builder b{topics, out, next_id};
  for (int i = 0; i < payments; ++i) {
    const std::int64_t t0 = kBase + static_cast<std::int64_t>(i) * 1000;  // entities interleave
    auto at = [&](int step) { return t0 + static_cast<std::int64_t>(step) * 60'000; };
    const std::string n = std::to_string(i);
    const std::string req = "krn:payment:eu1:request:" + b.uuid("r", i);
    const std::string txn = "krn:payment:eu1:transaction:" + b.uuid("t", i);
    const std::int64_t amount = 1000 + (i % 97) * 100;
    const std::string money = R"("amount":)" + std::to_string(amount) + R"(,"currency":"EUR")";
    const std::string ref = R"("payment_request_reference":"order-)" + n + R"(")";
    auto request = [&](std::string_view type, std::string_view v, int step, std::string_view state,
                       const std::string& extra = "") {
      std::string p = R"("payment_request_id":)" + q(req) + "," + ref + "," + money +
                      R"(,"state":")" + std::string(state) + R"(")";
      if (!extra.empty()) p += "," + extra;
      b.emit(topics.payment_requests, req, type, v, at(step), p);
    };
    auto transaction = [&](std::string_view type, int step, const std::string& extra = "") {
      std::string p = R"("payment_transaction_id":)" + q(txn);
      if (!extra.empty()) p += "," + extra;
      b.emit(topics.payment_transactions, txn, type, "v2", at(step), p);
    };
    const std::string txn_money =
        money + R"(,"payment_transaction_reference":"order-)" + n + R"(")";

    switch (i % 9) {
      case 0: {  // Gen 2/3 happy path: partial + full capture, partial refund
        request("payment.request.state-change.submitted", "v2", 0, "SUBMITTED");
        request("payment.request.state-change.in-progress", "v2", 1, "IN_PROGRESS");
        request("payment.request.state-change.completed", "v2", 2, "COMPLETED",
                R"("state_context":{"klarna_network_session_token":"kns-)" + n + R"("})");
        transaction("payment.transaction.state-change.authorized", 3,
                    txn_money + R"(,"payment_request_id":)" + q(req));
        transaction("payment.transaction.captured", 4,
                    R"("payment_capture_id":"cap-)" + n + R"(-1","amount":)" +
                        std::to_string(amount * 6 / 10) + R"(,"currency":"EUR")");
        transaction("payment.transaction.captured", 5,
                    R"("payment_capture_id":"cap-)" + n + R"(-2","amount":)" +
                        std::to_string(amount - amount * 6 / 10) + R"(,"currency":"EUR")");
        transaction("payment.transaction.state-change.completed", 6, txn_money);
        transaction("payment.transaction.refunded", 7,
                    R"("payment_refund_id":"ref-)" + n + R"(","payment_capture_id":"cap-)" + n +
                        R"(-1","amount":300,"currency":"EUR")");
        break;
      }
      case 1: {  // Gen 1 with a confirmation-token expiry, then authorized
        request("payment.request.state-change.submitted", "v1", 0, "SUBMITTED");
        request("payment.request.state-change.prepared", "v1", 1, "PREPARED");
        request("payment.request.state-change.in-progress", "v1", 2, "IN_PROGRESS");
        request("payment.request.state-change.pending-confirmation", "v1", 3,
                "PENDING_CONFIRMATION",
                R"("state_context":{"payment_confirmation_token":"pct-a-)" + n + R"("})");
        request("payment.request.state-change.submitted", "v1", 4, "SUBMITTED",
                R"("state_reason":"CONFIRMATION_TOKEN_EXPIRED")");
        request("payment.request.state-change.in-progress", "v1", 5, "IN_PROGRESS");
        request("payment.request.state-change.pending-confirmation", "v1", 6,
                "PENDING_CONFIRMATION",
                R"("state_context":{"payment_confirmation_token":"pct-b-)" + n + R"("})");
        request("payment.request.state-change.authorized", "v1", 7, "AUTHORIZED",
                R"("state_context":{"payment_transaction_id":)" + q(txn) + "}");
        transaction("payment.transaction.state-change.authorized", 8, txn_money);
        transaction("payment.transaction.captured", 9,
                    R"("payment_capture_id":"cap-)" + n + R"(","amount":)" +
                        std::to_string(amount) + R"(,"currency":"EUR")");
        transaction("payment.transaction.state-change.completed", 10, txn_money);
        transaction("payment.transaction.state-change.closed", 11, txn_money);
        break;
      }
      case 2:  // Gen 2/3 abandoned: expires
        request("payment.request.state-change.submitted", "v2", 0, "SUBMITTED");
        request("payment.request.state-change.in-progress", "v2", 1, "IN_PROGRESS");
        request("payment.request.state-change.submitted", "v2", 2, "SUBMITTED");
        request("payment.request.state-change.expired", "v2", 3, "EXPIRED");
        break;
      case 3: {  // authorized, partially captured, then the authorization expires
        request("payment.request.state-change.submitted", "v2", 0, "SUBMITTED");
        request("payment.request.state-change.in-progress", "v2", 1, "IN_PROGRESS");
        request("payment.request.state-change.completed", "v2", 2, "COMPLETED",
                R"("klarna_network_session_token":"kns-)" + n + R"(")");
        request("payment.request.updated", "v2", 3, "COMPLETED",
                R"("payment_transaction_id":)" + q(txn));
        transaction("payment.transaction.state-change.authorized", 4,
                    txn_money + R"(,"expires_at":")" + core::rfc3339_ms(at(4) + 86'400'000) + "\"");
        transaction("payment.transaction.captured", 5,
                    R"("payment_capture_id":"cap-)" + n + R"(","amount":500,"currency":"EUR")");
        transaction("payment.transaction.state-change.expired", 6, txn_money);
        transaction("payment.funding.state-change.funded", 7, "");
        break;
      }
      case 4: {  // current-framework dispute on a captured transaction, won
        const std::string d = "krn:payment:eu1:dispute:" + b.uuid("d", i);
        auto dispute = [&](std::string_view type, int step, const std::string& extra) {
          std::string p = R"("payment_dispute_id":)" + q(d) + R"(,"payment_transaction_id":)" +
                          q(txn) + R"(,"dispute_reason":"GOODS_NOT_RECEIVED",)" +
                          R"("dispute_details":{"dispute_amount":)" + std::to_string(amount) +
                          R"(,"currency":"EUR","created_by":"CUSTOMER"})";
          if (!extra.empty()) p += "," + extra;
          b.emit(topics.disputes, d, type, "v2", at(step), p);
        };
        auto rep = [&](int days) {
          return R"("representment":{"state":"OPEN","expires_at":")" +
                 core::rfc3339_ms(t0 + days * 86'400'000LL) + R"("})";
        };
        transaction("payment.transaction.state-change.authorized", 0, txn_money);
        transaction("payment.transaction.captured", 1,
                    R"("payment_capture_id":"cap-)" + n + R"(","amount":)" +
                        std::to_string(amount) + R"(,"currency":"EUR")");
        transaction("payment.transaction.state-change.completed", 2, txn_money);
        dispute("payment.dispute.state-change.initiated", 3, rep(10));
        dispute("payment.dispute.updated.representment-deadline-extended", 4,
                R"("updated_fields":{"representment":{"expires_at":")" +
                    core::rfc3339_ms(t0 + 17 * 86'400'000LL) + R"("}})");
        dispute("payment.dispute.state-change.representment", 5, rep(17));
        dispute("payment.dispute.state-change.pre-arbitration", 6, rep(17));
        dispute("payment.dispute.state-change.arbitration", 7, rep(17));
        dispute("payment.dispute.state-change.closed", 8,
                R"("dispute_outcome":"WON","closed_at":")" + core::rfc3339_ms(at(8)) + "\"");
        transaction("payment.transaction.chargeback", 9,
                    R"("payment_chargeback_id":"cb-)" + n + R"(","amount":0,"currency":"EUR")");
        break;
      }
      case 5: {  // legacy-framework dispute, lost
        const std::string d = "krn:payment:eu1:dispute:" + b.uuid("l", i);
        auto dispute = [&](std::string_view type, int step, const std::string& extra) {
          std::string p = R"("payment_dispute_id":)" + q(d) + R"(,"payment_transaction_id":)" +
                          q(txn) + R"(,"dispute_reason":"FRAUD")";
          if (!extra.empty()) p += "," + extra;
          b.emit(topics.disputes, d, type, "v1", at(step), p);
        };
        dispute("payment.dispute.state-change.merchant-evidence-pending", 0, "");
        dispute("payment.dispute.state-change.pre-arbitration", 1, "");
        dispute("payment.dispute.state-change.arbitration-pending", 2,
                R"("arbitration_expires_at":")" + core::rfc3339_ms(t0 + 20 * 86'400'000LL) + "\"");
        dispute("payment.dispute.updated.arbitration-deadline-extended", 3,
                R"("updated_fields":{"arbitration_expires_at":")" +
                    core::rfc3339_ms(t0 + 30 * 86'400'000LL) + R"("})");
        dispute("payment.dispute.state-change.arbitration-appeal-window-open", 4, "");
        dispute("payment.dispute.state-change.closed", 5, R"("dispute_outcome":"LOST")");
        transaction("payment.transaction.chargeback", 6,
                    R"("payment_chargeback_id":"cb-)" + n + R"(","amount":)" +
                        std::to_string(amount) + R"(,"currency":"EUR")");
        break;
      }
      case 6: {  // settlement report and payout
        const std::string s = "settlement-" + n;
        const std::string po = "payout-" + n;
        b.emit(topics.settlements, s, "settlement.report.created", "v1", at(0),
               R"("settlement_id":")" + s + R"(","report_url":"https://example.invalid/r.json")");
        b.emit(topics.settlements, s, "settlement.report.uploaded-to-sftp", "v1", at(1),
               R"("settlement_id":")" + s + R"(")");
        b.emit(topics.settlements, po, "settlement.payout.processed", "v1", at(2),
               R"("payout_id":")" + po + R"(","amount":)" + std::to_string(amount * 10) +
                   R"(,"currency":"EUR")");
        b.emit(topics.settlements, po, "settlement.payout.confirmed", "v1", at(3),
               R"("payout_id":")" + po + R"(","amount":)" + std::to_string(amount * 10) +
                   R"(,"currency":"EUR")");
        break;
      }
      case 7: {  // partner account
        const std::string a = "krn:partner:global:account:test:ACC" + n;
        const std::string p = R"("account_id":")" + a + R"(")";
        b.emit(topics.accounts, a, "partner.account.change.created", "v1", at(0), p);
        b.emit(topics.accounts, a, "partner.account.state-change.operational", "v1", at(1), p);
        b.emit(topics.accounts, a, "partner.account.product.payment.state-change.disabled", "v1",
               at(2), p);
        b.emit(topics.accounts, a, "partner.account.product.payment.state-change.enabled", "v1",
               at(3), p);
        break;
      }
      case 8:  // canceled by the partner, and a void without capture on another txn
        request("payment.request.state-change.submitted", "v2", 0, "SUBMITTED");
        request("payment.request.state-change.in-progress", "v2", 1, "IN_PROGRESS");
        request("payment.request.state-change.canceled", "v2", 2, "CANCELED",
                R"("state_reason":"PARTNER_CANCELED")");
        transaction("payment.transaction.state-change.authorized", 3, txn_money);
        transaction("payment.transaction.state-change.closed", 4, txn_money);
        break;
    }
  }
  // Interleave entities by time as Klarna would send them (stable per entity).
  std::stable_sort(out.begin(), out.end(), [](const TestEvent& a, const TestEvent& b) {
    auto ta = a.body.substr(a.body.find("occurred_at") + 14, 24);
    auto tb = b.body.substr(b.body.find("occurred_at") + 14, 24);
    return ta < tb;
  });
  return out;
}

std::vector<TestEvent> shuffle_with_duplicates(std::vector<TestEvent> events,
                                               double duplicate_ratio, std::uint32_t seed) {
  // Each event gets a random position in [0, 1); a duplicate a random position
  // after its original's. Sorting by position gives the delivery order.
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::bernoulli_distribution dup(duplicate_ratio);
  std::vector<std::pair<double, std::size_t>> order;
  order.reserve(events.size() * (1 + duplicate_ratio) + 16);
  const std::size_t n = events.size();
  for (std::size_t i = 0; i < n; ++i) {
    const double at = unit(rng);
    order.emplace_back(at, i);
    if (dup(rng)) order.emplace_back(at + (1.0 - at) * unit(rng), i);
  }
  std::sort(order.begin(), order.end());
  std::vector<TestEvent> out;
  out.reserve(order.size());
  for (const auto& [at, i] : order) out.push_back(events[i]);
  return out;
}

std::vector<TestEvent> make_poison(const klarna::Topics& topics) {
  std::vector<TestEvent> out;
  out.push_back({topics.payment_requests, "garbage", "{not json", "", ""});
  out.push_back({topics.payment_requests, "krn:payment:eu1:request:poison-1",
                 R"({"metadata":{"event_type":"payment.request.state-change.completed",)"
                 R"("event_id":"poison-version-1","event_version":"v9",)"
                 R"("occurred_at":"2026-01-01T00:00:00Z"},"payload":{"payment_request_id":)"
                 R"("krn:payment:eu1:request:poison-1"}})",
                 "poison-version-1", "payment.request.state-change.completed"});
  out.push_back({topics.payment_transactions, "krn:payment:eu1:transaction:poison-2",
                 R"({"metadata":{"event_type":"payment.transaction.captured",)"
                 R"("event_id":"poison-shape-1","event_version":"v2",)"
                 R"("occurred_at":"2026-01-01T00:00:00Z"},"payload":{"payment_transaction_id":)"
                 R"("krn:payment:eu1:transaction:poison-2","amount":100}})",
                 "poison-shape-1", "payment.transaction.captured"});
  return out;
}

}  // namespace kpay::test
