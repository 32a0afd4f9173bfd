// The answer handlers' shared parts (answer_support.hpp).
#include "calls/answer_support.hpp"

namespace kpay::processor::answers {

Json parse(simdjson::dom::parser& parser, const std::string& body) {
  element root;
  if (parser.parse(body).get(root) != simdjson::SUCCESS || !root.is_object()) {
    throw std::runtime_error("answer is not a JSON object");
  }
  return {root, true};
}

void publish(AnswerContext& c, const std::string& key, std::string message) {
  storage::PublishRow row{0, c.topics.payment_states, key, std::move(message), ""};
  row.seq = c.store.enqueue_publish(row);
  c.publications.push_back(std::move(row));
}

void publish_transaction(AnswerContext& c, const storage::PaymentTransactionRow& t,
                         const std::optional<std::string>& from, const storage::OutboxRow& row) {
  std::optional<std::int64_t> remaining;
  if (t.amount) remaining = *t.amount - t.captured_amount;
  publish(c, t.id,
          Change("payment_transaction", t.id, from, t.state, row, c.now_ms)
              .maybe("amount", t.amount)
              .maybe("currency", t.currency)
              .maybe("captured_amount", std::optional(t.captured_amount))
              .maybe("refunded_amount", std::optional(t.refunded_amount))
              .maybe("remaining_amount", remaining)
              .maybe("payment_request_id", t.payment_request_id)
              .done());
}

void publish_request(AnswerContext& c, const storage::PaymentRequestRow& r,
                     const std::optional<std::string>& from, const storage::OutboxRow& row) {
  publish(c, r.id,
          Change("payment_request", r.id, from, r.state, row, c.now_ms)
              .maybe("amount", r.amount)
              .maybe("currency", r.currency)
              .maybe("payment_transaction_id", r.payment_transaction_id)
              .maybe("authorization_result", r.authorization_result)
              .done());
}

void queue(AnswerContext& c, const std::vector<FollowUp>& follow_ups,
           const storage::OutboxRow& cause, std::optional<std::int64_t> due_by) {
  FollowUpOrigin origin;
  origin.account_id = cause.account_id;
  origin.caused_by = "outbox:" + std::to_string(cause.id);
  origin.now_ms = c.now_ms;
  origin.due_by_ms = due_by;
  origin.read_discriminator = origin.caused_by;
  for (const auto& f : follow_ups) c.store.insert_outbox(outbox_row(f, origin));
}

storage::PaymentTransactionRow merge_transaction(AnswerContext& c, const Json& tx,
                                                 const storage::OutboxRow& row,
                                                 const std::optional<std::string>& request_id) {
  auto id = tx.str("payment_transaction_id");
  if (!id) throw std::runtime_error("answer has no payment_transaction_id");
  auto t = c.store.find_transaction(*id);
  if (!t) {
    t.emplace();
    t->id = *id;
    t->last_event_id = "outbox:" + std::to_string(row.id);
  }
  fill(t->state, tx.str("state"));
  fill(t->amount, tx.integer("amount"));
  fill(t->currency, tx.str("currency"));
  fill(t->reference, tx.str("payment_transaction_reference"));
  fill(t->payment_request_id, request_id ? request_id : tx.str("payment_request_id"));
  if (!t->account_id && !row.account_id.empty()) t->account_id = row.account_id;
  if (row.operation == Op::initial_authorization || row.operation == Op::final_authorization) {
    // A thin APPROVED answer: the transaction is what was asked for.
    Sent sent(row.request_body);
    auto rpt = sent.body.at("request_payment_transaction");
    fill(t->amount, rpt.integer("amount"));
    fill(t->currency, sent.body.str("currency"));
    fill(t->reference, rpt.str("payment_transaction_reference"));
    fill(t->state,
         std::optional<std::string>(rpt.str("capture") == "NOW" ? "COMPLETED" : "AUTHORIZED"));
  }
  c.store.save_transaction(*t);
  return *t;
}

void link_request(AnswerContext& c, const std::string& request_id,
                  const std::optional<std::string>& transaction_id, const std::string& result,
                  const std::optional<std::string>& new_state, const storage::OutboxRow& row) {
  auto r = c.store.find_request(request_id);
  if (!r) return;  // the request's events have not arrived; the transaction links it later
  const auto before = r->state;
  if (transaction_id) r->payment_transaction_id = transaction_id;
  r->authorization_result = result;
  if (new_state) r->state = new_state;
  c.store.save_request(*r);
  publish_request(c, *r, before, row);
}

void after_authorized(AnswerContext& c, const storage::PaymentTransactionRow& t,
                      const storage::OutboxRow& row) {
  if (t.state && *t.state == "AUTHORIZED")
    queue(c, on_transaction_authorized(t, c.follow_ups), row);
}

}  // namespace kpay::processor::answers
