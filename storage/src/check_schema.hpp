// Schema v19 (SQLite): the CHECK constraints that list three or more values
// (`outcome IN ('applied', 'duplicate', 'stale', 'rejected')`) written as
// comparisons (`outcome = 'applied' OR outcome = 'duplicate' OR …`).
//
// Why: SQLite evaluates `x IN (a, b, c…)` with three or more constants by
// building a temporary B-tree of the list, and a CHECK does so on every row
// it checks: each history row (one per message) opened, filled and dropped
// one, with two 4 KiB page buffers zeroed — over a fifth of the store
// thread's instructions (docs/performance/processor.md, "Where the instructions go").
// Two values or fewer are compared directly already and are left as they are.
//
// How: the rows already satisfy the new constraints (the same test, written
// differently), so the table definitions are edited in place with
// `writable_schema` (https://www.sqlite.org/lang_altertable.html, "Making
// Other Kinds Of Table Schema Changes": removing or changing a CHECK needs no
// rebuild), no table is copied, whatever its size. The connection then reloads
// its schema (`writable_schema=RESET`), and a table created and dropped again
// changes the schema cookie, so every other connection reloads it too.
// A definition whose text differs from the one written here (none is known)
// keeps its IN list: slower, still correct.
//
// PostgreSQL evaluates such lists without a table of their own; its twin (19)
// changes nothing (postgres/pg_schema.cpp).
#pragma once

#include <string_view>

namespace kpay::storage {

constexpr std::string_view kCheckSchemaV19 = R"sql(
PRAGMA writable_schema=ON;
UPDATE sqlite_schema SET sql = replace(sql,
  'CHECK (outcome IN (''applied'', ''duplicate'', ''stale'', ''rejected''))',
  'CHECK (outcome = ''applied'' OR outcome = ''duplicate'' OR outcome = ''stale'' OR '
  || 'outcome = ''rejected'')')
  WHERE type = 'table' AND name = 'history';
UPDATE sqlite_schema SET sql = replace(sql,
  'CHECK (kind IN (''capture'', ''refund'', ''chargeback''))',
  'CHECK (kind = ''capture'' OR kind = ''refund'' OR kind = ''chargeback'')')
  WHERE type = 'table' AND name = 'transaction_sub_records';
UPDATE sqlite_schema SET sql = replace(sql,
  'CHECK (kind IN (''representment'', ''arbitration'', ''evidence_response''))',
  'CHECK (kind = ''representment'' OR kind = ''arbitration'' OR kind = ''evidence_response'')')
  WHERE type = 'table' AND name = 'dispute_deadlines';
UPDATE sqlite_schema SET sql = replace(sql,
  'CHECK (status IN (''accepted'', ''rejected'', ''succeeded'', ''failed''))',
  'CHECK (status = ''accepted'' OR status = ''rejected'' OR status = ''succeeded'' OR '
  || 'status = ''failed'')')
  WHERE type = 'table' AND name = 'commands';
UPDATE sqlite_schema SET sql = replace(sql,
  'CHECK (outcome IN (''succeeded'', ''retry'', ''failed'', ''conflict''))',
  'CHECK (outcome = ''succeeded'' OR outcome = ''retry'' OR outcome = ''failed'' OR '
  || 'outcome = ''conflict'')')
  WHERE type = 'table' AND name = 'call_attempts';
UPDATE sqlite_schema SET sql = replace(sql,
  'CHECK (kind IN (''deleted'', ''log_reset'', ''jump''))',
  'CHECK (kind = ''deleted'' OR kind = ''log_reset'' OR kind = ''jump'')')
  WHERE type = 'table' AND name = 'offset_gaps';
UPDATE sqlite_schema SET sql = replace(sql,
  'CHECK (status IN (''fetching'', ''fetched'', ''reconciled''))',
  'CHECK (status = ''fetching'' OR status = ''fetched'' OR status = ''reconciled'')')
  WHERE type = 'table' AND name = 'settlements';
UPDATE sqlite_schema SET sql = replace(sql,
  'CHECK (kind IN (''missing_in_settlement'', ''unexpected_in_settlement'',
                   ''amount_mismatch'', ''duplicate_settlement'', ''payout_mismatch'',
                   ''currency_mismatch'', ''unrecognised_line''))',
  'CHECK (kind = ''missing_in_settlement'' OR kind = ''unexpected_in_settlement'' OR
                   kind = ''amount_mismatch'' OR kind = ''duplicate_settlement'' OR
                   kind = ''payout_mismatch'' OR kind = ''currency_mismatch'' OR
                   kind = ''unrecognised_line'')')
  WHERE type = 'table' AND name = 'reconciliation_findings';
PRAGMA writable_schema=RESET;
CREATE TABLE schema_v19_cookie (x);
DROP TABLE schema_v19_cookie;
)sql";

}  // namespace kpay::storage
