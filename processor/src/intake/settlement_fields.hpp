// Reading a settlement.* payload (settlement_fields.cpp): the ids, report
// links, amount and dates a settlements fetcher will need. Internal to the
// processor library; events.cpp calls it.
#pragma once

#include <simdjson.h>

#include <optional>
#include <string>

#include "kpay/processor/events.hpp"

namespace kpay::processor {

// Fills p.settlement (and p.amount / p.currency when the payload names them
// under a settlement name). Returns the field whose value has the wrong type,
// or nothing.
std::optional<std::string> read_settlement_fields(simdjson::dom::element payload,
                                                  const klarna::Envelope& env, Payload& p);

}  // namespace kpay::processor
