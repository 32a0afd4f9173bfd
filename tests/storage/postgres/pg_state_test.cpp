// The PostgreSQL state operations (storage/src/postgres/pg_state.hpp) give
// what the SQLite StateStore gives for the same writes: each test does the
// same thing to both and compares every answer.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <tuple>

#include "child_process.hpp"
#include "kpay/storage/state_store.hpp"
#include "pg_test_support.hpp"
#include "postgres/pg_schema.hpp"
#include "postgres/pg_state.hpp"

// Rows are written with designated initializers naming only what matters;
// the optional fields left out are empty (nullopt), as meant.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace pg = kpay::storage::pg;
using namespace kpay::storage;

namespace kpay::test {
namespace {

auto outbox_fields(const OutboxRow& o) {
  return std::tuple(o.id, o.operation, o.entity_id, o.idempotency_key, o.request_body, o.call_token,
                    o.due_by_ms, o.status, o.created_by_event_id, o.account_id, o.method, o.path,
                    o.token_header, o.attempts, o.next_attempt_at_ms, o.created_at_ms,
                    o.updated_at_ms, o.last_status, o.last_error, o.result, o.command_id, o.amount,
                    o.capture_id);
}

void expect_same(const std::vector<OutboxRow>& a, const std::vector<OutboxRow>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(outbox_fields(a[i]) == outbox_fields(b[i])) << "outbox row " << a[i].id;
  }
}

class PgState : public PgSuite {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("pg-state");
    sqlite_ = std::make_unique<StateStore>(dir_ + "/state.db");
    conn_ = std::make_unique<pg::Connection>(connect(fresh_database()));
    pg::migrate(*conn_);
    pg_ = std::make_unique<pg::PgState>(*conn_);
  }
  void TearDown() override {
    sqlite_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::string dir_;
  std::unique_ptr<StateStore> sqlite_;
  std::unique_ptr<pg::Connection> conn_;
  std::unique_ptr<pg::PgState> pg_;
};

TEST_F(PgState, InboxEntitiesAndHistory) {
  for (auto* digest : {"", "0123456789abcdef0123456789abcdef"}) {
    InboxEntry e{std::string("evt-") + digest, "klarna.events", 3, 77, digest};
    EXPECT_EQ(sqlite_->insert_inbox(e), pg_->insert_inbox(e));
    EXPECT_EQ(sqlite_->insert_inbox(e), pg_->insert_inbox(e));
    auto a = sqlite_->find_inbox(e.event_id), b = pg_->find_inbox(e.event_id);
    ASSERT_TRUE(a && b);
    EXPECT_EQ(std::tie(a->topic, a->partition, a->offset, a->digest),
              std::tie(b->topic, b->partition, b->offset, b->digest));
  }
  EXPECT_EQ(pg_->find_inbox("nope"), std::nullopt);

  PaymentRequestRow q{.id = "krn:req:1",
                      .state = "COMPLETED",
                      .state_as_of_ms = 5,
                      .amount = 1000,
                      .currency = "EUR",
                      .payment_transaction_id = "krn:txn:1",
                      .authorization_due_ms = 99,
                      .last_event_id = "e1",
                      .account_id = "acc"};
  sqlite_->save_request(q);
  pg_->save_request(q);
  q.state = "EXPIRED";
  q.reference = "ref-1";
  sqlite_->save_request(q);
  pg_->save_request(q);
  EXPECT_EQ(pg_->find_request(q.id), sqlite_->find_request(q.id));
  EXPECT_EQ(pg_->find_request(q.id), q);

  PaymentTransactionRow t{.id = "krn:txn:1",
                          .state = "AUTHORIZED",
                          .amount = 1000,
                          .payment_request_id = "krn:req:1",
                          .captured_amount = 400,
                          .funding_state = "FUNDED",
                          .last_event_id = "e2"};
  sqlite_->save_transaction(t);
  pg_->save_transaction(t);
  EXPECT_EQ(pg_->find_transaction(t.id), t);
  EXPECT_EQ(pg_->request_for_transaction(t.id), sqlite_->request_for_transaction(t.id));
  EXPECT_EQ(pg_->transaction_for_request(q.id), sqlite_->transaction_for_request(q.id));
  EXPECT_EQ(pg_->transaction_for_request("none"), std::nullopt);

  for (const SubRecordRow& s : {SubRecordRow{"capture", "cap-1", t.id, 400, "EUR", {}, 7, "e3"},
                                SubRecordRow{"refund", "ref-1", t.id, 100, {}, "cap-1", 8, "e4"},
                                SubRecordRow{"capture", "cap-1", t.id, 999, "EUR", {}, 9, "e5"}}) {
    EXPECT_EQ(sqlite_->insert_sub_record(s), pg_->insert_sub_record(s)) << s.id;
  }
  auto sa = sqlite_->sub_records(t.id), sb = pg_->sub_records(t.id);
  ASSERT_EQ(sa.size(), 2u);
  ASSERT_EQ(sb.size(), 2u);
  for (std::size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(std::tie(sa[i].kind, sa[i].id, sa[i].amount, sa[i].currency, sa[i].capture_id,
                       sa[i].occurred_at_ms, sa[i].event_id),
              std::tie(sb[i].kind, sb[i].id, sb[i].amount, sb[i].currency, sb[i].capture_id,
                       sb[i].occurred_at_ms, sb[i].event_id));
  }
  EXPECT_EQ(pg_->find_sub_record("refund", "ref-1")->capture_id, "cap-1");

  RecordRow r{"payout", "po-1", "PAID", 3, {}, 0, 500, "SEK", "e6"};
  sqlite_->save_record(r);
  pg_->save_record(r);
  EXPECT_EQ(pg_->find_record("payout", "po-1")->state,
            sqlite_->find_record("payout", "po-1")->state);
  EXPECT_EQ(pg_->find_record("payout", "po-1")->amount, 500);

  for (int i = 0; i < 3; ++i) {
    HistoryRow h{0,
                 "e" + std::to_string(i),
                 "payment_request",
                 q.id,
                 "payment.request.state-change.completed",
                 "v2",
                 "2026-12-07T00:00:0" + std::to_string(i) + "Z",
                 "applied",
                 i ? std::optional<std::string>("A") : std::nullopt,
                 "B",
                 "ok",
                 "klarna.events",
                 1,
                 i};
    sqlite_->append_history(h);
    pg_->append_history(h);
  }
  auto ha = sqlite_->history(q.id), hb = pg_->history(q.id);
  ASSERT_EQ(ha.size(), 3u);
  ASSERT_EQ(hb.size(), 3u);
  for (std::size_t i = 0; i < ha.size(); ++i) {
    EXPECT_EQ(std::tie(ha[i].event_id, ha[i].occurred_at, ha[i].from_state, ha[i].offset),
              std::tie(hb[i].event_id, hb[i].occurred_at, hb[i].from_state, hb[i].offset));
  }
}

TEST_F(PgState, Disputes) {
  DisputeRow d{.id = "dsp-1",
               .framework = DisputeFramework::legacy,
               .framework_inferred = true,
               .state = "OPEN",
               .state_as_of_ms = 10,
               .representment_expires_at_ms = 5000,
               .last_event_id = "e1",
               .withheld_amount = 300,
               .account_id = "acc"};
  DisputeRow closed = d;
  closed.id = "dsp-2";
  closed.state = "CLOSED";
  closed.state_as_of_ms = 20;
  for (const auto& x : {d, closed}) {
    sqlite_->save_dispute(x);
    pg_->save_dispute(x);
  }
  d.outcome = "WON";
  sqlite_->save_dispute(d);
  pg_->save_dispute(d);
  EXPECT_EQ(pg_->find_dispute("dsp-1"), d);
  EXPECT_EQ(pg_->open_disputes_after(std::nullopt, 1000),
            sqlite_->open_disputes_after(std::nullopt, 1000));
  EXPECT_EQ(pg_->list_disputes(10), sqlite_->list_disputes(10));
  DisputeDeadlineRow dl{"dsp-1", "representment", 5000, 10, "e1", "t", "f"};
  EXPECT_EQ(sqlite_->insert_dispute_deadline(dl), pg_->insert_dispute_deadline(dl));
  EXPECT_EQ(sqlite_->insert_dispute_deadline(dl), pg_->insert_dispute_deadline(dl));
  EXPECT_EQ(pg_->dispute_deadlines("dsp-1"), sqlite_->dispute_deadlines("dsp-1"));
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(sqlite_->mark_deadline_warning("dsp-1", "representment", 5000, "window", 1),
              pg_->mark_deadline_warning("dsp-1", "representment", 5000, "window", 1));
  }
  // The watcher's read of a page of deadlines: one round trip however many.
  std::vector<DeadlineWarningKey> keys;
  for (int i = 0; i < 500; ++i)
    keys.push_back({"dsp-" + std::to_string(i), "representment", 5000, "window"});
  auto trips = conn_->round_trips();
  const auto marked = pg_->deadline_warnings_marked(keys);
  EXPECT_EQ(conn_->round_trips(), trips + 2) << "the statement prepared, then run once";
  trips = conn_->round_trips();
  EXPECT_EQ(pg_->deadline_warnings_marked(keys), marked);
  EXPECT_EQ(conn_->round_trips(), trips + 1);
  EXPECT_EQ(marked, sqlite_->deadline_warnings_marked(keys));
  EXPECT_EQ(std::count(marked.begin(), marked.end(), true), 1);
  EXPECT_TRUE(marked[1]);
  auto a = sqlite_->deadlines(4000, 2000), b = pg_->deadlines(4000, 2000);
  EXPECT_EQ(std::tie(a.dispute_deadlines_soon, a.dispute_deadlines_passed),
            std::tie(b.dispute_deadlines_soon, b.dispute_deadlines_passed));
  EXPECT_EQ(b.dispute_deadlines_soon, 1);
}

TEST_F(PgState, OutboxCommandsAndCounts) {
  for (int i = 0; i < 4; ++i) {
    OutboxRow o;
    o.operation = i == 3 ? OutboxOperation::read_payment_request : OutboxOperation::capture;
    o.entity_id = "krn:txn:" + std::to_string(i % 2);
    o.idempotency_key = "idem-" + std::to_string(i);
    o.request_body = "{}";
    o.call_token = "secret";
    o.due_by_ms = i == 0 ? std::optional<std::int64_t>(1500) : std::nullopt;
    o.created_by_event_id = "e";
    o.path = "/p";
    o.created_at_ms = 100 + i;
    o.command_id = i == 1 ? std::optional<std::string>("cmd-1") : std::nullopt;
    o.amount = 10 * i;
    EXPECT_EQ(sqlite_->insert_outbox(o), pg_->insert_outbox(o));
    EXPECT_EQ(sqlite_->insert_outbox(o), pg_->insert_outbox(o));
  }
  expect_same(sqlite_->outbox("krn:txn:0"), pg_->outbox("krn:txn:0"));
  expect_same(sqlite_->list_outbox(std::nullopt, 10), pg_->list_outbox(std::nullopt, 10));
  EXPECT_EQ(pg_->pending_outbox_amount("krn:txn:1", OutboxOperation::capture),
            sqlite_->pending_outbox_amount("krn:txn:1", OutboxOperation::capture));
  EXPECT_EQ(pg_->pending_outbox_amount("krn:txn:1", OutboxOperation::capture, "cap-x"), 0);
  // One call answered failed on both, then retried by an operator.
  auto claimed = pg::claim_due_outbox(*conn_, {.now_ms = 200, .limit = 1, .owner = "me"});
  auto claimed_sqlite = sqlite_->claim_due_outbox(200, 1);
  expect_same(claimed_sqlite, claimed);
  OutboxUpdate u;
  u.id = claimed.at(0).id;
  u.status = OutboxStatus::failed;
  u.owner = "me";
  u.now_ms = 300;
  u.last_status = 400;
  u.last_error = "400 Bad Request";
  sqlite_->update_outbox(u);
  EXPECT_TRUE(pg::record_outbox_answer(*conn_, u));
  expect_same(sqlite_->list_outbox(OutboxStatus::failed, 10),
              pg_->list_outbox(OutboxStatus::failed, 10));
  expect_same(sqlite_->outbox_due_within(1000, 1000, 10), pg_->outbox_due_within(1000, 1000, 10));
  auto ca = sqlite_->outbox_counts(), cb = pg_->outbox_counts();
  EXPECT_EQ(std::tie(ca.pending, ca.in_flight, ca.succeeded, ca.failed),
            std::tie(cb.pending, cb.in_flight, cb.succeeded, cb.failed));
  auto da = sqlite_->deadlines(2000, 0), db = pg_->deadlines(2000, 0);
  EXPECT_EQ(std::tie(da.calls_pending, da.calls_overdue, da.calls_at_risk, da.calls_failed,
                     da.nearest_call_due_ms),
            std::tie(db.calls_pending, db.calls_overdue, db.calls_at_risk, db.calls_failed,
                     db.nearest_call_due_ms));
  EXPECT_EQ(sqlite_->retry_outbox(u.id, 400), pg_->retry_outbox(u.id, 400));
  EXPECT_EQ(sqlite_->retry_outbox(u.id, 400), pg_->retry_outbox(u.id, 400));
  expect_same({*sqlite_->find_outbox(u.id)}, {*pg_->find_outbox(u.id)});

  CommandRow c{
      "cmd-1", "capture", std::string("k\0", 2), "h", CommandStatus::accepted, {}, "krn:txn:1", 2,
      1,       1};
  EXPECT_EQ(sqlite_->insert_command(c), pg_->insert_command(c));
  EXPECT_EQ(sqlite_->insert_command(c), pg_->insert_command(c));
  sqlite_->finish_command("cmd-1", CommandStatus::failed, "declined", 9);
  pg_->finish_command("cmd-1", CommandStatus::failed, "declined", 9);
  EXPECT_EQ(pg_->find_command("cmd-1"), sqlite_->find_command("cmd-1"));
  PaymentContextRow ctx{.command_id = "cmd-2",
                        .payment_request_reference = "ref-9",
                        .account_id = "acc",
                        .amount = 500,
                        .currency = "EUR",
                        .capture_now = true,
                        .interoperability_token = "tok"};
  sqlite_->save_payment_context(ctx);
  pg_->save_payment_context(ctx);
  EXPECT_EQ(pg_->find_payment_context("krn:req:9", "ref-9"),
            sqlite_->find_payment_context("krn:req:9", "ref-9"));
  EXPECT_EQ(pg_->find_payment_context("krn:req:9", std::nullopt), std::nullopt);
  EXPECT_EQ(sqlite_->attach_payment_context("cmd-2", "krn:req:9"),
            pg_->attach_payment_context("cmd-2", "krn:req:9"));
  EXPECT_EQ(pg_->find_payment_context("krn:req:9", std::nullopt),
            sqlite_->find_payment_context("krn:req:9", std::nullopt));

  auto oa = sqlite_->overview(), ob = pg_->overview();
  auto same = [](const auto& x, const auto& y) {
    if (x.size() != y.size()) return false;
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (std::tie(x[i].group, x[i].status, x[i].count) !=
          std::tie(y[i].group, y[i].status, y[i].count)) {
        return false;
      }
    }
    return true;
  };
  EXPECT_TRUE(same(oa.calls, ob.calls));
  EXPECT_TRUE(same(oa.commands, ob.commands));
  EXPECT_TRUE(same(oa.payments, ob.payments));
}

TEST_F(PgState, PublishQueueOffsetsPoisonAndSettlements) {
  for (int i = 0; i < 3; ++i) {
    PublishRow p{0, "klarna.state", std::string("key\0", 4) + std::to_string(i),
                 std::string("\xff\x00v", 3), ""};
    EXPECT_EQ(sqlite_->enqueue_publish(p), pg_->enqueue_publish(p));
  }
  sqlite_->delete_published(2);
  pg_->delete_published(2);
  auto pa = sqlite_->pending_publications(), pb = pg_->pending_publications();
  ASSERT_EQ(pa.size(), pb.size());
  for (std::size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(std::tie(pa[i].seq, pa[i].topic, pa[i].key, pa[i].value),
              std::tie(pb[i].seq, pb[i].topic, pb[i].key, pb[i].value));
  }
  // Claimed publications: one drainer at a time per row.
  {
    pg::Transaction tx(*conn_);
    EXPECT_EQ(pg_->claim_publications({"a", std::chrono::seconds(60)}).size(), 2u);
    tx.commit();
  }
  {
    pg::Transaction tx(*conn_);
    EXPECT_TRUE(pg_->claim_publications({"b", std::chrono::seconds(60)}).empty())
        << "b waits while a holds the queue";
  }

  for (std::int64_t next : {5, 9, 7}) {
    sqlite_->save_offset("klarna.events", 2, next);
    pg_->save_offset("klarna.events", 2, next);
  }
  EXPECT_EQ(pg_->stored_offset("klarna.events", 2), sqlite_->stored_offset("klarna.events", 2));
  EXPECT_EQ(pg_->stored_offset("klarna.events", 2), 9);
  pg_->reset_offset("klarna.events", 2, 0);
  EXPECT_EQ(pg_->stored_offset("klarna.events", 2), 0);
  EXPECT_EQ(pg_->stored_offset("klarna.events", 3), std::nullopt);

  PoisonRow poison{"klarna.events", 1, 5, "evt-p", "bad json", std::string("\x00{", 2), "k"};
  pg_->insert_poison(poison);
  pg_->insert_poison(poison);
  EXPECT_EQ(pg_->overview().dead_letters, 1);

  SettlementEventRow s{.event_id = "evt-s",
                       .event_type = "settlement.report.created",
                       .entity_id = "st-1",
                       .routed_by = "settlement_id",
                       .settlement_id = "st-1",
                       .amount = 100,
                       .links_json = "{\"a\":\"https://x\"}",
                       .occurred_at_ms = 4};
  EXPECT_EQ(sqlite_->insert_settlement_event(s), pg_->insert_settlement_event(s));
  EXPECT_EQ(sqlite_->insert_settlement_event(s), pg_->insert_settlement_event(s));
  EXPECT_EQ(pg_->settlement_events(5), sqlite_->settlement_events(5));
}

TEST_F(PgState, GapsConflictsDeadLettersAndPaymentList) {
  OffsetGapRow g{.topic = "klarna.events",
                 .partition = 1,
                 .expected = 10,
                 .resume_at = 20,
                 .kind = "deleted",
                 .skipped = 10,
                 .policy = GapPolicy::pause,
                 .detected_at_ms = 5};
  for (int i = 0; i < 2; ++i) {
    auto a = sqlite_->record_gap(g);
    auto b = pg_->record_gap(g);
    EXPECT_EQ(a.second, b.second);
    EXPECT_EQ(std::tie(a.first.id, a.first.status, a.first.resume_at),
              std::tie(b.first.id, b.first.status, b.first.resume_at));
  }
  EXPECT_EQ(pg_->count_open_gaps(), 1);
  EXPECT_EQ(pg_->open_gap("klarna.events", 1)->id, 1);
  EXPECT_EQ(sqlite_->accept_gap(1, 50), pg_->accept_gap(1, 50));
  EXPECT_EQ(sqlite_->accept_gap(1, 60), pg_->accept_gap(1, 60));
  EXPECT_EQ(pg_->stored_offset("klarna.events", 1), 20);
  EXPECT_EQ(pg_->find_gap(1)->decided_at_ms, 50);
  pg_->mark_gap_repaired(1, 3, 70);
  EXPECT_EQ(pg_->list_gaps(GapStatus::accepted, 5).at(0).repair_reads, 3);
  EXPECT_TRUE(pg_->list_gaps(GapStatus::open, 5).empty());

  PaymentRequestRow q{
      .id = "krn:req:1", .state = "COMPLETED", .last_event_id = "e1", .account_id = "acc"};
  sqlite_->save_request(q);
  pg_->save_request(q);
  HistoryRow h{0,           "e1", "payment_request", q.id, "t", "v2", "x", "applied", {},
               "COMPLETED", "ok", "klarna.events",   1,    3};
  sqlite_->append_history(h);
  pg_->append_history(h);
  auto ta = sqlite_->repair_targets("klarna.events", 1),
       tb = pg_->repair_targets("klarna.events", 1);
  ASSERT_EQ(tb.size(), 1u);
  EXPECT_EQ(std::tie(ta[0].kind, ta[0].id, ta[0].state, ta[0].account_id),
            std::tie(tb[0].kind, tb[0].id, tb[0].state, tb[0].account_id));

  EventConflictRow c{"e1",
                     "klarna.events",
                     1,
                     9,
                     std::string(32, 'a'),
                     std::string(32, 'b'),
                     "klarna.events",
                     1,
                     3,
                     80};
  sqlite_->insert_conflict(c);
  pg_->insert_conflict(c);
  pg_->insert_conflict(c);
  ASSERT_EQ(pg_->list_conflicts(5).size(), 1u);
  EXPECT_EQ(pg_->list_conflicts(5)[0].first_digest, std::string(32, 'b'));

  PoisonRow poison{"klarna.events", 1, 5, "evt-p", "bad", std::string("\x00{", 2), "key-1"};
  sqlite_->insert_poison(poison);
  pg_->insert_poison(poison);
  InboxEntry claim{"evt-p", "klarna.events", 1, 5, ""};
  sqlite_->insert_inbox(claim);
  pg_->insert_inbox(claim);
  auto pa = sqlite_->find_poison("klarna.events", 1, 5),
       pb = pg_->find_poison("klarna.events", 1, 5);
  ASSERT_TRUE(pa && pb);
  EXPECT_EQ(std::tie(pa->event_id, pa->value, pa->key, pa->bytes),
            std::tie(pb->event_id, pb->value, pb->key, pb->bytes));
  EXPECT_EQ(pg_->list_poison(5).size(), 1u);
  EXPECT_EQ(pg_->list_poison(5)[0].value, "");
  ReplayRow r{"klarna.events", 1, 5, "processor", "klarna.events", 0, 90};
  for (int i = 0; i < 2; ++i) {
    sqlite_->record_replay(r);
    pg_->record_replay(r);
  }
  EXPECT_EQ(pg_->find_replay("klarna.events", 1, 5)->replays, 2);
  auto before = pg_->find_replay("klarna.events", 1, 5);
  pg_->record_replay(r);
  pg_->restore_replay(before, "klarna.events", 1, 5);
  EXPECT_EQ(pg_->replays().at(0).replays, 2);
  pg_->restore_replay(std::nullopt, "klarna.events", 1, 5);
  EXPECT_TRUE(pg_->replays().empty());
  EXPECT_EQ(sqlite_->release_poison_claim(*pa), pg_->release_poison_claim(*pb));
  EXPECT_EQ(pg_->find_inbox("evt-p"), std::nullopt);

  PaymentTransactionRow t{
      .id = "krn:txn:1", .state_as_of_ms = 9, .amount = 5, .last_event_id = "e2"};
  sqlite_->save_transaction(t);
  pg_->save_transaction(t);
  for (const PaymentFilter& f :
       {PaymentFilter{}, PaymentFilter{.kind = "payment_transaction"},
        PaymentFilter{.state = std::string(kNoStateYet)}, PaymentFilter{.since_ms = 5}}) {
    auto a = sqlite_->list_payments(f), b = pg_->list_payments(f);
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(std::tie(a[i].kind, a[i].id, a[i].state, a[i].amount, a[i].linked_id),
                std::tie(b[i].kind, b[i].id, b[i].state, b[i].amount, b[i].linked_id));
    }
  }
}

}  // namespace
}  // namespace kpay::test
