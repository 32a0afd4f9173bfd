// The audit trail on Kafka (audit.topic, default klarna.audit;
// schemas/audit-event.schema.json): audit_events rows not published yet are
// queued in the publish queue (at least once, in order) and handed to the
// processor's producer. Runs on the main thread with its own connection.
#pragma once

#include <string>
#include <vector>

#include "kpay/storage/audit_trail.hpp"
#include "kpay/storage/store.hpp"

namespace kpay::processor {

// One audit event as JSON (schemas/audit-event.schema.json); klarnactl audit
// --json prints the same.
std::string render_audit_event(const storage::AuditEvent& e);

class AuditPublisher {
 public:
  AuditPublisher(storage::Store& store, std::string topic)
      : store_(store), topic_(std::move(topic)) {}
  // Queues up to `limit` unpublished events in one transaction; the rows to
  // produce. With several processors on one database, only the one holding
  // the job (storage::kAuditPublisherJob) does; the others get nothing.
  std::vector<storage::PublishRow> take(std::size_t limit = 1000);

 private:
  storage::Store& store_;
  std::string topic_;
};

}  // namespace kpay::processor
