// Which Klarna calls a state change causes, in one place (docs/klarna/PAYMENTS-API.md §4,
// "Webhook → follow-up map"). The appliers (webhooks) and the outbox worker
// (answers of earlier calls) both ask here, so a capture is decided in exactly
// one table whichever path saw the authorization first; the idempotency key a
// follow-up gets depends only on what makes the operation unique, so both
// paths produce the same key and the outbox keeps one row.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "kpay/processor/commands.hpp"
#include "kpay/processor/follow_up_settings.hpp"
#include "kpay/storage/store.hpp"

namespace kpay::processor {

// ---- the typed follow-ups --------------------------------------------------------
enum class TokenHeader { network_session, legacy_payment };  // which header carries it
// What a registered payment context (a `register` command, or an `authorize`
// answered STEP_UP_REQUIRED) adds to the final authorization: sent as given.
struct PurchaseExtras {
  std::optional<std::string> supplementary_purchase_data;  // a JSON object
  std::optional<std::string> interoperability_token;       // sensitive; a header
  // The JSON text of the string as received, spliced in byte for byte.
  std::optional<std::string> interoperability_data;
};
struct FinalAuthorization {
  std::string payment_request_id;
  std::string token;  // sensitive
  TokenHeader header = TokenHeader::network_session;
  std::int64_t amount = 0;
  std::string currency;
  std::optional<std::string> reference;
  bool capture_now = false;
  PurchaseExtras extras;
};
// `payment_request_id`: the request (a webhook's confirm), or the command's key
// when an `authorize` command's interoperability token is
// PAYMENT_PENDING_CONFIRMATION (then `command_id` is set and keys it).
struct Confirm {
  std::string payment_request_id;
  std::string confirmation_token;  // sensitive
  std::int64_t amount = 0;
  std::string currency;
  std::optional<std::string> reference;
  bool capture_now = false;
  std::optional<std::string> command_id;
};
struct Capture {
  std::string payment_transaction_id;
  std::int64_t amount = 0;
  std::optional<std::string> reference;  // payment_capture_reference
  // The downstream command that asked for it; none = the automatic capture
  // (policy after_authorization), keyed ("capture", transaction, "auto").
  std::optional<std::string> command_id;
  std::optional<std::string> supplementary_capture_data;  // a JSON object, as sent
};
// ---- the follow-ups only a downstream command asks for (commands.hpp); each
// keyed by its command_id, so a resent command maps to the same key.
// The initial authorization (no session token): the acquiring partner starts
// the payment. `entity_id` is the command's key (Klarna has no id yet).
struct InitialAuthorization {
  std::string command_id;
  std::string entity_id;
  std::int64_t amount = 0;
  std::string currency;
  std::string reference;  // payment_transaction_reference
  bool capture_now = false;
  std::optional<std::string> customer_token;  // sensitive; Klarna-Customer-Token
  std::optional<std::string> step_up_config;  // JSON text, as received
  PurchaseExtras extras;
  std::optional<std::string> payment_option_id;       // request_payment_transaction's
  std::optional<std::string> request_customer_token;  // JSON text, as received
};
// The Interoperability API: POST …/interoperability/sdk-tokens with the
// token in Klarna-Interoperability-Token, byte for byte. Keyed by command_id.
struct SdkToken {
  std::string command_id;
  std::string entity_id;               // the command's key
  std::string interoperability_token;  // sensitive
};
// A refund of the transaction, or (payment_capture_id) of one capture.
struct Refund {
  std::string command_id;
  std::string payment_transaction_id;
  std::optional<std::string> payment_capture_id;
  std::int64_t amount = 0;
  std::optional<std::string> reference;
};
struct Void {
  std::string command_id;
  std::string payment_transaction_id;
};
struct CancelRequest {
  std::string command_id;
  std::string payment_request_id;
};
// ---- dispute operations (dispute_* commands), keyed by their command_id. The
// stored path starts with "{disputes}" (the configured prefix, filled in when
// the call is sent: request_path()).
struct DisputeAcceptLoss {
  std::string command_id;
  std::string payment_dispute_id;
};
struct DisputeRepresent {
  std::string command_id;
  std::string payment_dispute_id;
  std::vector<DisputeAttachmentRef> attachments;
  std::optional<std::string> additional_information;
  std::optional<std::int64_t> partner_proposed_refund_amount;
};
struct DisputeAppeal {
  std::string command_id;
  std::string payment_dispute_id;
  std::vector<DisputeAttachmentRef> attachments;
  std::optional<std::string> additional_information;
};
// A GET of the dispute: after a 409 on an operation (then `command_id` names
// the command whose final result the read reports).
struct ReadDispute {
  std::string payment_dispute_id;
  std::optional<std::string> command_id;
};
struct ReadPaymentRequest {
  std::string payment_request_id;
};
// `command_id`: a read back after a 2xx money answer that lacked the new id;
// its answer books the operation and reports the command's result.
struct ReadTransaction {
  std::string payment_transaction_id;
  std::optional<std::string> command_id = std::nullopt;
};
struct ReadCapture {
  std::string payment_transaction_id;
  std::string payment_capture_id;
};
struct ReadRefund {
  std::string payment_transaction_id;
  std::string payment_refund_id;
};
// ---- settlements (docs/klarna/SETTLEMENTS.md): GETs of one settlement's report,
// keyed by the settlement (and page), so a report announced twice is fetched
// once. Their stored paths start with "{root}": the Settlements API is not
// under /v2/accounts/{account}.
struct FetchSettlement {
  std::string settlement_id;
};
// One page of the settlement's transactions (`page`: path and query), or
// (`csv`) the whole CSV report.
struct FetchSettlementTransactions {
  std::string settlement_id;
  std::string page;
  bool csv = false;
};
struct FetchPayoutStatus {
  std::string settlement_id;
};
using FollowUp =
    std::variant<FinalAuthorization, Confirm, Capture, ReadPaymentRequest, ReadTransaction,
                 ReadCapture, ReadRefund, InitialAuthorization, Refund, Void, CancelRequest,
                 DisputeAcceptLoss, DisputeRepresent, DisputeAppeal, ReadDispute, SdkToken,
                 FetchSettlement, FetchSettlementTransactions, FetchPayoutStatus>;

// Operation names stored in outbox.operation.
std::string_view operation_name(const FollowUp& f);
storage::OutboxOperation operation_of(const FollowUp& f);

// Where a follow-up comes from: the account it is about, the event (or call)
// that caused it, and when it must be done by.
struct FollowUpOrigin {
  std::string account_id;  // metadata.subject_account_id
  std::string caused_by;   // event_id, or "outbox:<id>" for a call's answer
  std::int64_t now_ms = 0;
  std::optional<std::int64_t> due_by_ms;
  // An idempotency discriminator for reads (several reads of one entity may be
  // due over its life); ignored by money-moving operations, whose key derives
  // from the token or entity alone.
  std::string read_discriminator;
};

// The outbox row of a follow-up: method, path under /v2/accounts/{account},
// body, token header, idempotency key fixed now.
storage::OutboxRow outbox_row(const FollowUp& f, const FollowUpOrigin& origin);

// The stored path of a Dispute API call starts with this placeholder.
inline constexpr std::string_view kDisputesPlaceholder = "{disputes}";
// …and that of a call not under an account (the Settlements API) with this.
inline constexpr std::string_view kRootPlaceholder = "{root}";
// The Dispute API's root for an account: the configured prefix with
// "{account}" replaced by the percent-encoded id.
std::string dispute_api_root(const FollowUpSettings& s, std::string_view account_id);
// Where an outbox row is sent (before "{token}" is filled in): its path under
// /v2/accounts/{account}, or under the Dispute API's root for "{disputes}…".
std::string request_path(const storage::OutboxRow& row, const FollowUpSettings& s);

// The headers that carry an outbox row's tokens. A row may carry several
// (final authorization: session + interoperability token; initial
// authorization: customer + interoperability token): `token_header` and
// `call_token` then hold one name / value per line, in the same order
// (a header value never contains a line break). An empty `token_header` means
// the token goes into the path ("{token}") instead.
std::vector<std::pair<std::string, std::string>> token_headers(const storage::OutboxRow& row);

// The Klarna-Idempotency-Key of an operation on an entity: the same inputs
// give the same key in every process and on every retry. 1–255 chars.
std::string idempotency_key(std::string_view operation, std::string_view entity_id,
                            std::string_view discriminator);

// ---- decisions ----------------------------------------------------------------------
// A payment request whose applied state now asks for a call (COMPLETED → final
// authorization; PENDING_CONFIRMATION → confirm), or, when the token or the
// amount is missing, a read of the request instead of a guess. Nothing when a
// follow-up for the request exists already (v1 and v2 deliveries of one
// payment cause one call).
struct RequestContext {
  const storage::PaymentRequestRow& row;
  std::optional<std::string> session_token;       // v2 completed
  bool legacy_payment_token = false;              // the token came as payment_token
  std::optional<std::string> confirmation_token;  // v1 pending-confirmation
  // A confirm / final authorization for this request is queued already (the
  // other generation's delivery of the same approval caused it): nothing more.
  bool follow_up_exists = false;
  // The context a `register` command gave this payment: its amount, currency,
  // reference, capture mode and extras replace the webhook's.
  std::optional<storage::PaymentContextRow> context = std::nullopt;
};
std::vector<FollowUp> on_request_state(const RequestContext& c, const FollowUpSettings& s);

// A transaction known to be AUTHORIZED (webhook, or an APPROVED answer with
// capture LATER): a capture of everything not yet captured when the account's
// policy is after_authorization.
std::vector<FollowUp> on_transaction_authorized(const storage::PaymentTransactionRow& t,
                                                const FollowUpSettings& s);

}  // namespace kpay::processor
