// Results, parameters and error classification of the libpq layer (pg.hpp).
#include <charconv>
#include <cstring>

#include "postgres/pg.hpp"

namespace kpay::storage::pg {

namespace {

// Type OIDs (catalog/pg_type.h, stable across releases).
constexpr Oid kBoolOid = 16;
constexpr Oid kByteaOid = 17;
constexpr Oid kInt8Oid = 20;
constexpr Oid kTextOid = 25;

std::string first_line(const char* message) {
  std::string m = message ? message : "";
  m = m.substr(0, m.find('\n'));
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

std::string statement_head(std::string_view sql) {
  std::string head;
  for (char c : sql) {
    if (head.size() >= 72) {
      head += "…";
      break;
    }
    bool space = c == '\n' || c == ' ' || c == '\t';
    if (space && (head.empty() || head.back() == ' ')) continue;
    head += space ? ' ' : c;
  }
  return head;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool is_transient_sqlstate(std::string_view s) {
  if (s.size() != 5) return false;
  if (s.starts_with("08")) return true;  // connection exception
  return s == "40001" || s == "40P01" || s == "57P01" || s == "57P02" || s == "57P03" ||
         s == "53300" || s == "55P03" || s == "25006" || s == "25P03";
}

PgError error_from(PGconn* conn, const PGresult* r, std::string_view sql) {
  std::string state;
  std::string primary;
  if (r != nullptr) {
    if (const char* f = PQresultErrorField(r, PG_DIAG_SQLSTATE)) state = f;
    if (const char* f = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)) primary = f;
  }
  bool lost = PQstatus(conn) != CONNECTION_OK;
  if (primary.empty()) primary = conn ? first_line(PQerrorMessage(conn)) : "no connection";
  if (primary.empty()) primary = "connection lost";
  std::string what = "postgresql: " + primary;
  if (!state.empty()) what += " (SQLSTATE " + state + ")";
  if (!sql.empty()) what += " in: " + statement_head(sql);
  return PgError(what, state, lost || is_transient_sqlstate(state));
}

// ---- Result ----

Result& Result::operator=(Result&& o) noexcept {
  if (this != &o) {
    if (r_) PQclear(r_);
    r_ = std::exchange(o.r_, nullptr);
  }
  return *this;
}

Result::~Result() {
  if (r_) PQclear(r_);
}

int Result::rows() const {
  return r_ ? PQntuples(r_) : 0;
}

std::int64_t Result::affected() const {
  const char* n = r_ ? PQcmdTuples(r_) : "";
  std::int64_t v = 0;
  std::from_chars(n, n + std::strlen(n), v);
  return v;
}

bool Result::is_null(int row, int col) const {
  return PQgetisnull(r_, row, col) == 1;
}

std::string_view Result::view(int row, int col) const {
  return {PQgetvalue(r_, row, col), static_cast<std::size_t>(PQgetlength(r_, row, col))};
}

std::int64_t Result::int64(int row, int col) const {
  auto v = view(row, col);
  std::int64_t out = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc{} || end != v.data() + v.size()) {
    throw PgError("postgresql: column " + std::to_string(col) + " is not an integer", "", false);
  }
  return out;
}

bool Result::boolean(int row, int col) const {
  return view(row, col) == "t";
}

std::string Result::bytea(int row, int col) const {
  auto v = view(row, col);
  if (!v.starts_with("\\x") || v.size() % 2 != 0) {
    throw PgError("postgresql: column " + std::to_string(col) + " is not hex bytea", "", false);
  }
  std::string out;
  out.reserve((v.size() - 2) / 2);
  for (std::size_t i = 2; i < v.size(); i += 2) {
    int hi = hex_value(v[i]), lo = hex_value(v[i + 1]);
    if (hi < 0 || lo < 0) {
      throw PgError("postgresql: column " + std::to_string(col) + " is not hex bytea", "", false);
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

std::optional<std::string> Result::optional_text(int row, int col) const {
  if (is_null(row, col)) return std::nullopt;
  return text(row, col);
}

std::optional<std::int64_t> Result::optional_int64(int row, int col) const {
  if (is_null(row, col)) return std::nullopt;
  return int64(row, col);
}

std::optional<std::string> Result::optional_bytea(int row, int col) const {
  if (is_null(row, col)) return std::nullopt;
  return bytea(row, col);
}

// ---- Params ----

Params& Params::push(std::string value, bool null, int format, Oid type) {
  lengths_.push_back(static_cast<int>(value.size()));
  values_.push_back(std::move(value));
  null_.push_back(null);
  formats_.push_back(format);
  types_.push_back(type);
  return *this;
}

Params& Params::add(std::int64_t v) {
  return push(std::to_string(v), false, 0, kInt8Oid);
}

Params& Params::add(bool v) {
  return push(v ? "t" : "f", false, 0, kBoolOid);
}

Params& Params::add(std::string_view text) {
  return push(std::string(text), false, 0, kTextOid);
}

Params& Params::add(std::nullopt_t) {
  return push({}, true, 0, 0);
}

Params& Params::add_bytes(std::string_view bytes) {
  return push(std::string(bytes), false, 1, kByteaOid);
}

Params& Params::add_optional_bytes(const std::optional<std::string>& bytes) {
  return bytes ? add_bytes(*bytes) : push({}, true, 1, kByteaOid);
}

Params& Params::append(const Params& o) {
  values_.insert(values_.end(), o.values_.begin(), o.values_.end());
  null_.insert(null_.end(), o.null_.begin(), o.null_.end());
  lengths_.insert(lengths_.end(), o.lengths_.begin(), o.lengths_.end());
  formats_.insert(formats_.end(), o.formats_.begin(), o.formats_.end());
  types_.insert(types_.end(), o.types_.begin(), o.types_.end());
  return *this;
}

const char* const* Params::values() const {
  pointers_.clear();
  for (std::size_t i = 0; i < values_.size(); ++i) {
    pointers_.push_back(null_[i] ? nullptr : values_[i].data());
  }
  return pointers_.data();
}

}  // namespace kpay::storage::pg
