// Statuses and operations this product defines, as enums. Stored (and shown,
// and published) as the strings to_string() gives; parse_*() reads them back
// at the storage boundary and returns nullopt for a string it does not know.
#pragma once

#include <array>
#include <optional>
#include <ostream>
#include <string_view>
#include <utility>

namespace kpay::storage {

// An outbox row's life (OutboxRow): pending → in_flight → succeeded | failed,
// or back to pending after a retryable answer.
enum class OutboxStatus { pending, in_flight, succeeded, failed };

// A downstream command's status (CommandRow).
enum class CommandStatus { accepted, rejected, succeeded, failed };

// Which dispute framework a dispute follows (DisputeRow, RepairTarget).
enum class DisputeFramework { current, legacy };

// The Klarna calls the outbox makes (OutboxRow::operation).
enum class OutboxOperation {
  final_authorization,
  confirm,
  capture,
  read_payment_request,
  read_transaction,
  read_capture,
  read_refund,
  initial_authorization,
  refund_transaction,
  refund_capture,
  void_transaction,  // "void"
  cancel,
  dispute_accept_loss,
  dispute_represent,
  dispute_appeal,
  read_dispute,
  sdk_token,
  fetch_settlement,               // settlement details (docs/klarna/SETTLEMENTS.md)
  fetch_settlement_transactions,  // one page of its transactions (JSON)
  fetch_settlement_csv,           // its transactions as the CSV report
  fetch_payout_status,
};

// An offset gap's status and the policy it was detected under (OffsetGapRow).
enum class GapStatus { open, accepted };
enum class GapPolicy { pause, go_on };  // "pause" | "continue"

namespace detail {
template <class E, std::size_t N>
using Names = std::array<std::pair<E, std::string_view>, N>;

inline constexpr Names<OutboxStatus, 4> kOutboxStatus{{{OutboxStatus::pending, "pending"},
                                                       {OutboxStatus::in_flight, "in_flight"},
                                                       {OutboxStatus::succeeded, "succeeded"},
                                                       {OutboxStatus::failed, "failed"}}};
inline constexpr Names<CommandStatus, 4> kCommandStatus{{{CommandStatus::accepted, "accepted"},
                                                         {CommandStatus::rejected, "rejected"},
                                                         {CommandStatus::succeeded, "succeeded"},
                                                         {CommandStatus::failed, "failed"}}};
inline constexpr Names<DisputeFramework, 2> kDisputeFramework{
    {{DisputeFramework::current, "current"}, {DisputeFramework::legacy, "legacy"}}};
inline constexpr Names<OutboxOperation, 21> kOutboxOperation{{
    {OutboxOperation::final_authorization, "final_authorization"},
    {OutboxOperation::confirm, "confirm"},
    {OutboxOperation::capture, "capture"},
    {OutboxOperation::read_payment_request, "read_payment_request"},
    {OutboxOperation::read_transaction, "read_transaction"},
    {OutboxOperation::read_capture, "read_capture"},
    {OutboxOperation::read_refund, "read_refund"},
    {OutboxOperation::initial_authorization, "initial_authorization"},
    {OutboxOperation::refund_transaction, "refund_transaction"},
    {OutboxOperation::refund_capture, "refund_capture"},
    {OutboxOperation::void_transaction, "void"},
    {OutboxOperation::cancel, "cancel"},
    {OutboxOperation::dispute_accept_loss, "dispute_accept_loss"},
    {OutboxOperation::dispute_represent, "dispute_represent"},
    {OutboxOperation::dispute_appeal, "dispute_appeal"},
    {OutboxOperation::read_dispute, "read_dispute"},
    {OutboxOperation::sdk_token, "sdk_token"},
    {OutboxOperation::fetch_settlement, "fetch_settlement"},
    {OutboxOperation::fetch_settlement_transactions, "fetch_settlement_transactions"},
    {OutboxOperation::fetch_settlement_csv, "fetch_settlement_csv"},
    {OutboxOperation::fetch_payout_status, "fetch_payout_status"},
}};
inline constexpr Names<GapStatus, 2> kGapStatus{
    {{GapStatus::open, "open"}, {GapStatus::accepted, "accepted"}}};
inline constexpr Names<GapPolicy, 2> kGapPolicy{
    {{GapPolicy::pause, "pause"}, {GapPolicy::go_on, "continue"}}};

template <class E, std::size_t N>
constexpr std::string_view name_of(const Names<E, N>& names, E e) {
  for (const auto& [v, n] : names) {
    if (v == e) return n;
  }
  return "unknown";
}
template <class E, std::size_t N>
constexpr std::optional<E> value_of(const Names<E, N>& names, std::string_view s) {
  for (const auto& [v, n] : names) {
    if (n == s) return v;
  }
  return std::nullopt;
}
}  // namespace detail

constexpr std::string_view to_string(OutboxStatus v) {
  return detail::name_of(detail::kOutboxStatus, v);
}
constexpr std::string_view to_string(CommandStatus v) {
  return detail::name_of(detail::kCommandStatus, v);
}
constexpr std::string_view to_string(DisputeFramework v) {
  return detail::name_of(detail::kDisputeFramework, v);
}
constexpr std::string_view to_string(OutboxOperation v) {
  return detail::name_of(detail::kOutboxOperation, v);
}
constexpr std::string_view to_string(GapStatus v) {
  return detail::name_of(detail::kGapStatus, v);
}
constexpr std::string_view to_string(GapPolicy v) {
  return detail::name_of(detail::kGapPolicy, v);
}

constexpr std::optional<OutboxStatus> parse_outbox_status(std::string_view s) {
  return detail::value_of(detail::kOutboxStatus, s);
}
constexpr std::optional<CommandStatus> parse_command_status(std::string_view s) {
  return detail::value_of(detail::kCommandStatus, s);
}
constexpr std::optional<DisputeFramework> parse_dispute_framework(std::string_view s) {
  return detail::value_of(detail::kDisputeFramework, s);
}
constexpr std::optional<OutboxOperation> parse_outbox_operation(std::string_view s) {
  return detail::value_of(detail::kOutboxOperation, s);
}
constexpr std::optional<GapStatus> parse_gap_status(std::string_view s) {
  return detail::value_of(detail::kGapStatus, s);
}
constexpr std::optional<GapPolicy> parse_gap_policy(std::string_view s) {
  return detail::value_of(detail::kGapPolicy, s);
}

// Printed as stored (logs, klarnactl, test failures).
inline std::ostream& operator<<(std::ostream& o, OutboxStatus v) {
  return o << to_string(v);
}
inline std::ostream& operator<<(std::ostream& o, CommandStatus v) {
  return o << to_string(v);
}
inline std::ostream& operator<<(std::ostream& o, DisputeFramework v) {
  return o << to_string(v);
}
inline std::ostream& operator<<(std::ostream& o, OutboxOperation v) {
  return o << to_string(v);
}
inline std::ostream& operator<<(std::ostream& o, GapStatus v) {
  return o << to_string(v);
}
inline std::ostream& operator<<(std::ostream& o, GapPolicy v) {
  return o << to_string(v);
}

// Reads (read_payment_request, read_transaction, read_capture, read_refund,
// read_dispute): they change nothing at Klarna.
constexpr bool is_read_operation(OutboxOperation op) {
  return op == OutboxOperation::read_payment_request || op == OutboxOperation::read_transaction ||
         op == OutboxOperation::read_capture || op == OutboxOperation::read_refund ||
         op == OutboxOperation::read_dispute;
}

// Operations on a dispute (dispute_accept_loss, _represent, _appeal).
constexpr bool is_dispute_operation(OutboxOperation op) {
  return op == OutboxOperation::dispute_accept_loss || op == OutboxOperation::dispute_represent ||
         op == OutboxOperation::dispute_appeal;
}

}  // namespace kpay::storage
