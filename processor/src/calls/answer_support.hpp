// What the answer handlers share (call_answers.cpp, payment_answers.cpp,
// dispute_answers.cpp): reading Klarna's JSON, what a row sent, the
// state-change messages an answer causes, and the follow-ups it queues.
#pragma once

#include <simdjson.h>

#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "calls/call_answers.hpp"
#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"

namespace kpay::processor::answers {

using simdjson::dom::element;
using Op = storage::OutboxOperation;

// A money answer without the new id: a read of the transaction follows.
inline constexpr std::string_view kReadBack = "READ_BACK";

// Reading Klarna's answers: every field optional, a wrong type reads as absent.
struct Json {
  element e;
  bool ok = false;

  Json at(std::string_view key) const {
    element child;
    if (ok && e.is_object() && e[key].get(child) == simdjson::SUCCESS && !child.is_null()) {
      return {child, true};
    }
    return {};
  }
  std::optional<std::string> str(std::string_view key) const {
    std::string_view v;
    auto child = at(key);
    if (child.ok && child.e.get_string().get(v) == simdjson::SUCCESS && !v.empty()) {
      return std::string(v);
    }
    return std::nullopt;
  }
  std::optional<std::int64_t> integer(std::string_view key) const {
    std::int64_t v = 0;
    auto child = at(key);
    if (child.ok && child.e.get_int64().get(v) == simdjson::SUCCESS) return v;
    return std::nullopt;
  }
};

// What the row sent (its JSON body, written by klarna_calls.cpp): where a 2xx
// answer is thin, amount, currency and references come from here.
struct Sent {
  simdjson::dom::parser parser;
  Json body;
  explicit Sent(const std::string& text) {
    element root;
    if (!text.empty() && parser.parse(text).get(root) == simdjson::SUCCESS) body = {root, true};
  }
};

template <class T>
void fill(std::optional<T>& field, const std::optional<T>& value) {
  if (!field && value) field = value;
}

// The state-change message for downstream (klarna.payment-states), caused by
// an answer instead of a webhook: `source` says so, `caused_by` names the call.
struct Change {
  core::JsonWriter w;
  Change(std::string_view kind, const std::string& id, const std::optional<std::string>& from,
         const std::optional<std::string>& to, const storage::OutboxRow& row, std::int64_t now_ms) {
    w.begin_object().field("entity_kind", kind).field("entity_id", id);
    w.key("previous_state");
    from ? w.value(*from) : w.null();
    w.key("state");
    to ? w.value(*to) : w.null();
    w.field("source", "klarna_api").field("operation", storage::to_string(row.operation));
    w.field("caused_by", "outbox:" + std::to_string(row.id));
    w.field("occurred_at", core::rfc3339_ms(now_ms));
  }
  template <class T>
  Change& maybe(std::string_view k, const std::optional<T>& v) {
    if (v) w.field(k, *v);
    return *this;
  }
  std::string done() {
    w.end_object();
    return w.take();
  }
};

Json parse(simdjson::dom::parser& parser, const std::string& body);

void publish(AnswerContext& c, const std::string& key, std::string message);

void publish_transaction(AnswerContext& c, const storage::PaymentTransactionRow& t,
                         const std::optional<std::string>& from, const storage::OutboxRow& row);

void publish_request(AnswerContext& c, const storage::PaymentRequestRow& r,
                     const std::optional<std::string>& from, const storage::OutboxRow& row);

void queue(AnswerContext& c, const std::vector<FollowUp>& follow_ups,
           const storage::OutboxRow& cause, std::optional<std::int64_t> due_by = std::nullopt);

// A transaction the answer told us about: created when unknown, linked to its
// request, filled where we knew less. A state learnt from an answer keeps
// state_as_of_ms (0 for a new row), so any webhook about it still applies.
storage::PaymentTransactionRow merge_transaction(AnswerContext& c, const Json& tx,
                                                 const storage::OutboxRow& row,
                                                 const std::optional<std::string>& request_id);

void link_request(AnswerContext& c, const std::string& request_id,
                  const std::optional<std::string>& transaction_id, const std::string& result,
                  const std::optional<std::string>& new_state, const storage::OutboxRow& row);

void after_authorized(AnswerContext& c, const storage::PaymentTransactionRow& t,
                      const storage::OutboxRow& row);

// ---- the handlers: a 2xx answer of one operation, returning the row's result
using Handler = std::function<std::string(AnswerContext&, const storage::OutboxRow&, const Json&)>;

std::string on_final_authorization(AnswerContext& c, const storage::OutboxRow& row,
                                   const Json& answer);
std::string on_confirm(AnswerContext& c, const storage::OutboxRow& row, const Json& answer);
std::string book_sub_record(AnswerContext& c, const storage::OutboxRow& row, const Json& answer,
                            bool capture);
std::string on_initial_authorization(AnswerContext& c, const storage::OutboxRow& row,
                                     const Json& answer);
std::string on_sdk_token(AnswerContext& c, const storage::OutboxRow&, const Json& answer);
std::string on_void(AnswerContext& c, const storage::OutboxRow& row, const Json& answer);
std::string on_cancel(AnswerContext& c, const storage::OutboxRow& row, const Json& answer);
std::string on_read_request(AnswerContext& c, const storage::OutboxRow& row, const Json& answer);
std::string on_read_transaction(AnswerContext& c, const storage::OutboxRow& row,
                                const Json& answer);
std::string on_dispute_accept_loss(AnswerContext& c, const storage::OutboxRow& row,
                                   const Json& answer);
Handler dispute_moved_to(std::string documented);
std::string on_read_dispute(AnswerContext& c, const storage::OutboxRow& row, const Json& answer);

}  // namespace kpay::processor::answers
