// Canonical text dumps of the processor's database, for "same final state"
// and "identical database" comparisons. Row order is fixed by sorting; columns
// that only record the order of processing (autoincrement ids) are left out.
#pragma once

#include <string>

namespace kpay::test {

// The entity tables: payment requests, transactions, sub-records, disputes,
// settlement/payout/account records.
std::string dump_entities(const std::string& db_path);
// Everything meaningful: entities plus inbox, history (without seq), outbox
// (without id), poison messages and consumer offsets.
std::string dump_everything(const std::string& db_path);
// One number from a query (e.g. "SELECT COUNT(*) FROM history").
long long query_int(const std::string& db_path, const std::string& sql);

}  // namespace kpay::test
