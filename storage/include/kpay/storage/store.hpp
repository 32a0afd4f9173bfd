// The processor's durable state, as the parts a backend implements
// (storage/README.md): one object = one connection/session, used by one
// thread at a time. SQLite: StateStore (state_store.hpp).
#pragma once

#include <string>
#include <utility>

#include "kpay/storage/audit_trail.hpp"
#include "kpay/storage/call_attempts.hpp"
#include "kpay/storage/command_log.hpp"
#include "kpay/storage/dead_letter_store.hpp"
#include "kpay/storage/entity_store.hpp"
#include "kpay/storage/inbox_store.hpp"
#include "kpay/storage/job_leases.hpp"
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
              public CallAttempts,
              public PublishQueue,
              public OffsetStore,
              public CommandLog,
              public AuditTrail,
              public DeadLetterStore,
              public ReadModel,
              public JobLeases {
 public:
  ~Store() override = default;
  using OutboxStore::claim_due_outbox;
  // Settlements and reconciliation findings (SQLite and PostgreSQL keep
  // them); nullptr for a store without (reach it through ledger_of(), which
  // says so).
  virtual SettlementLedger* settlement_ledger() { return nullptr; }
  // The file holding the state (SQLite); "" for a server database.
  virtual std::string database_file() { return {}; }

  // v11: the trace of what is being applied or recorded now, on this store
  // object (storage/README.md, "Trace context"). insert_outbox and
  // enqueue_publish give its traceparent to rows that carry none;
  // append_history gives all of it to history rows that carry none. Set by
  // the batch applier per message and by the outbox worker per answer;
  // cleared by a default TraceContext.
  void set_trace_context(TraceContext c) { trace_ = std::move(c); }
  const TraceContext& trace_context() const { return trace_; }

 private:
  TraceContext trace_;
};

}  // namespace kpay::storage
