// Fetching a settlement report through the outbox (settlement_fetch.cpp):
// what settlement.report.created queues, and what each answer books. The
// answer handlers run in the outbox worker's transaction, so a page's lines,
// the row's status and the next page's row are recorded together: a page
// answered again after a restart is booked once (its path is no longer the
// settlement's next_page).
#pragma once

#include <optional>
#include <string_view>

#include "calls/call_answers.hpp"
#include "kpay/processor/follow_ups.hpp"

namespace kpay::processor {

// The fetch a settlement.report.created event asks for (none without a
// settlement_id, or with settlements.fetch = false).
std::optional<FollowUp> settlement_fetch_for(const std::optional<std::string>& settlement_id,
                                             const FollowUpSettings& s);

bool is_settlement_operation(storage::OutboxOperation operation);

// A 2xx answer of a fetch_settlement* / fetch_payout_status row. Throws
// std::runtime_error (SettlementParseError) when the answer cannot be read.
std::string apply_settlement_answer(AnswerContext& c, const storage::OutboxRow& row,
                                    const klarna::Answer& answer);

}  // namespace kpay::processor
