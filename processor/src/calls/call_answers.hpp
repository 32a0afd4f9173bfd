// What a Klarna answer to an outbox call does to the stored state: one
// function per operation, each run inside the worker's transaction together
// with the row's new status (outbox_worker.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kpay/klarna/api_client.hpp"
#include "kpay/klarna/envelope.hpp"
#include "kpay/processor/commands.hpp"
#include "kpay/processor/follow_ups.hpp"
#include "kpay/storage/store.hpp"

namespace kpay::processor {

struct AnswerContext {
  storage::Store& store;
  const FollowUpSettings& follow_ups;
  const klarna::Topics& topics;
  std::int64_t now_ms = 0;
  // State-change messages enqueued in the transaction (to hand to Kafka
  // after the commit).
  std::vector<storage::PublishRow>& publications;
  // What the answer of the row being recorded created (ids, the
  // authorization's result): the final result of the command that asked for
  // it carries them. Cleared per row by the worker.
  CommandResult found = {};
};

// A 2xx answer of `row`: applies it and returns the `result` to store on the
// row (APPROVED, DECLINED, the id created, …). Throws std::runtime_error when
// the answer cannot be read (the row then fails with that reason).
std::string apply_success(AnswerContext& c, const storage::OutboxRow& row,
                          const klarna::Answer& answer);

// A row a downstream command asked for (row.command_id) that is done
// (`update.status` succeeded or failed): the command's final result is
// published in the worker's transaction and its status recorded. Nothing for
// other rows, retries, or a command already final (one final result each).
void finish_command(AnswerContext& c, const storage::OutboxRow& row,
                    const storage::OutboxUpdate& update);

// A 409: queues a read of the resource the call was about (nothing when the
// operation has no readable resource). Returns what was queued, for the log.
std::string queue_reread(AnswerContext& c, const storage::OutboxRow& row);

}  // namespace kpay::processor
