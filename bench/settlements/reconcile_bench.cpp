// Reconciling a large settlement report: N captures executed (one transaction
// each), then the report's JSON pages (SALE + FEE line per capture, 500 lines
// a page) answered through the outbox worker's handlers, each page in its own
// transaction as the worker records it, and the reconciliation that follows
// the last page. Prints the time of booking and of reconciling, and the peak
// RSS, only after checking the work: every line booked once, zero findings,
// the settlement reconciled. CPU steal over the run from /proc/stat.
//
//   reconcile_bench --captures 50000 --dir /tmp/reconcile-bench
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "calls/call_answers.hpp"
#include "kpay/processor/follow_ups.hpp"
#include "kpay/storage/reconciliation_store.hpp"
#include "kpay/storage/state_store.hpp"

using namespace kpay;
using Clock = std::chrono::steady_clock;

namespace {

const std::string kSettlement = "krn:settlement:eu1:settlement:bench";

// user+nice+system+idle+iowait+irq+softirq, steal (jiffies) of all CPUs.
std::pair<long long, long long> cpu_times() {
  std::ifstream stat("/proc/stat");
  std::string cpu;
  long long v[8] = {};
  stat >> cpu;
  for (auto& x : v) stat >> x;
  long long total = 0;
  for (auto x : v) total += x;
  return {total, v[7]};
}

double seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

void execute(storage::StateStore& store, int captures) {
  storage::Transaction tx(store.database());
  for (int i = 0; i < captures; ++i) {
    const std::string id = std::to_string(i);
    storage::PaymentTransactionRow t;
    t.id = "tx-" + id;
    t.state = "CAPTURED";
    t.currency = "EUR";
    t.amount = 1000 + i % 100;
    t.captured_amount = *t.amount;
    t.last_event_id = "e-" + id;
    store.save_transaction(t);
    store.insert_sub_record(
        {"capture", "cap-" + id, t.id, *t.amount, std::nullopt, std::nullopt, 0, t.last_event_id});
  }
  tx.commit();
}

// Page `p` of the report: lines [p*size, (p+1)*size) of 2 per capture.
std::string page(int p, int size, int captures) {
  std::ostringstream out;
  out << R"({"transactions":[)";
  const int first = p * size, last = std::min(first + size, 2 * captures);
  for (int n = first; n < last; ++n) {
    const int i = n / 2;
    if (n > first) out << ',';
    const bool sale = n % 2 == 0;
    out << R"({"type":")" << (sale ? "SALE" : "FEE") << R"(","amount":)"
        << (sale ? 1000 + i % 100 : 30) << R"(,"currency_code":"EUR","payment_transaction_id":"tx-)"
        << i << R"(","payment_capture_id":"cap-)" << i << "\"";
    if (!sale) out << R"(,"tax_amount":6)";
    out << '}';
  }
  out << R"(],"pagination":{"count":)" << (last - first);
  if (last < 2 * captures) {
    out << R"(,"next":"/v2/settlements/bench/transactions?offset=)" << last << "&size=" << size
        << "\"";
  }
  out << "}}";
  return out.str();
}

std::string details(int captures) {
  long long sales = 0;
  for (int i = 0; i < captures; ++i) sales += 1000 + i % 100;
  const long long fees = 30LL * captures, tax = 6LL * captures;
  std::ostringstream out;
  out << R"({"settlement_id":")" << kSettlement << R"(","currency_code":"EUR","totals":{)"
      << R"("total_sale_amount":)" << sales << R"(,"total_return_amount":0,)"
      << R"("total_chargeback_amount":0,"total_fee_amount":)" << fees << R"(,"total_tax_amount":)"
      << tax << R"(,"total_settlement_amount":)" << sales - fees - tax << "}}";
  return out.str();
}

std::string answer(storage::StateStore& store, const processor::FollowUpSettings& settings,
                   const storage::OutboxRow& row, std::string body) {
  static const klarna::Topics topics;
  std::vector<storage::PublishRow> published;
  storage::Transaction tx(store.database());
  processor::AnswerContext c{store, settings, topics, 1, published};
  klarna::Answer a;
  a.status = 200;
  a.body = std::move(body);
  auto result = processor::apply_success(c, row, a);
  tx.commit();
  return result;
}

storage::OutboxRow next_page(storage::StateStore& store) {
  storage::OutboxRow last;
  for (auto& o : store.outbox(kSettlement)) {
    if (o.operation == storage::OutboxOperation::fetch_settlement_transactions && o.id > last.id)
      last = std::move(o);
  }
  return last;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"reconcile_bench: book and reconcile one large settlement report"};
  int captures = 50000;
  std::string dir = "/tmp/reconcile-bench";
  app.add_option("--captures", captures, "captures (2 report lines each)")
      ->check(CLI::Range(1, 5000000));
  app.add_option("--dir", dir, "scratch directory (emptied)");
  CLI11_PARSE(app, argc, argv);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  storage::StateStore store(dir + "/state.db");
  execute(store, captures);

  processor::FollowUpSettings settings;
  settings.settlements.page_size = 500;
  processor::FollowUpOrigin origin{"acc-bench", "bench", 1, std::nullopt, ""};
  store.insert_outbox(processor::outbox_row(processor::FetchSettlement{kSettlement}, origin));
  auto fetch = store.outbox(kSettlement).front();

  const auto cpu0 = cpu_times();
  const auto t0 = Clock::now();
  answer(store, settings, fetch, details(captures));
  std::string result;
  int pages = 0;
  const int total_pages = (2 * captures + 499) / 500;
  Clock::duration booking{}, last_page{};
  for (int p = 0; p < total_pages; ++p) {
    auto body = page(p, 500, captures);  // the answer's bytes: not timed
    const auto row = next_page(store);
    const auto a = Clock::now();
    result = answer(store, settings, row, std::move(body));
    (p + 1 < total_pages ? booking : last_page) += Clock::now() - a;
    ++pages;
  }
  const auto elapsed = Clock::now() - t0;
  const auto cpu1 = cpu_times();

  auto& recon = storage::ledger_of(store);
  const auto s = recon.find_settlement(kSettlement);
  const auto lines = static_cast<long long>(recon.lines(kSettlement).size());
  const auto findings = recon.findings(0, false, 10).size();
  if (!s || s->status != "reconciled" || lines != 2LL * captures || findings != 0 ||
      s->lines_booked != lines) {
    std::cerr << "reconcile_bench: the work is not right: lines " << lines << " of "
              << 2LL * captures << ", findings " << findings << ", status "
              << (s ? s->status : "none") << " (" << result << ")\n";
    return 1;
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double steal = 100.0 * static_cast<double>(cpu1.second - cpu0.second) /
                       static_cast<double>(std::max(1LL, cpu1.first - cpu0.first));
  std::printf(
      "captures %d, lines %lld, pages %d: booking %.2f s (%.0f lines/s), last page + "
      "reconciliation %.2f s, total %.2f s; peak RSS %.1f MiB; steal %.1f%%; %s\n",
      captures, lines, pages, seconds(booking),
      static_cast<double>(lines) / std::max(1e-9, seconds(booking)), seconds(last_page),
      seconds(elapsed), static_cast<double>(ru.ru_maxrss) / 1024.0, steal, result.c_str());
  return 0;
}
