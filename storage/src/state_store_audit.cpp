// The state store's audit trail (audit_trail.hpp): AuditLog (audit_log.cpp)
// on the store's own connection, so an append joins the caller's transaction;
// one per store, kept in Impl with its prepared statements.
#include "kpay/storage/audit_log.hpp"
#include "kpay/storage/state_store.hpp"
#include "state_store_impl.hpp"

namespace kpay::storage {

std::int64_t StateStore::append_audit(const AuditEvent& e) {
  return impl_->audit().append(e);
}

std::vector<AuditEvent> StateStore::list_audit(const AuditQuery& q) {
  return impl_->audit().list(q);
}

std::vector<AuditEvent> StateStore::audit_of_outbox(std::int64_t outbox_id) {
  return AuditLog(database()).for_outbox(outbox_id);
}

void StateStore::add_sender_day_total(const std::string& sender, const std::string& day,
                                      const std::string& currency, std::int64_t amount) {
  impl_->audit().add_sender_day_total(sender, day, currency, amount);
}

std::optional<std::string> StateStore::sender_of(const std::string& command_id) {
  return impl_->audit().sender_of(command_id);
}

std::int64_t StateStore::spent(const std::string& sender, const std::string& currency,
                               const std::string& day) {
  return impl_->audit().spent(sender, currency, day);
}

std::int64_t StateStore::audit_published_through() {
  return impl_->audit().published_through();
}

void StateStore::set_audit_published_through(std::int64_t seq) {
  impl_->audit().set_published_through(seq);
}

}  // namespace kpay::storage
