#include "appliers/common.hpp"

namespace kpay::processor::appliers {

ChangeMessage::ChangeMessage(std::string_view kind, const Event& ev,
                             const std::optional<std::string>& from,
                             const std::optional<std::string>& to) {
  w_.begin_object();
  w_.field("entity_kind", kind).field("entity_id", ev.envelope.entity_id);
  w_.key("previous_state");
  from ? w_.value(*from) : w_.null();
  w_.key("state");
  to ? w_.value(*to) : w_.null();
  w_.field("event_id", ev.envelope.event_id).field("event_type", ev.envelope.event_type);
  w_.field("event_version", ev.envelope.event_version);
  w_.field("occurred_at", ev.envelope.occurred_at);
}

std::string ChangeMessage::done() {
  w_.end_object();
  return w_.take();
}

void link_transaction(StoreView& store, const std::string& transaction_id,
                      const std::string& request_id) {
  auto txn = store.find_transaction(transaction_id);
  if (txn && !txn->payment_request_id) {
    txn->payment_request_id = request_id;
    store.save_transaction(*txn);
  }
}

void link_request(StoreView& store, const std::string& request_id,
                  const std::string& transaction_id) {
  auto req = store.find_request(request_id);
  if (req && !req->payment_transaction_id) {
    req->payment_transaction_id = transaction_id;
    store.save_request(*req);
  }
}

}  // namespace kpay::processor::appliers
