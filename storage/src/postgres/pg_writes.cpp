// Queued writes of the libpq layer (pg.hpp, Connection::write and
// write_late): a transaction's writes whose answers nobody reads wait for the
// next statement that needs an answer and go with it in one pipeline; late
// ones (tables the batch does not read back) wait for COMMIT and go as
// multi-row statements.
#include <algorithm>
#include <bit>
#include <cctype>

#include "postgres/pg.hpp"

namespace kpay::storage::pg {

namespace {

// `text` with every parameter number $k raised by `by`.
std::string shifted(std::string_view text, int by) {
  std::string out;
  out.reserve(text.size() + 16);
  for (std::size_t i = 0; i < text.size(); ++i) {
    out += text[i];
    if (text[i] != '$' || i + 1 >= text.size() ||
        !std::isdigit(static_cast<unsigned char>(text[i + 1]))) {
      continue;
    }
    std::size_t end = i + 1;
    while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end]))) ++end;
    out += std::to_string(std::stoi(std::string(text.substr(i + 1, end - i - 1))) + by);
    i = end - 1;
  }
  return out;
}

// How a run of one statement's rows becomes one statement: an INSERT whose
// SQL ends with its VALUES tuple repeats the tuple; a DELETE ending in
// "= $1" becomes "IN ($1, …)". Anything else (ON CONFLICT, RETURNING, …)
// stays one statement per row.
struct Shape {
  bool insert = false;
  bool delete_one = false;
  std::string_view head;   // up to the tuple, or up to " = $1"
  std::string_view tuple;  // "($1, …, $n)"
};

Shape shape_of(std::string_view sql) {
  Shape s;
  if (sql.starts_with("INSERT INTO ")) {
    const auto values = sql.rfind(" VALUES (");
    if (values == std::string_view::npos || !sql.ends_with(")")) return s;
    const std::string_view tuple = sql.substr(values + 8);
    if (std::count(tuple.begin(), tuple.end(), '(') != std::count(tuple.begin(), tuple.end(), ')'))
      return s;
    // One tuple, nothing after it: its first '(' closes at the very end.
    int depth = 0;
    for (std::size_t i = 0; i < tuple.size(); ++i) {
      depth += tuple[i] == '(' ? 1 : tuple[i] == ')' ? -1 : 0;
      if (depth == 0 && i + 1 != tuple.size()) return s;
    }
    s.insert = true;
    s.head = sql.substr(0, values + 8);
    s.tuple = tuple;
  } else if (sql.starts_with("DELETE FROM ") && sql.ends_with(" = $1")) {
    s.delete_one = true;
    s.head = sql.substr(0, sql.size() - 5);
  }
  return s;
}

// `rows` rows of `shape` (each with `per_row` parameters) as one statement.
std::string multi_row_sql(const Shape& shape, std::size_t rows, int per_row) {
  std::string sql(shape.head);
  if (shape.delete_one) {
    sql += " IN (";
    for (std::size_t i = 0; i < rows; ++i) sql += (i ? ", $" : "$") + std::to_string(i + 1);
    return sql + ")";
  }
  for (std::size_t i = 0; i < rows; ++i) {
    if (i) sql += ", ";
    sql += shifted(shape.tuple, static_cast<int>(i) * per_row);
  }
  return sql;
}

bool identifier_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

}  // namespace

// `table` as a word of `sql` (publish_queue, not publish_queue_seq_seq).
bool names_table(std::string_view sql, std::string_view table) {
  for (auto at = sql.find(table); at != std::string_view::npos; at = sql.find(table, at + 1)) {
    const auto end = at + table.size();
    if ((at == 0 || !identifier_char(sql[at - 1])) &&
        (end == sql.size() || !identifier_char(sql[end]))) {
      return true;
    }
  }
  return false;
}

bool Connection::in_transaction() const {
  return PQtransactionStatus(conn_) == PQTRANS_INTRANS;
}

void Connection::write(std::string_view sql, Params p) {
  if (!in_transaction()) {
    query(sql, p);
    return;
  }
  writes_.push_back({std::string(sql), std::move(p), {}});
}

void Connection::write_late(std::string_view table, std::string_view sql, Params p) {
  if (!in_transaction()) {
    query(sql, p);
    return;
  }
  if (std::find(late_tables_.begin(), late_tables_.end(), table) == late_tables_.end()) {
    late_tables_.emplace_back(table);
  }
  late_.push_back({std::string(sql), std::move(p), std::string(table)});
}

void Connection::release_late_for(std::string_view sql) {
  const bool named = std::any_of(late_tables_.begin(), late_tables_.end(),
                                 [&](const std::string& t) { return names_table(sql, t); });
  if (named) release_late();
}

// Grouped by table (a table's rows keep their order; tables the late rows go
// to are not read by one another's statements), so that each table's rows
// make runs of one statement.
void Connection::release_late() {
  std::stable_sort(late_.begin(), late_.end(),
                   [](const Write& a, const Write& b) { return a.table < b.table; });
  std::move(late_.begin(), late_.end(), std::back_inserter(writes_));
  late_.clear();
  late_tables_.clear();
}

void Connection::flush() {
  release_late();
  if (!writes_.empty()) run_writes_then({}, nullptr);
}

// The queued writes (runs of one multi-row shape joined), then `sql` when
// given, in one pipeline; the result is the last statement's.
Result Connection::run_writes_then(std::string_view sql, const Params* p) {
  std::vector<Write> writes = std::exchange(writes_, {});
  Pipeline pipe(*this);
  for (std::size_t i = 0; i < writes.size();) {
    const Write& w = writes[i];
    const Shape shape = w.table.empty() ? Shape{} : shape_of(w.sql);
    std::size_t run = 1;
    if (shape.insert || shape.delete_one) {
      const std::size_t most = shape.insert ? kRowsPerInsert : 4 * kRowsPerInsert;
      while (i + run < writes.size() && run < most && writes[i + run].sql == w.sql) ++run;
      run = std::bit_floor(run);  // a few row counts: a few prepared statements
    }
    if (run == 1) {
      pipe.send(w.sql, w.params);
    } else {
      Params all;
      for (std::size_t k = 0; k < run; ++k) all.append(writes[i + k].params);
      pipe.send(multi_row_sql(shape, run, w.params.size()), all);
    }
    i += run;
  }
  if (p != nullptr) pipe.send(sql, *p);
  std::vector<Result> results = pipe.results();
  if (p == nullptr) return Result();
  return std::move(results.back());
}

}  // namespace kpay::storage::pg
