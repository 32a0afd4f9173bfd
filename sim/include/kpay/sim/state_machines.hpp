// Klarna's documented state machines (docs/klarna/PAYMENTS-API.md §1, §2) as readable
// tables. The API refuses (409/403) any operation whose transition is not in
// these tables; tests walk every edge.
#pragma once

#include <optional>
#include <string_view>

namespace kpay::sim {

enum class Generation { v1, v2 };  // Gen 1 (confirm) vs Gen 2/3 (final authorization)

enum class RequestState {
  submitted,
  prepared,
  in_progress,
  pending_confirmation,
  authorized,
  completed,
  expired,
  canceled,
  declined
};
enum class TransactionState { authorized, completed, closed, expired };
enum class DisputeState { initiated, representment, pre_arbitration, arbitration, closed };

std::string_view request_state_name(RequestState s);  // "IN_PROGRESS"
std::string_view transaction_state_name(TransactionState s);
std::string_view dispute_state_name(DisputeState s);
std::optional<RequestState> parse_request_state(std::string_view name);
std::optional<TransactionState> parse_transaction_state(std::string_view name);
std::optional<DisputeState> parse_dispute_state(std::string_view name);

bool is_final(RequestState s);
bool request_transition_allowed(Generation g, RequestState from, RequestState to);
bool transaction_transition_allowed(TransactionState from, TransactionState to);
bool dispute_transition_allowed(DisputeState from, DisputeState to);

}  // namespace kpay::sim
