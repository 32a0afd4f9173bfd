// Contract: UnitOfWork (storage/README.md, "Unit of work").
#include "store_contract.hpp"

namespace kpay::storage::contract {
namespace {

class UnitOfWorkContract : public StoreContract {};

InboxEntry inbox(const std::string& id, std::int64_t offset) {
  return InboxEntry{id, "klarna.events", 0, offset, ""};
}

TEST_P(UnitOfWorkContract, CommitKeepsEveryWriteOfTheBatch) {
  {
    WriteTransaction tx(store());
    EXPECT_TRUE(store().insert_inbox(inbox("e1", 1)));
    store().save_offset("klarna.events", 0, 2);
    store().enqueue_publish(PublishRow{0, "klarna.state", "k", "v", ""});
    tx.commit();
  }
  auto other = second_connection();
  EXPECT_TRUE(other->find_inbox("e1"));
  EXPECT_EQ(other->stored_offset("klarna.events", 0), 2);
  EXPECT_EQ(other->pending_publications().size(), 1u);
}

TEST_P(UnitOfWorkContract, NoCommitKeepsNothing) {
  {
    WriteTransaction tx(store());
    EXPECT_TRUE(store().insert_inbox(inbox("e1", 1)));
    store().save_offset("klarna.events", 0, 2);
    store().enqueue_publish(PublishRow{0, "klarna.state", "k", "v", ""});
  }
  EXPECT_FALSE(store().find_inbox("e1"));
  EXPECT_FALSE(store().stored_offset("klarna.events", 0));
  EXPECT_TRUE(store().pending_publications().empty());
}

TEST_P(UnitOfWorkContract, AnExceptionRollsTheBatchBack) {
  try {
    WriteTransaction tx(store());
    store().insert_inbox(inbox("e1", 1));
    throw std::runtime_error("the batch failed");
  } catch (const std::runtime_error&) {
  }
  EXPECT_FALSE(store().find_inbox("e1"));
  // The store is usable again: the next batch commits.
  WriteTransaction tx(store());
  EXPECT_TRUE(store().insert_inbox(inbox("e1", 1)));
  tx.commit();
  EXPECT_TRUE(store().find_inbox("e1"));
}

TEST_P(UnitOfWorkContract, OtherConnectionsSeeOnlyCommittedWork) {
  auto other = second_connection();
  WriteTransaction tx(store());
  store().insert_inbox(inbox("e1", 1));
  EXPECT_FALSE(other->find_inbox("e1"));
  tx.commit();
  EXPECT_TRUE(other->find_inbox("e1"));
}

TEST_P(UnitOfWorkContract, WithoutATransactionEachCallCommitsAlone) {
  EXPECT_TRUE(store().insert_inbox(inbox("e1", 1)));
  EXPECT_TRUE(second_connection()->find_inbox("e1"));
}

KPAY_STORE_CONTRACT(UnitOfWorkContract);

}  // namespace
}  // namespace kpay::storage::contract
