// A follow-up as its outbox row: the operation, the idempotency key fixed
// before the first send (the same inputs give the same key in every process
// and on every retry), and the call's parts (klarna_calls.cpp).
#include "calls/klarna_calls.hpp"
#include "kpay/core/overloaded.hpp"
#include "sha256.hpp"

namespace kpay::processor {

using core::Overloaded;

storage::OutboxOperation operation_of(const FollowUp& f) {
  using Op = storage::OutboxOperation;
  return std::visit(Overloaded{
                        [](const FinalAuthorization&) { return Op::final_authorization; },
                        [](const Confirm&) { return Op::confirm; },
                        [](const Capture&) { return Op::capture; },
                        [](const ReadPaymentRequest&) { return Op::read_payment_request; },
                        [](const ReadTransaction&) { return Op::read_transaction; },
                        [](const ReadCapture&) { return Op::read_capture; },
                        [](const ReadRefund&) { return Op::read_refund; },
                        [](const InitialAuthorization&) { return Op::initial_authorization; },
                        [](const Refund& r) {
                          return r.payment_capture_id ? Op::refund_capture : Op::refund_transaction;
                        },
                        [](const Void&) { return Op::void_transaction; },
                        [](const CancelRequest&) { return Op::cancel; },
                        [](const DisputeAcceptLoss&) { return Op::dispute_accept_loss; },
                        [](const DisputeRepresent&) { return Op::dispute_represent; },
                        [](const DisputeAppeal&) { return Op::dispute_appeal; },
                        [](const ReadDispute&) { return Op::read_dispute; },
                        [](const SdkToken&) { return Op::sdk_token; },
                        [](const FetchSettlement&) { return Op::fetch_settlement; },
                        [](const FetchSettlementTransactions& g) {
                          return g.csv ? Op::fetch_settlement_csv
                                       : Op::fetch_settlement_transactions;
                        },
                        [](const FetchPayoutStatus&) { return Op::fetch_payout_status; },
                    },
                    f);
}

std::string_view operation_name(const FollowUp& f) {
  return storage::to_string(operation_of(f));
}

std::string idempotency_key(std::string_view operation, std::string_view entity_id,
                            std::string_view discriminator) {
  std::string material;
  material.reserve(operation.size() + entity_id.size() + discriminator.size() + 2);
  material.append(operation).push_back('\n');
  material.append(entity_id).push_back('\n');
  material.append(discriminator);
  const std::string digest = sha256(material);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string key = "kpay-";
  key += operation;
  key += '-';
  for (std::size_t i = 0; i < 16 && i < digest.size();
       ++i) {  // 128 bits: collisions are not a concern
    const auto byte = static_cast<unsigned char>(digest[i]);
    key += kHex[byte >> 4];
    key += kHex[byte & 0xf];
  }
  return key;
}

storage::OutboxRow outbox_row(const FollowUp& f, const FollowUpOrigin& origin) {
  Call call = call_for(f, origin);
  storage::OutboxRow o;
  o.operation = operation_of(f);
  o.entity_id = std::move(call.entity_id);
  o.idempotency_key =
      idempotency_key(storage::to_string(o.operation), call.key_entity, call.key_discriminator);
  o.request_body = std::move(call.body);
  if (!call.path_token.empty()) o.call_token = std::move(call.path_token);
  for (const auto& [name, value] : call.token_headers) {
    if (!o.token_header.empty()) {
      o.token_header += '\n';
      o.call_token += '\n';
    }
    o.token_header += name;
    o.call_token += value;
  }
  o.due_by_ms = origin.due_by_ms;
  o.created_by_event_id = origin.caused_by;
  o.account_id = origin.account_id;
  o.method = std::string(call.method);
  o.path = std::move(call.path);
  o.next_attempt_at_ms = origin.now_ms;
  o.created_at_ms = origin.now_ms;
  o.updated_at_ms = origin.now_ms;
  o.command_id = std::move(call.command_id);
  o.amount = call.amount;
  o.capture_id = std::move(call.capture_id);
  return o;
}

}  // namespace kpay::processor
