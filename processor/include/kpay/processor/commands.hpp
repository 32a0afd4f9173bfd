// Downstream commands (klarna.commands → klarna.command-results; docs/klarna/COMMANDS.md,
// "Downstream contract"; schemas/command.schema.json, command-result.schema.json).
//
// Decoding one command message into a typed command, or a rejection with a
// machine-readable reason. Decoding needs no store (the consumer runs it on the
// Kafka thread) and never throws. Whether the state allows the command is the
// command applier's question (appliers/command_applier.cpp), asked in the
// batch transaction that also writes its outbox row.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "kpay/storage/status.hpp"

namespace kpay::processor {

enum class CommandType {
  register_payment,
  authorize,
  capture,
  refund,
  void_transaction,
  cancel,
  dispute_accept_loss,
  dispute_represent,
  dispute_appeal,
  sdk_token,
};
// Wire names: register, authorize, capture, refund, void, cancel,
// dispute_accept_loss, dispute_represent, dispute_appeal, sdk_token.
std::string_view command_type_name(CommandType t);
std::optional<CommandType> parse_command_type(std::string_view name);
// dispute_accept_loss, dispute_represent, dispute_appeal.
bool is_dispute_command(CommandType t);

enum class CaptureMode { now, later };

// The `status` claim of an interoperability token, by Klarna's four names
// (docs/KLARNA-FIDELITY.md, "Commands and calls"). Any other value, or none,
// counts as PAYMENT_SUPPORTED. PAYMENT_PENDING_CONFIRMATION asks for a confirm
// of the token's `payment_confirmation_token`, server to server, at once.
enum class InteroperabilityStatus {
  payment_pending_confirmation,
  payment_prepared,
  payment_supported,
  payment_unsupported,
};
std::string_view interoperability_status_name(InteroperabilityStatus s);

// What the token's payload says (the claims this product acts on).
struct InteroperabilityClaims {
  InteroperabilityStatus status = InteroperabilityStatus::payment_supported;
  std::optional<std::string> payment_confirmation_token;  // sensitive
};

// Whether an interoperability token is well formed: a JWT, three base64url
// segments whose payload decodes to a JSON object. The signature is NOT
// verified (out of scope: Klarna verifies the token it issued). Returns the
// claims, or why the token is malformed (never the token itself).
std::variant<InteroperabilityClaims, std::string> check_interoperability_token(
    std::string_view token);

// Interoperability token and data, exactly as the command carried them
// (field names with or without the `klarna_` prefix).
struct Interoperability {
  std::optional<std::string> token;  // sensitive: never logged or published
  // The JSON text of the string as received (quotes and escapes included):
  // spliced into Klarna's body, never decoded and re-encoded.
  std::optional<std::string> data;
  std::optional<InteroperabilityStatus> status;
  std::optional<std::string> payment_confirmation_token;  // sensitive
};

struct RegisterCommand {
  std::string partner_account_id;
  std::optional<std::string> payment_request_id;
  std::optional<std::string> payment_request_reference;
  std::int64_t amount = 0;
  std::string currency;
  CaptureMode capture = CaptureMode::later;
  std::optional<std::string> payment_transaction_reference;
  std::optional<std::string> supplementary_purchase_data;  // JSON text, as received
  Interoperability interoperability;
};
// Objects are kept as the exact JSON text received (validated, never
// re-encoded): Klarna gets them byte for byte.
struct AuthorizeCommand {
  std::string partner_account_id;
  std::int64_t amount = 0;
  std::string currency;
  std::string payment_transaction_reference;
  CaptureMode capture = CaptureMode::later;
  std::optional<std::string> customer_token;  // sensitive
  Interoperability interoperability;
  std::optional<std::string> supplementary_purchase_data;  // JSON text, as received
  std::optional<std::string> step_up_config;               // JSON text, as received
  std::optional<std::string> payment_option_id;
  std::optional<std::string> request_customer_token;  // JSON text, as received
};
struct CaptureCommand {
  std::string payment_transaction_id;
  std::optional<std::int64_t> amount;  // none: all that remains
  std::optional<std::string> reference;
  std::optional<std::string> supplementary_capture_data;  // JSON text, as received
};
// Exactly one of the two ids.
struct RefundCommand {
  std::optional<std::string> payment_transaction_id;
  std::optional<std::string> payment_capture_id;
  std::int64_t amount = 0;
  std::optional<std::string> reference;
};
struct VoidCommand {
  std::string payment_transaction_id;
};
struct CancelCommand {
  std::string payment_request_id;
};
// ---- disputes (docs/klarna/PAYMENTS-API.md, "Disputes"; Klarna's field names) ------------------
// Evidence uploaded before (klarnactl disputes upload): its id and a description.
struct DisputeAttachmentRef {
  std::string payment_dispute_attachment_id;
  std::optional<std::string> description;
};
constexpr std::size_t kMaxAdditionalInformation = 5000;  // characters (code points)
struct DisputeAcceptLossCommand {
  std::string payment_dispute_id;
};
// At least one attachment; additional_information at most 5000 characters.
struct DisputeRepresentCommand {
  std::string payment_dispute_id;
  std::vector<DisputeAttachmentRef> attachments;
  std::optional<std::string> additional_information;
  std::optional<std::int64_t> partner_proposed_refund_amount;  // ≥ 0, minor units
};
// Additional information, attachments, or both.
struct DisputeAppealCommand {
  std::string payment_dispute_id;
  std::vector<DisputeAttachmentRef> attachments;
  std::optional<std::string> additional_information;
};
// The Interoperability API: an SDK token for the partner's web tier.
struct SdkTokenCommand {
  std::string partner_account_id;
  std::string interoperability_token;  // sensitive; sent byte for byte
};
using CommandBody = std::variant<RegisterCommand, AuthorizeCommand, CaptureCommand, RefundCommand,
                                 VoidCommand, CancelCommand, DisputeAcceptLossCommand,
                                 DisputeRepresentCommand, DisputeAppealCommand, SdkTokenCommand>;

struct Command {
  std::string command_id;
  std::string body_hash;  // of the minified JSON: a resend has the same, a reuse not
  CommandBody body;
  CommandType type() const;
};

enum class CommandError {
  not_json,
  not_object,
  missing_command_id,
  bad_command_id,  // not a string of 1–100 characters
  missing_type,
  unknown_type,
  missing_field,
  bad_field,                   // wrong type or value
  bad_interoperability_token,  // not a well-formed JWT
};
std::string_view command_error_name(CommandError e);

struct CommandRejection {
  CommandError error;
  std::string detail;  // names fields, never their values
  std::optional<std::string> command_id;
  std::optional<std::string> type;  // as sent, when it was a string
  std::string body_hash;
  // "missing_field: amount" — what the rejected result's `reason` says.
  std::string reason() const;
};

std::variant<Command, CommandRejection> decode_command(std::string_view body);

// ---- results (klarna.command-results) ---------------------------------------------
// The command statuses the command log stores (storage/status.hpp).
using CommandStatus = storage::CommandStatus;
std::string_view command_status_name(CommandStatus s);

struct CommandResult {
  std::optional<std::string> command_id;  // none: the message was not a readable command
  std::optional<std::string> type;
  CommandStatus status = CommandStatus::rejected;
  std::optional<std::string> reason;         // when not succeeded
  std::optional<std::string> result;         // APPROVED | STEP_UP_REQUIRED | DECLINED (authorize)
  std::optional<std::string> result_reason;  // Klarna's, with the result
  std::optional<std::string> payment_transaction_id;
  std::optional<std::string> payment_request_id;
  std::optional<std::string> payment_request_url;
  std::optional<std::string> expires_at;      // of the request a STEP_UP created
  std::optional<std::string> customer_token;  // one Klarna returned (request_customer_token)
  std::optional<std::string> sdk_token;       // sdk_token: sensitive, never logged
  std::optional<std::string> payment_capture_id;
  std::optional<std::string> payment_refund_id;
  std::optional<std::int64_t> amount;  // what a capture / refund was accepted for
  std::optional<std::string> interoperability_status;
  std::optional<std::string> payment_dispute_id;  // dispute commands
  std::optional<std::string> dispute_state;       // the dispute's state Klarna answered
};
// The JSON message (schemas/command-result.schema.json); `occurred_at_ms`
// becomes `occurred_at` (RFC 3339).
std::string render_command_result(const CommandResult& r, std::int64_t occurred_at_ms);

}  // namespace kpay::processor
