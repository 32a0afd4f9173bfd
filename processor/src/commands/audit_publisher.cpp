#include "kpay/processor/audit_publisher.hpp"

#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"

namespace kpay::processor {

std::string render_audit_event(const storage::AuditEvent& e) {
  core::JsonWriter w;
  w.begin_object().field("seq", e.seq).field("at", core::rfc3339_ms(e.at_ms));
  w.field("kind", e.kind);
  auto maybe = [&](std::string_view k, const std::optional<std::string>& v) {
    if (v) w.field(k, *v);
  };
  auto maybe_int = [&](std::string_view k, const std::optional<std::int64_t>& v) {
    if (v) w.field(k, *v);
  };
  maybe("sender", e.sender);
  maybe("command_id", e.command_id);
  maybe("operation", e.operation);
  maybe("entity_id", e.entity_id);
  maybe_int("outbox_id", e.outbox_id);
  maybe_int("attempt", e.attempt);
  w.field("status", e.status);
  maybe("detail", e.detail);
  maybe("request", e.request);
  maybe_int("klarna_status", e.klarna_status);
  maybe("operator", e.operator_name);
  w.end_object();
  return w.take();
}

std::vector<storage::PublishRow> AuditPublisher::take(std::size_t limit) {
  std::vector<storage::PublishRow> rows;
  // Several processors on one database: the one holding the job publishes.
  if (!store_.hold_job(storage::kAuditPublisherJob)) return rows;
  storage::WriteTransaction tx(store_);
  storage::AuditQuery q;
  q.after_seq = store_.audit_published_through();
  q.limit = limit;
  const auto events = store_.list_audit(q);
  if (events.empty()) return rows;
  for (const auto& e : events) {
    storage::PublishRow row{0, topic_, e.command_id.value_or(e.entity_id.value_or("audit")),
                            render_audit_event(e), ""};
    row.seq = store_.enqueue_publish(row);
    rows.push_back(std::move(row));
  }
  store_.set_audit_published_through(events.back().seq);
  tx.commit();
  return rows;
}

}  // namespace kpay::processor
