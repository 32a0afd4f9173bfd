// The processor's durable state, as the parts a backend implements
// (storage/README.md): one object = one connection/session, used by one
// thread at a time. SQLite: StateStore (state_store.hpp).
#pragma once

#include <string>

#include "kpay/storage/audit_trail.hpp"
#include "kpay/storage/command_log.hpp"
#include "kpay/storage/dead_letter_store.hpp"
#include "kpay/storage/entity_store.hpp"
#include "kpay/storage/inbox_store.hpp"
#include "kpay/storage/outbox_store.hpp"
#include "kpay/storage/publish_queue.hpp"
#include "kpay/storage/read_model.hpp"
#include "kpay/storage/rows.hpp"
#include "kpay/storage/status.hpp"
#include "kpay/storage/store_error.hpp"
#include "kpay/storage/unit_of_work.hpp"

namespace kpay::storage {

class SettlementLedger;  // reconciliation_store.hpp

class Store : public UnitOfWork,
              public InboxStore,
              public EntityStore,
              public OutboxStore,
              public PublishQueue,
              public OffsetStore,
              public CommandLog,
              public AuditTrail,
              public DeadLetterStore,
              public ReadModel {
 public:
  ~Store() override = default;
  using OutboxStore::claim_due_outbox;
  // Settlements and reconciliation findings; nullptr when the backend has no
  // ledger yet (reach it through ledger_of(), which says so).
  virtual SettlementLedger* settlement_ledger() { return nullptr; }
  // The file holding the state (SQLite); "" for a server database.
  virtual std::string database_file() { return {}; }
};

}  // namespace kpay::storage
