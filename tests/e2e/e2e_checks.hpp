// What the end-to-end suites compare once a run has drained: the processor's
// database (read-only) against klarna-sim's introspection (deliveries,
// executions per idempotency key, payment states). Shared by the chaos and
// the full-disk suites, and the PostgreSQL one.
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "e2e_system.hpp"

namespace kpay::test {

// Every row of a query, as text, NULL as "" (read-only; the test's own look
// into the database: a SQLite file or a PostgreSQL DSN, e2e_db.hpp).
std::vector<std::vector<std::string>> rows(const std::string& db, const std::string& sql);

// An integer field of a JSON object; -1 when absent.
std::int64_t int_at(simdjson::dom::element e, std::string_view key);

// id → "STATE" (payment requests) or "STATE captured/refunded/amount" (transactions).
using States = std::map<std::string, std::string>;
States sim_states(System& sys);
States processor_states(const std::string& db);
// Up to 20 lines naming the entities whose states differ.
std::string describe_differences(const States& sim, const States& ours);

// The delivery summary (pending, delivered, failed, …) without the deliveries.
std::map<std::string, std::int64_t> delivery_summary(System& sys);
// The event ids of every delivery the receiver answered 2xx.
std::set<std::string> delivered_event_ids(System& sys);

// How often the sim executed each operation, and each idempotency key.
struct Executions {
  std::map<std::string, std::int64_t> by_route, by_key;
};
Executions executions(System& sys);
// The same, from the text of the sim's GET /_sim/executions.
Executions executions_from_json(std::string_view json);
// The most times any one idempotency key was executed (0 when none).
std::int64_t most_per_key(const Executions& ex);
// How often the sim executed `route` (0 when never).
std::int64_t executed(const Executions& ex, const std::string& route);

// Final command statuses seen per command id (a republication may repeat one).
using Answers = std::map<std::string, std::vector<std::string>>;

// What moves whenever anything happens: the outbox's rows, the deliveries the
// sim made (pending, delivered or failed), the inbox's rows. Equal before and
// after a drain check's reads: nothing was created while they were read.
struct Activity {
  long long outbox = 0, deliveries = 0, inbox = 0;
  bool operator==(const Activity&) const = default;
};
Activity activity(System& sys);

// Everything settled: every command answered, no call due, no result
// unpublished, the scenario finished, no delivery pending, every acknowledged
// webhook in the inbox, the processors' states equal to the sim's, and no
// activity (above) while this was read. Read in that causal order: a call the
// sim answered queued its webhooks before its answer, so once the calls are
// done a later "nothing pending" covers them, and a webhook delivered after
// that read was acknowledged before the inbox read; a row or delivery created
// meanwhile (a webhook consumed after the outbox was read) changes the
// activity. `answered` gets what was read of the results.
bool drained(System& sys, const std::vector<std::string>& commands, Answers& answered, States& sim,
             States& ours);

// The checks every end-to-end run ends with (gtest EXPECTs, so a failure
// names what was lost or doubled):
// - every webhook the receiver acknowledged is in the processor's inbox, and
//   no event was applied twice;
void expect_every_acknowledged_webhook_applied_once(System& sys);
// - every idempotency key the sim saw was executed once, and every POST call
//   in the outbox is one of them;
void expect_each_call_executed_once(System& sys, const Executions& ex);
// - the sim executed each operation as often as its payments' states need:
//   a confirm per authorized v1 request, an authorize per completed v2
//   request, a capture per transaction, a refund per refund command.
void expect_operations_as_the_states_need(const States& sim, const Executions& ex,
                                          std::int64_t refund_commands);

}  // namespace kpay::test
