// The audit trail of an end-to-end run, checked two ways: as klarna.audit
// carried it (every row of the database's audit_events published, field for
// field, keyed by command_id else entity_id, in seq order per key) and
// against klarna-sim's executions (each operation the sim executed for the
// processor is one executed outcome in the trail; nothing else is).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kafka_reader.hpp"

namespace kpay::test {

// One row of audit_events, as the database holds it (NULL: nullopt).
struct AuditRow {
  std::int64_t seq = 0;
  std::map<std::string, std::optional<std::string>> text;  // column → value, as text
};
std::vector<AuditRow> audit_rows(const std::string& db);

// Reads `topic` (partitions [0, partitions)) until a message for every seq of
// `rows` arrived or `timeout` passed; returns every message read.
std::vector<ConsumedMessage> read_audit_topic(const std::string& bootstrap,
                                              const std::string& topic, int partitions,
                                              const std::vector<AuditRow>& rows,
                                              std::chrono::seconds timeout);

// What differs between the topic and the database, one line each (empty: none):
// a row never published, a message for no row, a field that differs, a key
// that is not the row's command_id (else entity_id), a key's seqs out of order
// within its partition.
std::string compare_audit_topic(const std::vector<ConsumedMessage>& messages,
                                const std::vector<AuditRow>& rows);

// What differs between the trail's executed outcomes and the sim's
// executions, one line each (empty: none). An executed outcome is an
// audit_events row of kind `outcome`, status succeeded; its call's
// idempotency key must have executed once at the sim, and every call of the
// outbox that changes a payment and executed at the sim has exactly one.
// `executed`: the sim's executions per idempotency key (GET /_sim/executions).
// Also returns the number of executed outcomes in `outcomes`.
std::string compare_executed_outcomes(const std::string& db,
                                      const std::map<std::string, std::int64_t>& executed,
                                      std::size_t& outcomes);

}  // namespace kpay::test
