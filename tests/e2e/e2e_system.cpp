#include "e2e_system.hpp"

#include <regex>

#include "e2e_db.hpp"

namespace kpay::test {

std::uint16_t System::processor_admin_port(std::size_t i) const {
  static const std::regex re(R"("message":"admin endpoint listening".*"port":(\d+))");
  const auto text = processor_log(i);
  std::uint16_t port = 0;  // the last one logged: the running process's
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator();
       ++it) {
    port = static_cast<std::uint16_t>(std::stoi((*it)[1]));
  }
  return port;
}

std::uint16_t read_port(const std::string& file, const std::string& log) {
  std::uint16_t port = 0;
  const bool ok = wait_until(
      [&] {
        const auto text = read_file(file);
        const auto at = text.find("\"port\":");
        if (at == std::string::npos) return false;
        port = static_cast<std::uint16_t>(std::atoi(text.c_str() + at + 7));
        return port != 0;
      },
      std::chrono::seconds(30));
  EXPECT_TRUE(ok) << "no port in " << file << "\n" << read_file(log);
  return port;
}

long long query(const std::string& db, const std::string& sql) {
  if (is_postgres_dsn(db)) {
    const auto r = select_rows(db, sql);
    if (r.empty() || r[0].empty()) return -1;  // not migrated yet, or the server is down
    try {
      return r[0][0] ? std::stoll(*r[0][0]) : 0;
    } catch (const std::exception&) {
      return -1;  // not a number
    }
  }
  try {
    return query_int(db, sql);
  } catch (const std::exception&) {
    return -1;  // not created or not migrated yet
  }
}

std::string query_text(const std::string& db, const std::string& sql) {
  const auto r = select_rows(db, sql);
  return r.empty() || r[0].empty() ? std::string() : r[0][0].value_or("");
}

std::string str_at(simdjson::dom::element e, std::string_view key) {
  std::string_view v;
  if (e[key].get_string().get(v) != simdjson::SUCCESS) return "";
  return std::string(v);
}

Result parse_result(const ConsumedMessage& m) {
  simdjson::dom::parser p;
  simdjson::dom::element e;
  Result r;
  r.raw = m.value;
  r.key = m.key;
  if (p.parse(m.value).get(e) != simdjson::SUCCESS) return r;
  r.command_id = str_at(e, "command_id");
  r.status = str_at(e, "status");
  r.reason = str_at(e, "reason");
  r.result = str_at(e, "result");
  r.payment_transaction_id = str_at(e, "payment_transaction_id");
  r.payment_request_id = str_at(e, "payment_request_id");
  r.payment_request_url = str_at(e, "payment_request_url");
  r.payment_capture_id = str_at(e, "payment_capture_id");
  r.payment_refund_id = str_at(e, "payment_refund_id");
  r.payment_dispute_id = str_at(e, "payment_dispute_id");
  r.dispute_state = str_at(e, "dispute_state");
  return r;
}

}  // namespace kpay::test
