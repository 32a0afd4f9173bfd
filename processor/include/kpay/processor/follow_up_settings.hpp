// What the follow-ups depend on besides the state (calls/follow_up_settings.cpp):
// when payments are captured, the environment, settlement fetching, where the
// Dispute API is served.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "kpay/core/config.hpp"

namespace kpay::processor {

// When a payment is captured (configuration `capture.default`, overridden per
// partner account in `capture.accounts`).
enum class CapturePolicy {
  now,                  // final authorization / confirm with capture NOW / true
  after_authorization,  // capture LATER, then a capture call once authorized
  on_command,           // capture LATER; a downstream command captures
};
std::optional<CapturePolicy> parse_capture_policy(std::string_view text);
std::string_view capture_policy_name(CapturePolicy p);

// Settlement reports (`[settlements]`): fetched when announced
// (settlement.report.created), from the JSON transactions pages or the CSV
// report; a capture or refund is missing_in_settlement once no report named
// it `grace` after it was executed.
struct SettlementSettings {
  bool fetch = true;
  bool csv = false;
  int page_size = 500;  // Klarna's maximum (docs/klarna/SETTLEMENTS.md)
  std::chrono::milliseconds grace = std::chrono::hours(24 * 7);
  // How often the processor looks for captures and refunds past the grace
  // period that no report named.
  std::chrono::milliseconds check_interval = std::chrono::minutes(1);
};

struct FollowUpSettings {
  CapturePolicy default_capture = CapturePolicy::after_authorization;
  std::map<std::string, CapturePolicy, std::less<>> capture_by_account;  // subject_account_id →
  // The environment the API credentials belong to: an event whose
  // metadata.live disagrees never causes a call (docs/klarna/PAYMENTS-API.md, environment).
  bool live = false;
  // Where the Dispute API is served (`disputes.api_path_prefix`): Klarna's
  // published prefixes differ (`/v2/accounts/{account}/payment/disputes` in the
  // r2512 collection, `/v4/payment/disputes` in an SDK from its spec). The same
  // syntax as klarna-sim's `sim.dispute_path_prefix`: "{account}" stands for the
  // percent-encoded partner account id.
  std::string dispute_path_prefix = std::string(kDefaultDisputePathPrefix);
  static constexpr std::string_view kDefaultDisputePathPrefix =
      "/v2/accounts/{account}/payment/disputes";
  SettlementSettings settlements;
  CapturePolicy capture_for(std::string_view account_id) const;
};
// `capture.default` ("now" | "after_authorization" | "on_command"),
// `capture.accounts` (a table: account id → policy), and the environment from
// `klarna.environment` ("live" → live; "test" → not; "custom" → `klarna.live`).
// Throws core::ConfigError naming the key.
// `disputes.api_path_prefix` (a path starting with "/", no query).
FollowUpSettings follow_up_settings_from_config(const core::Config& c);

}  // namespace kpay::processor
