// Contract: CommandLog, AuditTrail, DeadLetterStore and ReadModel
// (storage/README.md, "Dead letters, commands, audit", "Read model").
#include "store_contract.hpp"

namespace kpay::storage::contract {
namespace {

class CommandsContract : public StoreContract {};

CommandRow command(const std::string& id) {
  return CommandRow{id,           "capture", "tx-1",       "hash-1", CommandStatus::accepted,
                    std::nullopt, "tx-1",    std::nullopt, 100,      100};
}

TEST_P(CommandsContract, ACommandIdIsTakenOnceAndFinished) {
  EXPECT_TRUE(store().insert_command(command("c1")));
  auto reuse = command("c1");
  reuse.body_hash = "hash-2";
  EXPECT_FALSE(second_connection()->insert_command(reuse));
  EXPECT_EQ(store().find_command("c1"), command("c1"));  // the first one stays
  store().finish_command("c1", CommandStatus::failed, "declined", 200);
  const auto done = store().find_command("c1");
  EXPECT_EQ(done->status, CommandStatus::failed);
  EXPECT_EQ(done->reason, "declined");
  EXPECT_EQ(done->updated_at_ms, 200);
  EXPECT_FALSE(store().find_command("c2"));
  store().insert_command(command("c2"));
  const auto counts = store().command_counts();
  ASSERT_EQ(counts.size(), 2u);
  std::int64_t total = 0;
  for (const auto& c : counts) {
    EXPECT_EQ(c.group, "capture");
    total += c.count;
  }
  EXPECT_EQ(total, 2);
}

TEST_P(CommandsContract, PaymentContextsByRequestOrReference) {
  PaymentContextRow c;
  c.command_id = "reg-1";
  c.payment_request_reference = "order-7";
  c.account_id = "acc-1";
  c.amount = 900;
  c.currency = "SEK";
  c.interoperability_token = "secret";
  c.created_at_ms = 5;
  store().save_payment_context(c);
  EXPECT_EQ(store().find_payment_context("pr-1", std::string("order-7")), c);
  EXPECT_FALSE(store().find_payment_context("pr-1", std::nullopt));
  EXPECT_TRUE(store().attach_payment_context("reg-1", "pr-1"));
  EXPECT_FALSE(store().attach_payment_context("reg-9", "pr-1"));
  const auto attached = store().find_payment_context("pr-1", std::nullopt);
  ASSERT_TRUE(attached);
  EXPECT_EQ(attached->payment_request_id, "pr-1");
}

TEST_P(CommandsContract, TheAuditTrailAppendsInOrderWithAPublicationCursor) {
  AuditEvent e;
  e.at_ms = 10;
  e.kind = "command";
  e.sender = "shop";
  e.command_id = "c1";
  e.status = "accepted";
  const auto first = store().append_audit(e);
  e.command_id = "c2";
  const auto second = store().append_audit(e);
  EXPECT_LT(first, second);
  EXPECT_EQ(store().audit_published_through(), 0);
  AuditQuery q;
  q.after_seq = first;
  auto rows = store().list_audit(q);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].command_id, "c2");
  store().set_audit_published_through(second);
  EXPECT_EQ(second_connection()->audit_published_through(), second);

  store().add_sender_day_total("shop", "2026-12-07", "EUR", 300);
  store().add_sender_day_total("shop", "2026-12-07", "EUR", 200);
  store().add_sender_day_total("shop", "2026-12-08", "EUR", 999);
  store().add_sender_day_total("other-shop", "2026-12-07", "EUR", 7);
  EXPECT_EQ(store().spent("shop", "EUR", "2026-12-07"), 500);
  EXPECT_EQ(store().spent("shop", "SEK", "2026-12-07"), 0);
  EXPECT_EQ(second_connection()->spent("other-shop", "EUR", "2026-12-07"), 7);
}

// Who sent a command is in its own row (v13): written with it, found with it
// and by sender_of (the audit trail's), none for an unsigned one; another
// command with the same id keeps the first one's sender.
TEST_P(CommandsContract, TheSenderIsKeptInTheCommandsRow) {
  auto signed_command = command("c1");
  signed_command.sender = "refund-service";
  signed_command.sender_key_id = "k2";
  ASSERT_TRUE(store().insert_command(signed_command));
  ASSERT_TRUE(store().insert_command(command("c2")));
  EXPECT_EQ(store().find_command("c1"), signed_command);
  EXPECT_EQ(store().find_command("c2")->sender, std::nullopt);
  EXPECT_EQ(store().find_command("c2")->sender_key_id, std::nullopt);
  EXPECT_EQ(store().sender_of("c1"), "refund-service");
  EXPECT_EQ(store().sender_of("c2"), std::nullopt);
  EXPECT_EQ(store().sender_of("c3"), std::nullopt);

  auto reuse = command("c1");
  reuse.sender = "another-service";
  EXPECT_FALSE(second_connection()->insert_command(reuse));
  EXPECT_EQ(second_connection()->sender_of("c1"), "refund-service");
  store().finish_command("c1", CommandStatus::succeeded, std::nullopt, 300);
  EXPECT_EQ(store().find_command("c1")->sender_key_id, "k2");
}

// A Klarna call of a signed command is audited with the command's sender,
// when it is queued and when it is answered (the outbox's triggers).
TEST_P(CommandsContract, TheCallsOfASignedCommandAreAuditedWithItsSender) {
  auto c = command("c1");
  c.sender = "capture-service";
  c.sender_key_id = "k1";
  OutboxRow o;
  o.operation = OutboxOperation::capture;
  o.entity_id = "tx-1";
  o.idempotency_key = "idem-c1";
  o.request_body = "{}";
  o.created_by_event_id = "command:c1";
  o.account_id = "acc-1";
  o.path = "/payment/transactions/tx-1/captures";
  o.command_id = "c1";
  o.amount = 100;
  o.created_at_ms = o.updated_at_ms = o.next_attempt_at_ms = 100;
  {
    WriteTransaction tx(store());
    ASSERT_TRUE(store().insert_command(c));
    ASSERT_TRUE(store().insert_outbox(o));
    tx.commit();
  }
  const auto claimed = store().claim_due_outbox(100, 10);
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_TRUE(store().update_outbox(
      {claimed[0].id, OutboxStatus::succeeded, 0, 200, 201, std::nullopt, {}}));
  const auto events = store().audit_of_outbox(claimed[0].id);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, "call_queued");
  EXPECT_EQ(events[1].kind, "outcome");
  for (const auto& e : events) EXPECT_EQ(e.sender, "capture-service") << e.kind;
  AuditQuery q;
  q.sender = "capture-service";
  EXPECT_EQ(store().list_audit(q).size(), 2u);
}

// The per-command lookups keep their statements prepared on the connection
// (storage/README.md, "Objects, threads, connections"): each found row must
// leave no read open, or this connection would go on seeing its old snapshot
// (or keep other writers waiting) after another connection commits.
TEST_P(CommandsContract, LookupsThatFoundARowStillSeeAnotherConnectionsCommits) {
  auto signed_command = command("c1");
  signed_command.sender = "shop";
  store().insert_command(signed_command);
  store().add_sender_day_total("shop", "2026-12-07", "EUR", 300);
  PaymentContextRow c;
  c.command_id = "reg-1";
  c.payment_request_id = "pr-1";
  c.account_id = "acc-1";
  c.amount = 900;
  c.currency = "SEK";
  store().save_payment_context(c);
  ASSERT_TRUE(store().find_command("c1"));
  ASSERT_EQ(store().sender_of("c1"), "shop");
  ASSERT_EQ(store().spent("shop", "EUR", "2026-12-07"), 300);
  ASSERT_EQ(store().find_payment_context("pr-1", std::nullopt), c);
  ASSERT_EQ(store().audit_published_through(), 0);

  auto other = second_connection();
  other->finish_command("c1", CommandStatus::succeeded, std::nullopt, 20);
  auto from_other_shop = command("c2");
  from_other_shop.sender = "other-shop";
  other->insert_command(from_other_shop);
  other->add_sender_day_total("other-shop", "2026-12-07", "EUR", 200);
  other->add_sender_day_total("shop", "2026-12-07", "EUR", 50);
  c.amount = 950;
  other->save_payment_context(c);
  other->set_audit_published_through(7);

  EXPECT_EQ(store().find_command("c1")->status, CommandStatus::succeeded);
  EXPECT_EQ(store().sender_of("c2"), "other-shop");
  EXPECT_EQ(store().spent("shop", "EUR", "2026-12-07"), 350);
  EXPECT_EQ(store().find_payment_context("pr-1", std::nullopt)->amount, 950);
  EXPECT_EQ(store().audit_published_through(), 7);
  // And this connection can still write after its reads.
  EXPECT_TRUE(store().insert_command(command("c4")));
  EXPECT_EQ(other->find_command("c4"), command("c4"));
}

TEST_P(CommandsContract, PoisonIsKeptOnceAndReplaysAreCounted) {
  PoisonRow p{"klarna.events", 1, 42, "e1", "undecodable", "{bad", "tx-1"};
  store().insert_poison(p);
  store().insert_poison(p);
  const auto listed = store().list_poison(10);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_TRUE(listed[0].value.empty());  // values only from find_poison
  EXPECT_EQ(listed[0].bytes, 4);
  const auto found = store().find_poison("klarna.events", 1, 42);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->value, "{bad");
  EXPECT_EQ(found->key, "tx-1");

  ReplayRow r{"klarna.events", 1, 42, "processor", "klarna.events", 0, 100};
  EXPECT_FALSE(store().find_replay("klarna.events", 1, 42));
  store().record_replay(r);
  const auto before = store().find_replay("klarna.events", 1, 42);
  ASSERT_TRUE(before);
  EXPECT_EQ(before->replays, 1);
  store().record_replay(r);
  EXPECT_EQ(store().find_replay("klarna.events", 1, 42)->replays, 2);
  store().restore_replay(before, "klarna.events", 1, 42);
  EXPECT_EQ(store().find_replay("klarna.events", 1, 42)->replays, 1);
  store().restore_replay(std::nullopt, "klarna.events", 1, 42);
  EXPECT_TRUE(store().replays().empty());

  // Only the poison message's own inbox claim is released.
  store().insert_inbox({"e1", "klarna.events", 1, 42, ""});
  EXPECT_TRUE(store().release_poison_claim(*found));
  EXPECT_FALSE(store().find_inbox("e1"));
  store().insert_inbox({"e1", "klarna.events", 1, 43, ""});
  EXPECT_FALSE(store().release_poison_claim(*found));
  EXPECT_TRUE(store().find_inbox("e1"));
}

TEST_P(CommandsContract, TheReadModelCountsWhatIsStored) {
  PaymentTransactionRow t;
  t.id = "tx-1";
  t.state = "AUTHORIZED";
  t.state_as_of_ms = 10;
  t.amount = 100;
  t.last_event_id = "e1";
  store().save_transaction(t);
  PaymentRequestRow r;
  r.id = "pr-1";
  r.state_as_of_ms = 5;
  r.last_event_id = "e0";
  store().save_request(r);
  store().insert_command(command("c1"));
  store().insert_poison({"klarna.events", 0, 1, "", "bad", "x", ""});
  const auto o = store().overview();
  EXPECT_EQ(o.dead_letters, 1);
  ASSERT_EQ(o.payments.size(), 2u);
  ASSERT_EQ(o.commands.size(), 1u);
  EXPECT_EQ(o.commands[0].status, "accepted");
  const auto all = store().list_payments(PaymentFilter{});
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].id, "tx-1");  // newest first
  EXPECT_EQ(all[1].state, kNoStateYet);
  PaymentFilter authorized;
  authorized.state = "AUTHORIZED";
  EXPECT_EQ(store().list_payments(authorized).size(), 1u);
  EXPECT_GT(store().schema_version(), 0);
  EXPECT_TRUE(store().list_disputes(10).empty());
}

KPAY_STORE_CONTRACT(CommandsContract);

}  // namespace
}  // namespace kpay::storage::contract
