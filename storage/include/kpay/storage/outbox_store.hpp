// The outbox of follow-up calls to Klarna (storage/README.md, "Outbox"): rows
// written in the transaction of the state change that makes them due, claimed
// by a worker, answered, retried with the same idempotency key.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kpay/storage/rows.hpp"

namespace kpay::storage {

class OutboxStore {
 public:
  virtual ~OutboxStore() = default;

  // false when a row with this idempotency key exists already (the key is
  // unique for ever: a replayed event queues nothing twice).
  virtual bool insert_outbox(const OutboxRow& o) = 0;
  // Reads: never with call_token.
  virtual std::vector<OutboxRow> outbox(const std::string& entity_id) = 0;  // by id
  virtual std::optional<OutboxRow> find_outbox(std::int64_t id) = 0;

  // Due pending rows (next_attempt_at_ms <= now; with a lease, also in_flight
  // rows whose lease ran out), oldest due first (next_attempt_at_ms, id), at
  // most `limit`: each marked in_flight with attempts+1 and updated_at_ms =
  // now, and returned WITH call_token (for sending only). Two concurrent
  // claimers never get the same row while its lease holds.
  virtual std::vector<OutboxRow> claim_due_outbox(const OutboxClaim& claim) = 0;
  std::vector<OutboxRow> claim_due_outbox(std::int64_t now_ms, std::size_t limit) {
    return claim_due_outbox(OutboxClaim{.now_ms = now_ms, .limit = limit});
  }
  // At start-up of a processor: rows left in_flight (by a process that died)
  // become pending, due now. Returns how many. With several processors on one
  // store only rows of `owner` (or, empty, all: single processor).
  virtual std::int64_t release_in_flight_outbox(std::int64_t now_ms) = 0;
  // Records an attempt's answer: status pending (retry at next_attempt_at_ms)
  // | succeeded | failed. last_status and result keep their old value when
  // not given; last_error is replaced. false when not recorded (no such row,
  // or, with owners, the claim was lost).
  virtual bool update_outbox(const OutboxUpdate& u) = 0;
  // Locks this processor's claim on an in_flight row for the current
  // transaction: true while it holds it; false when the claim was lost
  // (another processor took the row after the lease) — the answer must then
  // be dropped, the other processor records its own. Called before an
  // answer's effects are written, in their transaction.
  virtual bool hold_outbox_claim(std::int64_t id) = 0;
  // Operators: failed → pending, due now. false when the row is not failed.
  virtual bool retry_outbox(std::int64_t id, std::int64_t now_ms) = 0;

  // Listing (klarnactl actions): by status (none: all), newest (highest id) first.
  virtual std::vector<OutboxRow> list_outbox(std::optional<OutboxStatus> status,
                                             std::size_t limit) = 0;
  // Not done (pending, in_flight, failed) with a due_by before now + horizon,
  // nearest due_by first.
  virtual std::vector<OutboxRow> outbox_due_within(std::int64_t now_ms, std::int64_t horizon_ms,
                                                   std::size_t limit) = 0;
  // The earliest next_attempt_at_ms of a pending row (the worker sleeps until).
  virtual std::optional<std::int64_t> next_outbox_attempt() = 0;
  virtual OutboxCounts outbox_counts() = 0;
  // Money accepted but not executed: the sum of `amount` over pending and
  // in_flight rows of `operation` for the transaction (and, when given, for
  // one capture).
  virtual std::int64_t pending_outbox_amount(
      const std::string& transaction_id, OutboxOperation operation,
      const std::optional<std::string>& capture_id = std::nullopt) = 0;
  // What is due and what was missed: calls (call_horizon_ms) and open
  // disputes' deadlines (horizon_ms).
  virtual DeadlineSummary deadlines(std::int64_t now_ms, std::int64_t horizon_ms,
                                    std::int64_t call_horizon_ms = 10 * 60 * 1000) = 0;
};

}  // namespace kpay::storage
