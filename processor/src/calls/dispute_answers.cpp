// What a 2xx answer of a Dispute API operation does to the stored dispute.
#include "calls/answer_support.hpp"
#include "kpay/processor/events.hpp"

namespace kpay::processor::answers {

namespace {

// A dispute as Klarna answered it (the resource, or nothing: accept-loss's 202
// may carry no body). Klarna's word on the state replaces ours; without it the
// documented target of the operation is used (`documented`; none: unchanged,
// the webhook will tell). state_as_of_ms is kept, so any later webhook still
// applies.
std::optional<std::string> merge_dispute(AnswerContext& c, const storage::OutboxRow& row,
                                         const Json& answer,
                                         std::optional<std::string> documented) {
  auto d = c.store.find_dispute(row.entity_id);
  if (!d) {
    d.emplace();
    d->id = row.entity_id;
    d->framework = storage::DisputeFramework::current;
    d->last_event_id = "outbox:" + std::to_string(row.id);
  }
  const auto before = d->state;
  const auto state = answer.str("state") ? answer.str("state") : std::move(documented);
  if (state) d->state = state;
  if (auto outcome = answer.str("dispute_outcome")) d->outcome = outcome;
  if (auto closed = answer.str("closed_at")) {
    if (auto ms = parse_rfc3339_ms(*closed)) d->closed_at_ms = ms;
  }
  fill(d->payment_transaction_id, answer.str("payment_transaction_id"));
  auto details = answer.at("dispute_details");
  fill(d->amount, details.integer("dispute_amount"));
  fill(d->currency, details.str("currency"));
  c.store.save_dispute(*d);
  if (before != d->state) {
    publish(c, d->id,
            Change("dispute", d->id, before, d->state, row, c.now_ms)
                .maybe("payment_transaction_id", d->payment_transaction_id)
                .maybe("outcome", d->outcome)
                .done());
  }
  c.found.payment_dispute_id = d->id;
  c.found.dispute_state = d->state;
  return d->state;
}

}  // namespace

// accept-loss (202): CLOSED / LOST when the answer says so, else unchanged.
std::string on_dispute_accept_loss(AnswerContext& c, const storage::OutboxRow& row,
                                   const Json& answer) {
  merge_dispute(c, row, answer, std::nullopt);
  return answer.str("state").value_or("LOSS_ACCEPTED");
}

// represent (201) → REPRESENTMENT; appeal (201) → ARBITRATION.
Handler dispute_moved_to(std::string documented) {
  return [documented](AnswerContext& c, const storage::OutboxRow& row, const Json& answer) {
    return merge_dispute(c, row, answer, documented).value_or(documented);
  };
}

// A read after a 409: the state Klarna has now is ours too.
std::string on_read_dispute(AnswerContext& c, const storage::OutboxRow& row, const Json& answer) {
  if (!answer.str("state")) throw std::runtime_error("answer has no dispute state");
  return merge_dispute(c, row, answer, std::nullopt).value_or("UNKNOWN");
}

}  // namespace kpay::processor::answers
