// What the appliers share: attribute merging, the state-change message, and
// the request ↔ transaction link. Internal to processor/src/appliers.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "appliers/appliers.hpp"
#include "kpay/core/json_writer.hpp"

namespace kpay::processor::appliers {

// Fill an attribute that is still unknown (any non-rejected event may do this).
template <class T>
void fill(std::optional<T>& field, const std::optional<T>& value) {
  if (!field && value) field = value;
}
// Overwrite with what an applied (newest) event says, when it says it.
template <class T>
void overwrite(std::optional<T>& field, const std::optional<T>& value) {
  if (value) field = value;
}

// The account an entity's events name (metadata.subject_account_id) is kept
// from the first event that names one. A later event naming another one is
// surfaced (Effects::account_mismatch), never silently taken or dropped.
inline void check_account(Effects& e, std::string_view whose,
                          const std::optional<std::string>& stored, const Event& ev) {
  const auto& told = ev.envelope.subject_account_id;
  if (!stored || !told || *stored == *told) return;
  if (!e.account_mismatch.empty()) e.account_mismatch += "; ";
  e.account_mismatch +=
      "account mismatch: " + std::string(whose) + " is " + *stored + ", the event names " + *told;
}

// The attributes payment requests and transactions share: an applied event
// (the newest) overwrites what it says, any other event only fills gaps. The
// account (metadata.subject_account_id) is only ever filled.
template <class Row>
void merge_common_attributes(Row& row, const Event& ev, bool applied, Effects& e) {
  check_account(e, "the stored account", row.account_id, ev);
  const Payload& p = ev.payload;
  if (applied) {
    overwrite(row.reference, p.reference);
    overwrite(row.amount, p.amount);
    overwrite(row.currency, p.currency);
    overwrite(row.expires_at_ms, p.expires_at_ms);
  } else {
    fill(row.reference, p.reference);
    fill(row.amount, p.amount);
    fill(row.currency, p.currency);
    fill(row.expires_at_ms, p.expires_at_ms);
  }
  fill(row.account_id, ev.envelope.subject_account_id);
}

inline std::optional<std::string> opt(std::string_view s) {
  return std::string(s);
}

template <class S>
std::optional<S> stored_state(const std::optional<std::string>& name) {
  if (!name) return std::nullopt;
  return parse_state<S>(*name);
}

inline void set_decision(Effects& e, const Decision& d) {
  e.outcome = d.outcome;
  e.reason = d.reason;
}

// Rank could not settle the event (Decision::read): instead of guessing, the
// entity is read from Klarna (the read's answer adopts Klarna's state). The
// account is the entity's, else the event's; one read per such event.
inline void read_if_unsettled(Effects& e, const Decision& d, FollowUp read,
                              const std::optional<std::string>& account, const Event& ev) {
  if (!d.read) return;
  e.follow_ups.push_back(std::move(read));
  e.account_id = account.value_or(ev.envelope.subject_account_id.value_or(""));
  e.read_discriminator = ev.envelope.event_id;
}

// The state-change message downstream consumes (klarna.payment-states).
class ChangeMessage {
 public:
  ChangeMessage(std::string_view kind, const Event& ev, const std::optional<std::string>& from,
                const std::optional<std::string>& to);
  template <class T>
  ChangeMessage& maybe(std::string_view k, const std::optional<T>& v) {
    if (v) w_.field(k, *v);
    return *this;
  }
  std::string done();

 private:
  core::JsonWriter w_;
};

// Whichever side of the request ↔ transaction link arrives second completes
// it on the other row, so the link does not depend on order.
void link_transaction(StoreView& store, const std::string& transaction_id,
                      const std::string& request_id);
void link_request(StoreView& store, const std::string& request_id,
                  const std::string& transaction_id);

}  // namespace kpay::processor::appliers
