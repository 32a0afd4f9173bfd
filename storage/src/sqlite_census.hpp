// A statement census of SQLite connections, for measuring where a store's
// time goes (docs/performance/processor.md, "Statement census"). Off unless the
// environment names a file: KPAY_SQLITE_CENSUS=/path/census.tsv. Then every
// connection Database::open() makes is traced (sqlite3_trace_v2 with
// SQLITE_TRACE_STMT | SQLITE_TRACE_PROFILE) and, when it closes, appends to
// that file one table: per distinct SQL text its executions, wall time,
// pages it fetched from the page cache and how many of those missed it (the
// B-tree work and the preads), pages it wrote (a COMMIT's WAL frames, or a
// spill of a full cache), rows written and VM steps; and from its
// EXPLAIN program the B-tree writes and seeks it may make per execution.
// Internal to storage/src; not for production (the trace adds a clock read
// and two hash lookups per statement).
#pragma once

#include <sqlite3.h>

namespace kpay::storage::census {

// Starts tracing `db` when KPAY_SQLITE_CENSUS is set (read once per process).
void attach(sqlite3* db);
// Writes the table of `db` and forgets it; nothing when it was not traced.
void report_and_detach(sqlite3* db);

}  // namespace kpay::storage::census
