// What a Klarna answer does, by operation (the handlers: payment_answers.cpp,
// dispute_answers.cpp, settlements), and what a finished call does to the
// command that asked for it.
#include "calls/call_answers.hpp"

#include <simdjson.h>

#include <functional>
#include <map>

#include "calls/answer_support.hpp"
#include "settlements/settlement_fetch.hpp"

namespace kpay::processor {

using namespace answers;  // the handlers and what they share

namespace {

const std::map<Op, Handler>& handlers() {
  static const std::map<Op, Handler> table = {
      {Op::final_authorization, on_final_authorization},
      {Op::confirm, on_confirm},
      {Op::capture, [](auto& c, auto& row, auto& a) { return book_sub_record(c, row, a, true); }},
      {Op::read_capture,
       [](auto& c, auto& row, auto& a) { return book_sub_record(c, row, a, true); }},
      {Op::read_refund,
       [](auto& c, auto& row, auto& a) { return book_sub_record(c, row, a, false); }},
      {Op::read_payment_request, on_read_request},
      {Op::read_transaction, on_read_transaction},
      {Op::initial_authorization, on_initial_authorization},
      {Op::refund_transaction,
       [](auto& c, auto& row, auto& a) { return book_sub_record(c, row, a, false); }},
      {Op::refund_capture,
       [](auto& c, auto& row, auto& a) { return book_sub_record(c, row, a, false); }},
      {Op::void_transaction, on_void},
      {Op::cancel, on_cancel},
      {Op::dispute_accept_loss, on_dispute_accept_loss},
      {Op::dispute_represent, dispute_moved_to("REPRESENTMENT")},
      {Op::dispute_appeal, dispute_moved_to("ARBITRATION")},
      {Op::read_dispute, on_read_dispute},
      {Op::sdk_token, on_sdk_token},
  };
  return table;
}

}  // namespace

std::string apply_success(AnswerContext& c, const storage::OutboxRow& row,
                          const klarna::Answer& answer) {
  if (is_settlement_operation(row.operation)) return apply_settlement_answer(c, row, answer);
  auto it = handlers().find(row.operation);
  if (it == handlers().end()) return "recorded";  // an operation whose answer changes no state
  // A dispute operation's answer may have no body (accept-loss: 202).
  if (is_dispute_operation(row.operation) &&
      answer.body.find_first_not_of(" \t\r\n") == std::string::npos) {
    return it->second(c, row, Json{});
  }
  thread_local simdjson::dom::parser parser;
  return it->second(c, row, parse(parser, answer.body));
}

std::string queue_reread(AnswerContext& c, const storage::OutboxRow& row) {
  std::vector<FollowUp> read;
  const auto op = row.operation;
  if (op == Op::confirm && row.command_id) {
    // A token's confirm (authorize command): no request of ours to read.
  } else if (op == Op::final_authorization || op == Op::confirm || op == Op::cancel) {
    read.push_back(ReadPaymentRequest{row.entity_id});
  } else if (op == Op::capture || op == Op::refund_transaction || op == Op::refund_capture ||
             op == Op::void_transaction) {
    read.push_back(ReadTransaction{row.entity_id, std::nullopt});
  } else if (is_dispute_operation(op)) {
    // The read reports the command's final result with the state Klarna has.
    read.push_back(ReadDispute{row.entity_id, row.command_id});
  }
  if (read.empty()) return "";
  queue(c, read, row, row.due_by_ms);
  return std::string(operation_name(read.front()));
}

// A dispute operation refused with 409 was re-read (read_dispute with the
// command's id): the command failed, and the reason says what Klarna has now.
std::string conflict_reason(AnswerContext& c, const storage::OutboxRow& read,
                            const std::optional<std::string>& state_now) {
  std::string why = "conflict";
  constexpr std::string_view kCause = "outbox:";
  if (read.created_by_event_id.starts_with(kCause)) {
    const auto cause = c.store.find_outbox(std::stoll(read.created_by_event_id.substr(7)));
    if (cause && cause->last_error) why += ": " + *cause->last_error;
  }
  return why + "; re-read: the dispute is " + state_now.value_or("UNKNOWN") + " at Klarna";
}

void finish_command(AnswerContext& c, const storage::OutboxRow& row,
                    const storage::OutboxUpdate& update) {
  using storage::OutboxStatus;
  if (!row.command_id ||
      (update.status != OutboxStatus::succeeded && update.status != OutboxStatus::failed)) {
    return;
  }
  // The read queued for a dispute operation's 409 reports its result; so does
  // the read back of a money operation whose answer lacked the new id.
  if (update.result == "CONFLICT" && is_dispute_operation(row.operation)) return;
  if (update.result == kReadBack) return;
  auto command = c.store.find_command(*row.command_id);
  if (!command || command->status != storage::CommandStatus::accepted) return;
  const bool conflict_read =
      row.operation == Op::read_dispute && update.status == OutboxStatus::succeeded;
  // Klarna executed the operation the read is about: it succeeded, whatever the read.
  const bool read_back = row.operation == Op::read_transaction;
  const bool ok = (update.status == OutboxStatus::succeeded || read_back) && !conflict_read;
  CommandResult r = std::move(c.found);
  c.found = {};
  r.command_id = command->command_id;
  r.type = command->type;
  r.status = ok ? CommandStatus::succeeded : CommandStatus::failed;
  if (conflict_read) {
    r.reason = conflict_reason(c, row, r.dispute_state);
  } else if (read_back && update.status != OutboxStatus::succeeded) {
    r.reason = "executed; the read back failed: " + update.last_error.value_or("failed");
  } else if (!ok) {
    r.reason = update.last_error.value_or("failed");
    r.result.reset();  // a failed call has no authorization result
  }
  if (row.amount) r.amount = row.amount;
  c.store.finish_command(command->command_id,
                         ok ? storage::CommandStatus::succeeded : storage::CommandStatus::failed,
                         r.reason, c.now_ms);
  storage::PublishRow p{0, c.topics.command_results, command->key,
                        render_command_result(r, c.now_ms), ""};
  p.seq = c.store.enqueue_publish(p);
  c.publications.push_back(std::move(p));
}

}  // namespace kpay::processor
