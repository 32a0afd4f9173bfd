// The follow-up settings from the configuration: capture policies (default
// and per account), the environment, settlements, the Dispute API's prefix.
#include "kpay/processor/follow_up_settings.hpp"

#include <array>

namespace kpay::processor {

namespace {

struct PolicyName {
  CapturePolicy policy;
  std::string_view name;
};
constexpr std::array kPolicies = {
    PolicyName{CapturePolicy::now, "now"},
    PolicyName{CapturePolicy::after_authorization, "after_authorization"},
    PolicyName{CapturePolicy::on_command, "on_command"},
};

}  // namespace

std::optional<CapturePolicy> parse_capture_policy(std::string_view text) {
  for (const auto& p : kPolicies) {
    if (p.name == text) return p.policy;
  }
  return std::nullopt;
}

std::string_view capture_policy_name(CapturePolicy policy) {
  for (const auto& p : kPolicies) {
    if (p.policy == policy) return p.name;
  }
  return "after_authorization";
}

CapturePolicy FollowUpSettings::capture_for(std::string_view account_id) const {
  auto it = capture_by_account.find(account_id);
  return it == capture_by_account.end() ? default_capture : it->second;
}

FollowUpSettings follow_up_settings_from_config(const core::Config& c) {
  auto policy = [](const std::string& key, const std::string& text) {
    auto p = parse_capture_policy(text);
    if (!p) throw core::ConfigError(key, "must be now, after_authorization or on_command");
    return *p;
  };
  FollowUpSettings s;
  s.default_capture = policy("capture.default", c.string("capture.default", "after_authorization"));
  for (const auto& [account, text] : c.string_table("capture.accounts")) {
    s.capture_by_account[account] = policy("capture.accounts." + account, text);
  }
  const std::string environment = c.string("klarna.environment", "test");
  const bool custom_live = c.boolean("klarna.live", false);  // read always: a known key
  if (environment == "live") {
    s.live = true;
  } else if (environment == "test") {
    s.live = false;
  } else if (environment == "custom") {
    s.live = custom_live;
  } else {
    throw core::ConfigError("klarna.environment", "must be live, test or custom");
  }
  s.settlements.fetch = c.boolean("settlements.fetch", true);
  s.settlements.csv = c.string("settlements.report", "json") == "csv";
  if (auto r = c.string("settlements.report", "json"); r != "json" && r != "csv") {
    throw core::ConfigError("settlements.report", "must be json or csv");
  }
  s.settlements.page_size = static_cast<int>(c.integer("settlements.page_size", 500, 1, 500));
  s.settlements.grace =
      c.millis("settlements.grace_period_ms", s.settlements.grace, std::chrono::milliseconds(0),
               std::chrono::milliseconds(400LL * 24 * 3600 * 1000));
  s.settlements.check_interval =
      c.millis("settlements.check_interval_ms", s.settlements.check_interval,
               std::chrono::milliseconds(100), std::chrono::milliseconds(24LL * 3600 * 1000));
  s.dispute_path_prefix = c.string("disputes.api_path_prefix", s.dispute_path_prefix);
  const auto& prefix = s.dispute_path_prefix;
  if (prefix.size() < 2 || prefix.front() != '/' || prefix.back() == '/' ||
      prefix.find_first_of("?# ") != std::string::npos) {
    throw core::ConfigError("disputes.api_path_prefix",
                            "must be a path starting with / (no trailing /, no query), e.g. "
                            "/v2/accounts/{account}/payment/disputes");
  }
  return s;
}

}  // namespace kpay::processor
