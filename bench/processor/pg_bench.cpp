// Throughput of 1, 2 or 3 klarna-processor binaries sharing one PostgreSQL
// state (processor.store = "postgresql"), one consumer group: N realistic
// events (lifecycles, 10% duplicates) are first produced to the embedded Kafka,
// then the processors consume and apply them. Measured from the first
// committed batch to the last (the group's join is not counted; the
// rebalances as the 2nd and 3rd processor join are). The server is a
// throwaway one (tests/support/postgres_server) made durable for the run:
// fsync and full_page_writes on, shared_buffers 128 MB.
//
// What limits the run: every 50 ms the processors' sessions in
// pg_stat_activity are sampled (active and waiting on what, or idle: the
// processor is working), and CPU time of the processors and of the server's
// processes is read at the end (/proc).
//
// It checks its own work before it prints a rate: every produced message in
// the history exactly once (applied, stale or rejected once per distinct
// event, duplicates exactly as produced), no dead letter, no offset gap.
// Anything else: exit 1, no rate.
//
// --statements loads pg_stat_statements in the server and prints, per
// distinct statement of the processors, its calls per event and its mean
// execution and planning time (where the server's time goes). --processor
// runs another klarna-processor binary (an A/B comparison of two builds).
//
//   pg_bench --events 60000 --processors 2
//   pg_bench --events 30000 --statements --processor /tmp/old/klarna-processor
#include <libpq-fe.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <thread>

#include "child_process.hpp"
#include "durable_postgres.hpp"
#include "kafka_support.hpp"
#include "kpay/core/embedded_kafka.hpp"
#include "kpay/storage/postgres.hpp"
#include "lifecycles.hpp"
#include "postgres_server.hpp"

using namespace kpay;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kPartitions = 16;

class Pg {
 public:
  explicit Pg(const std::string& dsn) : c_(PQconnectdb(dsn.c_str())) {}
  ~Pg() { PQfinish(c_); }
  bool ok() const { return PQstatus(c_) == CONNECTION_OK; }
  // The rows of `sql` as text; empty on any error.
  std::vector<std::vector<std::string>> rows(const std::string& sql) {
    std::vector<std::vector<std::string>> out;
    PGresult* r = PQexec(c_, sql.c_str());
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
      for (int i = 0; i < PQntuples(r); ++i) {
        std::vector<std::string> row;
        for (int j = 0; j < PQnfields(r); ++j) row.emplace_back(PQgetvalue(r, i, j));
        out.push_back(std::move(row));
      }
    }
    PQclear(r);
    return out;
  }
  long long integer(const std::string& sql) {
    auto r = rows(sql);
    return r.empty() || r[0].empty() || r[0][0].empty() ? -1 : std::stoll(r[0][0]);
  }
  void exec(const std::string& sql) { PQclear(PQexec(c_, sql.c_str())); }

 private:
  PGconn* c_;
};

// utime + stime of a process, in seconds (/proc/PID/stat fields 14, 15).
double cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), {});
  auto close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(text.substr(close + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// The server's CPU: the postmaster and every process it started.
double server_cpu_seconds(pid_t postmaster) {
  double total = cpu_seconds(postmaster);
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    std::ifstream in(e.path() / "stat");
    std::string text((std::istreambuf_iterator<char>(in)), {});
    auto close = text.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(text.substr(close + 2));
    std::string state, ppid;
    rest >> state >> ppid;
    if (ppid == std::to_string(postmaster)) total += cpu_seconds(std::stoi(name));
  }
  return total;
}

std::string write_config(const std::string& dir, int i, const std::string& dsn,
                         const std::string& bootstrap, int batch_size) {
  const std::string path = dir + "/p" + std::to_string(i) + ".toml";
  std::ofstream out(path);
  out << "[processor]\nstore = \"postgresql\"\nbatch_size = " << batch_size << "\n"
      << "[postgresql]\ndsn = \"" << dsn << "\"\ninstance = \"p" << i << "\"\n"
      << "[kafka]\nbootstrap_servers = \"" << bootstrap << "\"\n"
      << "group_id = \"bench\"\ntopic_prefix = \"bench.\"\n[admin]\nport = 0\n"
      << "[log]\nlevel = \"warn\"\n[worker]\nenabled = false\n";
  return path;
}

// What the processors' sessions are doing, sampled: each sample is the busy
// sessions (a statement running, or a transaction open and the server waiting
// for the processor's next statement), or "no transaction open" (the processor
// reads Kafka, decodes, or waits for its next batch). Each processor keeps
// several mostly idle connections (watchers, counts): idle ones are not
// counted.
struct Waits {
  std::map<std::string, long> seen;
  long samples = 0;
  void sample(Pg& c) {
    ++samples;
    const auto busy = c.rows(
        "SELECT state, COALESCE(wait_event_type, ''), COALESCE(wait_event, '') "
        "FROM pg_stat_activity WHERE application_name = 'klarna-processor' "
        "AND state <> 'idle'");
    if (busy.empty()) ++seen["no transaction open"];
    for (const auto& r : busy) {
      std::string what = r[0];
      if (r[1] == "Client") {
        what += " (server waits for the processor)";
      } else if (!r[1].empty()) {
        what += " waiting " + r[1] + "/" + r[2];
      } else {
        what += " (no wait event)";
      }
      ++seen[what];
    }
  }
  void print() const {
    std::vector<std::pair<long, std::string>> sorted;
    for (const auto& [k, v] : seen) sorted.emplace_back(v, k);
    std::sort(sorted.rbegin(), sorted.rend());
    std::printf("pg_stat_activity, %ld samples (share of samples):", samples);
    for (std::size_t i = 0; i < std::min<std::size_t>(6, sorted.size()); ++i) {
      std::printf(" %s %.0f%%;", sorted[i].second.c_str(),
                  100.0 * static_cast<double>(sorted[i].first) / static_cast<double>(samples));
    }
    std::printf("\n");
  }
};

// The processors' statements (pg_stat_statements, reset before they
// started): the totals per event, then the statements by server time.
void print_statements(Pg& c, long long events) {
  const std::string mine =
      "FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat%' "
      "AND query NOT LIKE '%SUM(next_offset)%'";
  const auto total =
      c.rows("SELECT SUM(calls), SUM(total_exec_time), SUM(total_plan_time) " + mine);
  if (total.empty() || total[0][0].empty()) {
    std::printf("statements: pg_stat_statements has no rows\n");
    return;
  }
  const double n = static_cast<double>(events);
  const double calls = std::stod(total[0][0]), exec_ms = std::stod(total[0][1]),
               plan_ms = std::stod(total[0][2]);
  std::printf(
      "statements: %.2f per event; server time %.1f us per event executing, %.1f planning\n",
      calls / n, 1000 * exec_ms / n, 1000 * plan_ms / n);
  const auto rows = c.rows(
      "SELECT calls, total_exec_time, total_plan_time, plans, "
      "regexp_replace(left(query, 100), '\\s+', ' ', 'g') " +
      mine + " ORDER BY total_exec_time + total_plan_time DESC LIMIT 25");
  std::printf("  per event | mean exec us | mean plan us (plans) | share | statement\n");
  for (const auto& r : rows) {
    const double k = std::stod(r[0]), e = std::stod(r[1]), pl = std::stod(r[2]),
                 plans = std::stod(r[3]);
    std::printf("  %9.3f | %12.1f | %8.1f (%6.0f) | %4.1f%% | %s\n", k / n, 1000 * e / k,
                plans > 0 ? 1000 * pl / plans : 0.0, plans, 100 * (e + pl) / (exec_ms + plan_ms),
                r[4].c_str());
  }
  // The offset fence's reads (docs/OPERATIONS.md, "A stalled processor's
  // batch"): the committed offsets before a batch, the locked ones in it.
  const auto fence = c.rows(
      "SELECT calls, total_exec_time, query LIKE '%FOR UPDATE' " + mine +
      " AND query LIKE 'SELECT topic, partition, next_offset FROM consumer_offsets%' ORDER BY 3");
  for (const auto& r : fence) {
    const double k = std::stod(r[0]), e = std::stod(r[1]);
    std::printf("  fence: %.0f calls (%.4f per event), %.1f us mean: the %s\n", k, k / n,
                1000 * e / k, r[2] == "t" ? "locked read in the batch" : "read before any lock");
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pg_bench: events/s of N processors on one PostgreSQL state"};
  long long events = 60000;
  int processors = 1, batch_size = 500;
  bool statements = false;
  std::string processor_binary = test::binary("processor/klarna-processor");
  app.add_option("--events", events, "Events to produce and process (approximate)");
  app.add_flag("--statements", statements, "Profile the statements (pg_stat_statements)");
  app.add_option("--processor", processor_binary, "The klarna-processor binary to run");
  app.add_option("--processors", processors)->check(CLI::Range(1, 8));
  app.add_option("--batch-size", batch_size, "processor.batch_size");
  CLI11_PARSE(app, argc, argv);

  core::EmbeddedKafka kafka(1);
  klarna::Topics topics;
  topics.apply_prefix("bench.");
  auto ordered = test::make_lifecycles(static_cast<int>(events / 6.9), topics, 3);
  const long long distinct = static_cast<long long>(ordered.size());
  auto stream = test::shuffle_with_duplicates(std::move(ordered), 0.1, 3);
  const long long duplicates_produced = static_cast<long long>(stream.size()) - distinct;
  std::map<std::string, long long> per_topic;
  for (const auto& e : stream) ++per_topic[e.topic];
  for (const auto* t : {&topics.payment_requests, &topics.payment_transactions, &topics.disputes,
                        &topics.settlements, &topics.accounts, &topics.unrouted,
                        &topics.payment_states, &topics.processor_dead_letter}) {
    kafka.create_topic(*t, kPartitions);
  }
  const auto produced = test::produce_events(kafka.bootstrap_servers(), stream);
  const long long total = static_cast<long long>(produced.size());
  for (const auto& [topic, n] : per_topic) {
    const long long kept = test::topic_message_count(kafka.bootstrap_servers(), topic, kPartitions);
    if (kept != n) {
      std::fprintf(stderr, "INVALID RUN: %s keeps %lld of %lld messages\n", topic.c_str(), kept, n);
      return 1;
    }
  }
  stream.clear();

  test::PostgresServer server;
  bench::make_durable(server, statements);
  const std::string dsn = server.dsn();
  storage::PostgresSettings schema;
  schema.dsn = dsn;
  storage::open_postgres_store(schema);  // the schema, before the processors race for it
  Pg c(dsn);
  if (statements) {
    c.exec("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    c.exec("SELECT pg_stat_statements_reset()");
  }
  const auto dir = test::make_temp_dir("pg-bench");
  std::vector<std::unique_ptr<test::ChildProcess>> children;
  for (int i = 1; i <= processors; ++i) {
    children.push_back(std::make_unique<test::ChildProcess>(
        std::vector<std::string>{processor_binary, "--config",
                                 write_config(dir, i, dsn, kafka.bootstrap_servers(), batch_size)},
        dir + "/p" + std::to_string(i) + ".log"));
  }
  Waits waits;
  auto committed = [&] {
    return c.integer("SELECT COALESCE(SUM(next_offset), 0) FROM consumer_offsets");
  };
  long long first = 0;
  Clock::time_point t_first{}, t_end{};
  const double server_cpu_before = server_cpu_seconds(server.pid());
  const auto deadline = Clock::now() + std::chrono::minutes(5 + events / 50000);
  while (Clock::now() < deadline) {
    const long long n = committed();
    if (first == 0 && n > 0) {
      first = n;
      t_first = Clock::now();
    }
    if (n >= total) {
      t_end = Clock::now();
      break;
    }
    if (first > 0) waits.sample(c);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  double processor_cpu = 0;
  for (auto& p : children) processor_cpu += cpu_seconds(p->pid());
  const double server_cpu = server_cpu_seconds(server.pid()) - server_cpu_before;
  for (auto& p : children) p->signal(SIGTERM);
  for (auto& p : children) p->wait(std::chrono::seconds(30));
  if (t_end == Clock::time_point{}) {
    std::fprintf(stderr, "INVALID RUN: %lld of %lld committed in time (logs in %s)\n", committed(),
                 total, dir.c_str());
    return 1;
  }
  const double secs = std::chrono::duration<double>(t_end - t_first).count();
  if (statements) print_statements(c, total);
  auto outcome = [&](const char* o) {
    return c.integer(std::string("SELECT COUNT(*) FROM history WHERE outcome = '") + o + "'");
  };
  const auto applied = outcome("applied"), duplicates = outcome("duplicate"),
             stale = outcome("stale"), rejected = outcome("rejected");
  const auto dead = c.integer("SELECT COUNT(*) FROM poison_messages");
  const auto gaps = c.integer("SELECT COUNT(*) FROM offset_gaps");
  std::printf("processors=%d events=%lld (distinct %lld, duplicates %lld) batch_size=%d\n",
              processors, total, distinct, duplicates_produced, batch_size);
  std::printf("history: applied=%lld stale=%lld rejected=%lld duplicate=%lld dead=%lld gaps=%lld\n",
              applied, stale, rejected, duplicates, dead, gaps);
  std::vector<std::string> wrong;
  if (applied + stale + rejected + duplicates != total) wrong.push_back("history rows != events");
  if (applied + stale + rejected - dead != distinct) wrong.push_back("distinct events unaccounted");
  if (duplicates != duplicates_produced) wrong.push_back("duplicates != duplicates produced");
  if (dead != 0) wrong.push_back("dead letters in a clean stream");
  if (gaps != 0) wrong.push_back("offset gaps");
  if (!wrong.empty()) {
    for (const auto& w : wrong) std::fprintf(stderr, "INVALID RUN: %s\n", w.c_str());
    std::printf("no rate: the run is not valid; logs in %s\n", dir.c_str());
    return 1;
  }
  std::printf("processed=%lld (after the first batch of %lld) in %.3fs => %.0f events/s\n",
              total - first, first, secs, static_cast<double>(total - first) / secs);
  std::printf(
      "cpu: processors %.1fs (whole run), PostgreSQL %.1fs (since the processors started) => "
      "%.0f events per cpu-second\n",
      processor_cpu, server_cpu, static_cast<double>(total) / (processor_cpu + server_cpu));
  waits.print();
  std::filesystem::remove_all(dir);
  return 0;
}
