// The follow-up table (docs/klarna/PAYMENTS-API.md §2, §4): which call a
// state asks for. How each call is written and sent: klarna_calls.cpp and
// outbox_rows.cpp; the settings: follow_up_settings.cpp. Pure functions: no
// store, no clock.
#include "kpay/processor/follow_ups.hpp"

#include "kpay/processor/state_machines.hpp"

namespace kpay::processor {

namespace {

// What the call for an approval is priced with: the registered context when
// a `register` command gave one, else the webhook's attributes and the policy.
struct Terms {
  std::optional<std::int64_t> amount;
  std::optional<std::string> currency;
  std::optional<std::string> reference;
  bool capture_now = false;
  PurchaseExtras extras;
};

Terms terms_for(const RequestContext& c, const FollowUpSettings& s) {
  const auto& row = c.row;
  if (const auto& x = c.context) {
    return {x->amount,
            x->currency,
            x->payment_transaction_reference ? x->payment_transaction_reference : row.reference,
            x->capture_now,
            {x->supplementary_purchase_data, x->interoperability_token, x->interoperability_data}};
  }
  return {row.amount,
          row.currency,
          row.reference,
          s.capture_for(*row.account_id) == CapturePolicy::now,
          {}};
}

}  // namespace

std::vector<FollowUp> on_request_state(const RequestContext& c, const FollowUpSettings& s) {
  const auto& row = c.row;
  const auto state = row.state ? parse_state<RequestState>(*row.state) : std::nullopt;
  if (state != RequestState::completed && state != RequestState::pending_confirmation) return {};
  if (c.follow_up_exists || !row.account_id) return {};
  Terms t = terms_for(c, s);
  const bool priced = t.amount && t.currency;
  if (state == RequestState::completed && c.session_token && priced) {
    return {FinalAuthorization{.payment_request_id = row.id,
                               .token = *c.session_token,
                               .header = c.legacy_payment_token ? TokenHeader::legacy_payment
                                                                : TokenHeader::network_session,
                               .amount = *t.amount,
                               .currency = *t.currency,
                               .reference = t.reference,
                               .capture_now = t.capture_now,
                               .extras = std::move(t.extras)}};
  }
  if (state == RequestState::pending_confirmation && c.confirmation_token && priced) {
    return {Confirm{.payment_request_id = row.id,
                    .confirmation_token = *c.confirmation_token,
                    .amount = *t.amount,
                    .currency = *t.currency,
                    .reference = t.reference,
                    .capture_now = t.capture_now,
                    .command_id = std::nullopt}};
  }
  // The approval cannot be used without its token, nor priced without the
  // amount: read the request instead of guessing.
  return {ReadPaymentRequest{row.id}};
}

std::vector<FollowUp> on_transaction_authorized(const storage::PaymentTransactionRow& t,
                                                const FollowUpSettings& s) {
  if (!t.account_id || !t.amount || t.captured_amount >= *t.amount) return {};
  // Capture only while AUTHORIZED (a state we have not learnt yet does not stop it).
  if (t.state && parse_state<TransactionState>(*t.state) != TransactionState::authorized) {
    return {};
  }
  if (s.capture_for(*t.account_id) != CapturePolicy::after_authorization) return {};
  Capture c;
  c.payment_transaction_id = t.id;
  c.amount = *t.amount - t.captured_amount;
  c.reference = t.reference;
  return {c};
}

}  // namespace kpay::processor
