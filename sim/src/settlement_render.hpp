// Internal to kpay_sim: a settlement rendered as the Settlements API answers
// and the settlement.* webhooks carry it (docs/klarna/SETTLEMENTS.md).
// `base` is the sim's public URL (links point back at the sim).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kpay/core/json_writer.hpp"
#include "settlement_state.hpp"

namespace kpay::sim {

// base + "/v2/settlements/{id}" + tail, the id percent-encoded.
std::string settlement_url(const std::string& base, const Settlement& s, std::string_view tail);
// <settlement> (settlement details, list entries).
void write_settlement(core::JsonWriter& w, const Settlement& s, const std::string& base);
void write_settlement_fault(core::JsonWriter& w, const SettlementFault& f);
// The payloads of settlement.report.created and settlement.payout.*.
std::string report_created_payload(const Settlement& s, const std::string& base);
std::string payout_payload(const Settlement& s, const std::string& base);
// <payout> (GET …/payouts/status).
std::string payout_status_json(const Settlement& s);
// "pagination": {count, total, offset, next?, prev?}; a page link is
// `page_url` + "offset=…&size=…" (page_url ends with '?' or '&').
void write_pagination(core::JsonWriter& w, std::size_t offset, std::size_t size, std::size_t count,
                      std::size_t total, const std::string& page_url);
// One page of <transaction>s with its pagination object.
std::string transactions_page_json(const Settlement& s, std::size_t offset, std::size_t size,
                                   const std::string& page_url);
// The CSV report (RFC 4180, a header line, one line per transaction).
std::string settlement_csv(const Settlement& s);
// RFC 3339 ("2026-12-07T01:30:00Z", optional fraction, `Z` or `+00:00`) or a
// date ("2026-12-07", midnight UTC) → Unix milliseconds.
std::optional<std::int64_t> parse_time_ms(std::string_view text);

}  // namespace kpay::sim
