// The processor's periodic jobs with several processors on one PostgreSQL
// state (storage/README.md, "Jobs on several processors"): two store handles
// under two processor names run the audit publisher, the dispute and call
// deadline watchers, the settlement watch and the publish-queue drain together,
// and each row is published, or warned about, by exactly one of them.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <thread>

#include "kpay/processor/audit_publisher.hpp"
#include "kpay/processor/call_deadlines.hpp"
#include "kpay/processor/dispute_deadlines.hpp"
#include "kpay/processor/settlement_watch.hpp"
#include "kpay/storage/postgres.hpp"
#include "postgres_server.hpp"

using namespace kpay;
using namespace std::chrono_literals;

namespace {

constexpr std::int64_t kNow = 1'800'000'000'000;  // the watchers' clock

class PeriodicJobs : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = std::make_unique<test::PostgresServer>(); }
  static void TearDownTestSuite() { server_.reset(); }
  void SetUp() override {
    const std::string db = "jobs" + std::to_string(databases_++);
    server_->create_database(db);
    dsn_ = server_->dsn(db);
  }
  // A store of processor `name` (its own connection).
  std::unique_ptr<storage::Store> open(const std::string& name,
                                       std::chrono::milliseconds lease = 30s) {
    storage::PostgresSettings s;
    s.dsn = dsn_;
    s.instance = name;
    s.claim_lease = lease;
    return storage::open_postgres_store(s);
  }
  static inline std::unique_ptr<test::PostgresServer> server_;
  static inline int databases_ = 0;
  std::string dsn_;
};

// Runs `job(p)` for p = 0 and 1 at once, `rounds` times (both start each
// round together); exceptions are counted, not thrown.
template <typename Job>
int run_together(int rounds, Job job) {
  std::barrier sync(2);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < 2; ++p) {
    threads.emplace_back([&, p] {
      for (int r = 0; r < rounds; ++r) {
        sync.arrive_and_wait();
        try {
          job(p, r);
        } catch (const std::exception&) {
          ++failures;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  return failures.load();
}

storage::AuditEvent audit_event(int i) {
  storage::AuditEvent e;
  e.at_ms = kNow + i;
  e.kind = "operator";
  e.status = "done";
  e.detail = "event " + std::to_string(i);
  e.operator_name = "ops";
  return e;
}

// The seq field of a rendered audit event.
std::int64_t seq_of(const std::string& json) {
  const auto at = json.find("\"seq\":");
  return at == std::string::npos ? -1 : std::stoll(json.substr(at + 6));
}

TEST_F(PeriodicJobs, TheAuditTrailIsPublishedOnceByOneOfTwoProcessors) {
  auto writer = open("writer");
  std::unique_ptr<storage::Store> stores[] = {open("proc-a"), open("proc-b")};
  std::vector<std::unique_ptr<processor::AuditPublisher>> publishers;
  for (auto& s : stores) {
    publishers.push_back(std::make_unique<processor::AuditPublisher>(*s, "klarna.audit"));
  }
  std::vector<storage::PublishRow> published[2];
  int appended = 0;
  const int failures = run_together(40, [&](int p, int round) {
    if (p == 0) {  // new events between rounds, from a third connection
      for (int i = 0; i < 5; ++i) writer->append_audit(audit_event(round * 5 + i));
      appended += 5;
    }
    auto rows = publishers[p]->take(3);
    published[p].insert(published[p].end(), rows.begin(), rows.end());
  });
  for (int i = 0; i < 20; ++i) {  // what is left, by whoever holds the job
    for (int p = 0; p < 2; ++p) {
      auto rows = publishers[p]->take();
      published[p].insert(published[p].end(), rows.begin(), rows.end());
    }
  }
  EXPECT_EQ(failures, 0) << "the processor without the job leaves it alone";
  EXPECT_TRUE(published[0].empty() || published[1].empty()) << "one processor holds the job";
  std::map<std::int64_t, int> times;
  for (const auto& rows : published) {
    for (const auto& r : rows) ++times[seq_of(r.value)];
  }
  EXPECT_EQ(static_cast<int>(times.size()), appended) << "every audit event published";
  for (const auto& [seq, n] : times) EXPECT_EQ(n, 1) << "audit event " << seq;
  EXPECT_EQ(stores[0]->audit_published_through(), appended);
}

// Rows waiting on a lock of the audit trail (pg_locks), from a connection of
// the test's own.
int audit_lock_waiters(const std::string& dsn) {
  PGconn* c = PQconnectdb(dsn.c_str());
  PGresult* r = PQexec(c,
                       "SELECT COUNT(*) FROM pg_locks WHERE NOT granted AND "
                       "relation = 'audit_events'::regclass");
  const int n = PQresultStatus(r) == PGRES_TUPLES_OK ? std::atoi(PQgetvalue(r, 0, 0)) : -1;
  PQclear(r);
  PQfinish(c);
  return n;
}

// Two processors write audit events at once: the first takes seq 1 and
// commits after the second has committed seq 2. The publisher must publish
// both: before, it published 2, marked the trail published through 2, and
// passed over 1 for good (a PostgreSQL chaos run: rows never on klarna.audit).
TEST_F(PeriodicJobs, AnAuditEventCommittedAfterALaterOneIsStillPublished) {
  auto first = open("proc-a");
  auto second = open("proc-b");
  auto publisher_store = open("proc-c");
  processor::AuditPublisher publisher(*publisher_store, "klarna.audit");
  std::vector<storage::PublishRow> published;
  {
    storage::WriteTransaction slow(*first);
    ASSERT_EQ(first->append_audit(audit_event(1)), 1);
    ASSERT_EQ(second->append_audit(audit_event(2)), 2);
    std::atomic<bool> taken{false};
    std::thread take([&] {
      published = publisher.take();
      taken = true;
    });
    // The publisher waits for the first processor's transaction (or, before,
    // has already published what it saw).
    const auto until = std::chrono::steady_clock::now() + 30s;
    while (!taken && audit_lock_waiters(dsn_) == 0 && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(10ms);
    }
    slow.commit();
    take.join();
  }
  auto rest = publisher.take();
  published.insert(published.end(), rest.begin(), rest.end());
  std::map<std::int64_t, int> times;
  for (const auto& r : published) ++times[seq_of(r.value)];
  EXPECT_EQ(times, (std::map<std::int64_t, int>{{1, 1}, {2, 1}}));
  EXPECT_EQ(publisher_store->audit_published_through(), 2);
}

storage::DisputeRow dispute(int i) {
  storage::DisputeRow d;
  d.id = "krn:dispute:" + std::to_string(i);
  d.state = "INITIATED";
  d.representment_expires_at_ms = kNow + (i % 2 == 0 ? -1000 : 3600'000) + i;  // passed / soon
  d.last_event_id = "evt-" + std::to_string(i);
  return d;
}

TEST_F(PeriodicJobs, EachDisputeDeadlineIsWarnedAboutByOneOfTwoProcessors) {
  auto writer = open("writer");
  std::unique_ptr<storage::Store> stores[] = {open("proc-a"), open("proc-b")};
  processor::DeadlineWatchSettings settings;
  settings.window = 48h;
  std::vector<std::unique_ptr<processor::DisputeDeadlineWatcher>> watchers;
  for (auto& s : stores) {
    watchers.push_back(
        std::make_unique<processor::DisputeDeadlineWatcher>(*s, settings, [] { return kNow; }));
  }
  std::vector<processor::DeadlineCheck> checks[2];
  const int failures = run_together(30, [&](int p, int round) {
    if (p == 0) writer->save_dispute(dispute(round));  // one more dispute per round
    checks[p].push_back(watchers[p]->check());
  });
  std::map<std::string, int> warned;
  std::size_t publications = 0;
  for (int p = 0; p < 2; ++p) {
    for (const auto& c : checks[p]) {
      for (const auto& w : c.warnings) ++warned[w.deadline.dispute_id + " " + w.stage];
      publications += c.publications.size();
    }
  }
  for (int p = 0; p < 2; ++p) {  // what is left, by whoever holds the job
    for (const auto& w : watchers[p]->check().warnings) {
      ++warned[w.deadline.dispute_id + " " + w.stage];
      ++publications;
    }
  }
  EXPECT_EQ(failures, 0) << "the processor without the job leaves the warnings alone";
  EXPECT_EQ(warned.size(), 30u) << "every deadline warned about";
  for (const auto& [what, n] : warned) EXPECT_EQ(n, 1) << what;
  EXPECT_EQ(publications, 30u) << "one klarna.payment-states message per warning";
  EXPECT_EQ(watchers[1]->stats().overdue, 15) << "both keep the figures";
}

TEST_F(PeriodicJobs, EachCallAtRiskIsReportedByOneOfTwoProcessors) {
  auto writer = open("writer");
  for (int i = 0; i < 10; ++i) {
    storage::OutboxRow o;
    o.operation = storage::OutboxOperation::final_authorization;
    o.entity_id = "krn:request:" + std::to_string(i);
    o.idempotency_key = "idem-" + std::to_string(i);
    o.call_token = "tok";
    o.created_by_event_id = "evt-" + std::to_string(i);
    o.due_by_ms = kNow + 60'000 * (i + 1);  // within the 15 min window for i < 15
    o.next_attempt_at_ms = kNow + 3600'000;
    o.created_at_ms = kNow;
    ASSERT_TRUE(writer->insert_outbox(o));
  }
  std::unique_ptr<storage::Store> stores[] = {open("proc-a"), open("proc-b")};
  processor::CallDeadlineWatch a(*stores[0], 15min), b(*stores[1], 15min);
  std::map<std::int64_t, int> reported;
  for (int round = 0; round < 3; ++round) {
    for (auto* w : {&a, &b}) {
      for (const auto& row : w->check(kNow)) ++reported[row.id];
    }
  }
  EXPECT_EQ(reported.size(), 10u);
  for (const auto& [id, n] : reported) EXPECT_EQ(n, 1) << "outbox row " << id;
}

// Captures no settlement names, past the grace period: each is one
// missing_in_settlement finding, raised and published by the processor that
// holds the settlement-watch job; the other neither looks nor reports the
// findings gauge. (Without the job both look: the second insert of a finding
// fails as a serialization failure, or both scan and one finds nothing.)
TEST_F(PeriodicJobs, EachMissingSettlementIsFoundByOneOfTwoProcessors) {
  auto writer = open("writer");
  std::unique_ptr<storage::Store> stores[] = {open("proc-a"), open("proc-b")};
  std::vector<std::unique_ptr<processor::SettlementWatch>> watches;
  core::Registry registries[2];
  for (int p = 0; p < 2; ++p) {
    watches.push_back(
        std::make_unique<processor::SettlementWatch>(*stores[p], 1h, "klarna.reconciliation"));
    watches[p]->register_metrics(registries[p]);
  }
  std::vector<processor::SettlementWatch::Check> checks[2];
  const int failures = run_together(20, [&](int p, int round) {
    if (p == 0) {  // one more capture per round, executed long ago, settled nowhere
      storage::SubRecordRow r{"capture",       "cap-" + std::to_string(round),
                              "tx-1",          100 + round,
                              "EUR",           std::nullopt,
                              kNow - 7200'000, "e"};
      writer->insert_sub_record(r);
    }
    checks[p].push_back(watches[p]->check(kNow));
  });
  for (int p = 0; p < 2; ++p) checks[p].push_back(watches[p]->check(kNow));  // the rest
  std::map<std::string, int> found;
  std::size_t publications[2] = {0, 0};
  for (int p = 0; p < 2; ++p) {
    for (const auto& c : checks[p]) {
      for (const auto& f : c.found) ++found[f.subject];
      publications[p] += c.publications.size();
    }
  }
  EXPECT_EQ(failures, 0) << "the processor without the job leaves the scan alone";
  EXPECT_EQ(found.size(), 20u) << "every capture found missing";
  for (const auto& [capture, n] : found) EXPECT_EQ(n, 1) << capture;
  EXPECT_EQ(publications[0] + publications[1], 20u) << "one klarna.reconciliation message each";
  EXPECT_TRUE(publications[0] == 0 || publications[1] == 0) << "one processor holds the job";
  const std::string gauge = "kpay_processor_settlement_findings{kind=\"missing_in_settlement\"} 20";
  const bool a_reports = registries[0].render().find(gauge) != std::string::npos;
  const bool b_reports = registries[1].render().find(gauge) != std::string::npos;
  EXPECT_NE(a_reports, b_reports) << "the open findings reported by the job's holder only";
}

TEST_F(PeriodicJobs, QueuedMessagesArePublishedByTheirProcessorOrAfterItsLeaseByOneOther) {
  auto a = open("proc-a", 2000ms);
  std::unique_ptr<storage::Store> others[] = {open("proc-b", 2000ms), open("proc-c", 2000ms)};
  std::vector<std::int64_t> queued;
  {
    storage::WriteTransaction tx(*a);
    for (int i = 0; i < 6; ++i) {
      queued.push_back(
          a->enqueue_publish({0, "klarna.payment-states", "k", std::to_string(i), ""}));
    }
    tx.commit();
  }
  // proc-a is alive and publishing them: a processor starting now, or taking
  // over, leaves them to it.
  for (auto& o : others) {
    EXPECT_TRUE(o->pending_publications().empty()) << "a starting processor leaves them to a";
    EXPECT_TRUE(o->take_over_publications().empty());
  }
  // Kafka acknowledged two, then proc-a died before the rest.
  a->delete_published(queued[0]);
  a->delete_published(queued[1]);
  a.reset();
  std::map<std::int64_t, int> taken;
  bool done = false;
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (!done && std::chrono::steady_clock::now() < until) {
    const int failures = run_together(1, [&](int p, int) {
      for (const auto& r : others[p]->take_over_publications()) ++taken[r.seq];
    });
    ASSERT_EQ(failures, 0);
    done = taken.size() == 4;
    std::this_thread::sleep_for(100ms);  // the lease runs out on the server's clock
  }
  ASSERT_EQ(taken.size(), 4u) << "the dead processor's messages, after its lease";
  for (std::size_t i = 2; i < queued.size(); ++i) EXPECT_EQ(taken[queued[i]], 1);
  // Now proc-b's or proc-c's, renewed by them: nobody takes them again.
  std::this_thread::sleep_for(1200ms);  // past half the lease: renewed
  for (auto& o : others) (void)o->take_over_publications();
  std::this_thread::sleep_for(1200ms);  // past the first lease, within the renewed one
  for (auto& o : others) {
    for (const auto& r : o->take_over_publications()) ++taken[r.seq];
  }
  for (const auto& [seq, n] : taken) EXPECT_EQ(n, 1) << "message " << seq;
}

}  // namespace
