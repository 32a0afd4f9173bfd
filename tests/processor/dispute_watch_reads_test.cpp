// The dispute deadline watcher on a store that has run for years: it reads the
// open disputes in pages outside the write lock (another connection writes
// meanwhile), every open dispute counts in its figures however many pages
// they take, and a dispute closed between the read and the write is not
// warned about. A real SQLite file; each statement the watcher's connection
// runs is seen through SQLite's trace hook.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "kpay/processor/dispute_deadlines.hpp"
#include "kpay/storage/state_store.hpp"

using namespace kpay;

namespace {

constexpr std::int64_t T0 = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
constexpr std::int64_t kHour = 3'600'000;

// What the watcher's connection runs: each statement's text (and with its
// bound values) and whether a transaction was open on that connection when it
// started.
struct Trace {
  struct Statement {
    std::string sql;
    bool in_transaction;
    std::string expanded;
  };
  std::vector<Statement> statements;
  std::function<void(const Statement&)> on_statement;

  static int on_trace(unsigned, void* ctx, void* p, void*) {
    auto* t = static_cast<Trace*>(ctx);
    auto* stmt = static_cast<sqlite3_stmt*>(p);
    const char* sql = sqlite3_sql(stmt);
    char* expanded = sqlite3_expanded_sql(stmt);
    t->statements.push_back({sql ? sql : "", sqlite3_get_autocommit(sqlite3_db_handle(stmt)) == 0,
                             expanded ? expanded : ""});
    sqlite3_free(expanded);
    if (t->on_statement) t->on_statement(t->statements.back());
    return 0;
  }
  void attach(storage::StateStore& s) {
    sqlite3_trace_v2(s.database().handle(), SQLITE_TRACE_STMT, &Trace::on_trace, this);
  }
  static void detach(storage::StateStore& s) {
    sqlite3_trace_v2(s.database().handle(), 0, nullptr, nullptr);
  }
};

bool reads_open_disputes(const Trace::Statement& s) {
  return s.sql.find("FROM disputes") != std::string::npos &&
         s.sql.find("'CLOSED'") != std::string::npos;
}

class DisputeWatchReads : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::make_temp_dir("dispute-watch");
    store_ = std::make_unique<storage::StateStore>(dir_ + "/state.db");
    other_ = std::make_unique<storage::StateStore>(dir_ + "/state.db");
    sqlite3_busy_timeout(other_->database().handle(), 0);  // busy at once, never waits
  }
  void TearDown() override {
    Trace::detach(*store_);
    other_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  static storage::DisputeRow dispute(const std::string& id, const char* state,
                                     std::int64_t due_ms) {
    storage::DisputeRow d;
    d.id = id;
    d.framework = storage::DisputeFramework::current;
    d.state = state;
    d.representment_expires_at_ms = due_ms;
    d.last_event_id = "ev-" + id;
    return d;
  }
  void save(const storage::DisputeRow& d) {
    storage::WriteTransaction tx(*store_);
    store_->save_dispute(d);
    tx.commit();
  }
  // Whether another connection can take the write lock now (and write).
  bool other_can_write(const std::string& id) {
    try {
      storage::WriteTransaction tx(*other_);
      other_->save_dispute(dispute(id, "CLOSED", T0));
      tx.commit();
      return true;
    } catch (const storage::StoreError&) {
      return false;
    }
  }

  std::string dir_;
  std::unique_ptr<storage::StateStore> store_;
  std::unique_ptr<storage::StateStore> other_;
};

// 12 open disputes (3 due within the window, 1 overdue, 8 later) among 30
// closed ones; a page of 5 takes three pages, the last one short.
TEST_F(DisputeWatchReads, AnotherConnectionWritesWhileTheWatcherReads) {
  for (int i = 0; i < 30; ++i) save(dispute("closed-" + std::to_string(i), "CLOSED", T0 + kHour));
  for (int i = 0; i < 12; ++i) {
    const std::int64_t due = i < 3 ? T0 + kHour * (i + 1) : i == 3 ? T0 - kHour : T0 + 100 * kHour;
    save(dispute("open-" + std::to_string(100 + i), "INITIATED", due));
  }
  processor::DeadlineWatchSettings settings;
  settings.page_size = 5;
  processor::DisputeDeadlineWatcher watcher(*store_, settings, [] { return T0; });
  Trace trace;
  int reads = 0, written = 0;
  trace.on_statement = [&](const Trace::Statement& s) {
    if (!reads_open_disputes(s)) return;
    ++reads;
    if (other_can_write("written-while-read-" + std::to_string(reads))) ++written;
  };
  trace.attach(*store_);

  const auto c = watcher.check();
  EXPECT_EQ(reads, 3);  // 5 + 5 + 2
  EXPECT_EQ(written, reads) << "the watcher held the write lock while it read";
  for (const auto& s : trace.statements) {
    EXPECT_FALSE(reads_open_disputes(s) && s.in_transaction) << s.sql;
  }
  EXPECT_EQ(c.stats.open_disputes, 12);
  EXPECT_EQ(c.stats.due_within_window, 3);
  EXPECT_EQ(c.stats.overdue, 1);
  EXPECT_EQ(c.stats.seconds_to_nearest, 3600);
  EXPECT_EQ(c.warnings.size(), 4u);
  EXPECT_EQ(c.publications.size(), 4u);
}

// The figures of a check in pages of 1, 2, 3 and 1000 are the same, and
// cover every open dispute; a dispute with two deadlines counts once.
TEST_F(DisputeWatchReads, EveryOpenDisputeCountsWhateverThePageSize) {
  for (int i = 0; i < 7; ++i) {
    save(dispute("d-" + std::to_string(10 + 2 * i), "CLOSED", T0 + kHour));
    auto d = dispute("d-" + std::to_string(11 + 2 * i), "INITIATED", T0 + (i - 2) * kHour);
    if (i == 6) d.evidence_response_deadline_ms = T0 + 200 * kHour;  // one dispute, two deadlines
    save(d);
  }
  std::vector<processor::DeadlineStats> figures;
  for (std::size_t page : {1, 2, 3, 1000}) {
    processor::DeadlineWatchSettings settings;
    settings.page_size = page;
    processor::DisputeDeadlineWatcher watcher(*store_, settings, [] { return T0; });
    Trace trace;
    int pages = 0;
    trace.on_statement = [&](const Trace::Statement& st) { pages += reads_open_disputes(st); };
    trace.attach(*store_);
    figures.push_back(watcher.check().stats);
    Trace::detach(*store_);
    EXPECT_EQ(pages, static_cast<int>(7 / page + 1)) << page;  // the last page is short
  }
  for (const auto& f : figures) {
    EXPECT_EQ(f.open_disputes, 7);
    EXPECT_EQ(f.overdue, 2);            // T0-2h, T0-1h
    EXPECT_EQ(f.due_within_window, 5);  // T0 .. T0+4h
    EXPECT_EQ(f.seconds_to_nearest, 0);
  }
}

// A dispute that closes after the watcher read it open is not warned about
// (nor marked: were it reopened, it would be warned then); the other is.
// Nothing new to warn about: no write transaction at all.
TEST_F(DisputeWatchReads, ADisputeClosedBetweenTheReadAndTheWriteGetsNoWarning) {
  save(dispute("dis-a", "INITIATED", T0 + kHour));
  save(dispute("dis-b", "INITIATED", T0 + 2 * kHour));
  // The page is read (its statement done, its snapshot let go) before the
  // watcher asks whether it marked dis-a's warning: dis-a closes then.
  processor::DisputeDeadlineWatcher watcher(*store_, {}, [] { return T0; });
  bool closed = false;
  Trace asked;
  asked.on_statement = [&](const Trace::Statement& st) {
    if (closed || st.sql.find("FROM dispute_deadline_warnings") == std::string::npos) return;
    // Nearest deadline first: the first warning asked about is dis-a's.
    ASSERT_NE(st.expanded.find("'dis-a'"), std::string::npos) << st.expanded;
    storage::WriteTransaction tx(*other_);
    other_->save_dispute(dispute("dis-a", "CLOSED", T0 + kHour));
    tx.commit();
    closed = true;
  };
  asked.attach(*store_);
  auto c = watcher.check();
  ASSERT_TRUE(closed);
  ASSERT_EQ(c.warnings.size(), 1u);
  EXPECT_EQ(c.warnings[0].deadline.dispute_id, "dis-b");
  ASSERT_EQ(c.publications.size(), 1u);
  EXPECT_EQ(c.publications[0].key, "dis-b");
  Trace::detach(*store_);
  EXPECT_FALSE(store_->deadline_warning_marked("dis-a", "representment", T0 + kHour, "window"));

  Trace trace;
  trace.attach(*store_);
  c = watcher.check();
  EXPECT_TRUE(c.warnings.empty());
  EXPECT_EQ(c.stats.due_within_window, 1);
  for (const auto& s : trace.statements) EXPECT_FALSE(s.in_transaction) << s.sql;
  EXPECT_FALSE(trace.statements.empty());
}

}  // namespace
