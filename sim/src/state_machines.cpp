#include "kpay/sim/state_machines.hpp"

#include <array>
#include <utility>

namespace kpay::sim {

namespace {
using R = RequestState;
using T = TransactionState;
using D = DisputeState;

// Gen 2/3, as documented.
constexpr std::pair<R, R> kGen2[] = {
    {R::submitted, R::in_progress}, {R::submitted, R::expired},     {R::submitted, R::canceled},
    {R::in_progress, R::submitted}, {R::in_progress, R::completed}, {R::in_progress, R::expired},
    {R::in_progress, R::canceled},  {R::in_progress, R::declined},
};
// Gen 1, as documented, plus the edges into EXPIRED/CANCELED/DECLINED that the
// documentation calls final states without drawing (assumption, see docs/SIM.md).
constexpr std::pair<R, R> kGen1[] = {
    {R::submitted, R::in_progress},
    {R::submitted, R::prepared},
    {R::prepared, R::in_progress},
    {R::prepared, R::pending_confirmation},
    {R::in_progress, R::submitted},
    {R::in_progress, R::pending_confirmation},
    {R::in_progress, R::authorized},
    {R::pending_confirmation, R::in_progress},
    {R::pending_confirmation, R::authorized},
    {R::pending_confirmation, R::submitted},  // confirmation token expired
    // undrawn edges into final states
    {R::submitted, R::expired},
    {R::submitted, R::canceled},
    {R::prepared, R::expired},
    {R::prepared, R::canceled},
    {R::in_progress, R::expired},
    {R::in_progress, R::canceled},
    {R::in_progress, R::declined},
    {R::pending_confirmation, R::expired},
    {R::pending_confirmation, R::canceled},
};
constexpr std::pair<T, T> kTransaction[] = {
    {T::authorized, T::completed},  // fully captured, or void after a capture
    {T::authorized, T::closed},     // void with no capture
    {T::authorized, T::expired},
    {T::expired, T::authorized},  // reauthorized within 7 days
                                  // (unconfirmed)
    {T::expired, T::completed},
    {T::expired, T::closed},
    {T::completed, T::closed},
};
constexpr std::pair<D, D> kDispute[] = {
    {D::initiated, D::representment},
    {D::initiated, D::closed},
    {D::representment, D::pre_arbitration},
    {D::representment, D::closed},
    {D::pre_arbitration, D::arbitration},
    {D::pre_arbitration, D::closed},
    {D::arbitration, D::closed},
};

template <class Table, class S>
bool contains(const Table& table, S from, S to) {
  for (const auto& [f, t] : table) {
    if (f == from && t == to) return true;
  }
  return false;
}

constexpr std::array<std::pair<R, std::string_view>, 9> kRequestNames{{
    {R::submitted, "SUBMITTED"},
    {R::prepared, "PREPARED"},
    {R::in_progress, "IN_PROGRESS"},
    {R::pending_confirmation, "PENDING_CONFIRMATION"},
    {R::authorized, "AUTHORIZED"},
    {R::completed, "COMPLETED"},
    {R::expired, "EXPIRED"},
    {R::canceled, "CANCELED"},
    {R::declined, "DECLINED"},
}};
constexpr std::array<std::pair<T, std::string_view>, 4> kTransactionNames{
    {{T::authorized, "AUTHORIZED"},
     {T::completed, "COMPLETED"},
     {T::closed, "CLOSED"},
     {T::expired, "EXPIRED"}}};
constexpr std::array<std::pair<D, std::string_view>, 5> kDisputeNames{
    {{D::initiated, "INITIATED"},
     {D::representment, "REPRESENTMENT"},
     {D::pre_arbitration, "PRE_ARBITRATION"},
     {D::arbitration, "ARBITRATION"},
     {D::closed, "CLOSED"}}};

template <class Names, class S>
std::string_view name_of(const Names& names, S s) {
  for (const auto& [v, n] : names) {
    if (v == s) return n;
  }
  return "UNKNOWN";
}
template <class S, class Names>
std::optional<S> parse(const Names& names, std::string_view text) {
  for (const auto& [v, n] : names) {
    if (n == text) return v;
  }
  return std::nullopt;
}
}  // namespace

std::string_view request_state_name(RequestState s) {
  return name_of(kRequestNames, s);
}
std::string_view transaction_state_name(TransactionState s) {
  return name_of(kTransactionNames, s);
}
std::string_view dispute_state_name(DisputeState s) {
  return name_of(kDisputeNames, s);
}
std::optional<RequestState> parse_request_state(std::string_view n) {
  return parse<R>(kRequestNames, n);
}
std::optional<TransactionState> parse_transaction_state(std::string_view n) {
  return parse<T>(kTransactionNames, n);
}
std::optional<DisputeState> parse_dispute_state(std::string_view n) {
  return parse<D>(kDisputeNames, n);
}

bool is_final(RequestState s) {
  return s == R::authorized || s == R::completed || s == R::expired || s == R::canceled ||
         s == R::declined;
}
bool request_transition_allowed(Generation g, RequestState from, RequestState to) {
  return g == Generation::v1 ? contains(kGen1, from, to) : contains(kGen2, from, to);
}
bool transaction_transition_allowed(TransactionState from, TransactionState to) {
  return contains(kTransaction, from, to);
}
bool dispute_transition_allowed(DisputeState from, DisputeState to) {
  return contains(kDispute, from, to);
}

}  // namespace kpay::sim
