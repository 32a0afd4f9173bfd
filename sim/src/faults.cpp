#include "kpay/sim/faults.hpp"

#include <simdjson.h>

#include <charconv>
#include <chrono>
#include <stdexcept>

namespace kpay::sim {

namespace {
std::int64_t to_int(std::string_view s, std::string_view what) {
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) {
    throw std::invalid_argument("fault rule: bad " + std::string(what) + " '" + std::string(s) +
                                "'");
  }
  return v;
}
}  // namespace

FaultRule parse_fault_rule(std::string_view text) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  for (;;) {
    auto c = text.find(':', start);
    parts.push_back(text.substr(start, c == std::string_view::npos ? c : c - start));
    if (c == std::string_view::npos) break;
    start = c + 1;
  }
  if (parts.size() < 3 || parts.size() > 4 || parts[0].empty()) {
    throw std::invalid_argument("fault rule '" + std::string(text) +
                                "': expected ROUTE:KIND:PERCENT[:PARAM]");
  }
  FaultRule r;
  r.text = std::string(text);
  r.route = std::string(parts[0]);
  auto kind = parts[1];
  bool has_param = parts.size() == 4;
  std::int64_t param = has_param ? to_int(parts[3], "parameter") : 0;
  if (kind == "latency") {
    r.kind = FaultKind::latency;
    r.param = has_param ? param : 200;
  } else if (kind == "429") {
    r.kind = FaultKind::rate_limit;
    r.param = has_param ? param : 1;
  } else if (kind == "5xx" || kind == "500" || kind == "502" || kind == "503" || kind == "504") {
    r.kind = FaultKind::server_error;
    r.param = kind == "5xx" ? (has_param ? param : 503) : to_int(kind, "status");
    if (r.param < 500 || r.param > 599)
      throw std::invalid_argument("fault rule: 5xx status out of range");
  } else if (kind == "timeout") {
    r.kind = FaultKind::timeout;
    r.param = has_param ? param : 59'000;
  } else if (kind == "drop") {
    r.kind = FaultKind::drop;
  } else if (kind == "drop-after") {
    r.kind = FaultKind::drop_after;
  } else if (kind == "close") {
    r.kind = FaultKind::close;
  } else if (kind == "limit") {
    r.kind = FaultKind::limit;
    r.param = has_param ? param : 1;
    r.percent = static_cast<int>(to_int(parts[2], "limit"));
    if (r.percent < 1 || r.param < 1)
      throw std::invalid_argument("fault rule: limit needs N >= 1 and WINDOW_S >= 1");
    return r;
  } else {
    throw std::invalid_argument("fault rule: unknown kind '" + std::string(kind) +
                                "' (latency, 429, 5xx, timeout, drop, drop-after, close, limit)");
  }
  r.percent = static_cast<int>(to_int(parts[2], "percent"));
  if (r.percent < 0 || r.percent > 100)
    throw std::invalid_argument("fault rule: percent must be 0..100");
  if (r.param < 0) throw std::invalid_argument("fault rule: negative parameter");
  return r;
}

std::vector<FaultRule> parse_fault_rules_json(const std::string& body) {
  simdjson::dom::parser parser;
  simdjson::dom::array arr;
  if (parser.parse(body)["rules"].get_array().get(arr) != simdjson::SUCCESS) {
    throw std::invalid_argument(R"(expected {"rules":["ROUTE:KIND:PERCENT[:PARAM]", …]})");
  }
  std::vector<FaultRule> rules;
  for (auto e : arr) {
    std::string_view s;
    if (e.get_string().get(s) != simdjson::SUCCESS)
      throw std::invalid_argument("rules must be strings");
    rules.push_back(parse_fault_rule(s));
  }
  return rules;
}

FaultPlan::FaultPlan(std::uint64_t seed) : rng_(seed ? seed : std::random_device{}()) {}

void FaultPlan::set_rules(std::vector<FaultRule> rules) {
  std::lock_guard lk(mu_);
  rules_ = std::move(rules);
  windows_.assign(rules_.size(), Window{});
}

std::vector<FaultRule> FaultPlan::rules() const {
  std::lock_guard lk(mu_);
  return rules_;
}

bool FaultPlan::route_matches(std::string_view pattern, std::string_view route) {
  if (pattern == "*") return true;
  if (!pattern.empty() && pattern.back() == '*') {
    return route.substr(0, pattern.size() - 1) == pattern.substr(0, pattern.size() - 1);
  }
  return pattern == route;
}

FaultDecision FaultPlan::decide(std::string_view route) {
  std::lock_guard lk(mu_);
  FaultDecision d;
  std::uniform_int_distribution<int> pct(0, 99);
  auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now().time_since_epoch())
                    .count();
  for (std::size_t i = 0; i < rules_.size(); ++i) {
    const auto& r = rules_[i];
    if (!route_matches(r.route, route)) continue;
    if (r.kind == FaultKind::limit) {
      auto& w = windows_[i];
      const std::int64_t window_ms = r.param * 1000;
      if (now_ms - w.start_ms >= window_ms) {
        w.start_ms = now_ms;
        w.used = 0;
      }
      RateLimitHeaders h;
      h.limit = r.percent;
      h.reset_s = (w.start_ms + window_ms - now_ms + 999) / 1000;
      if (w.used >= r.percent) {
        h.remaining = 0;
        if (d.kind == FaultKind::none) {
          d.kind = FaultKind::rate_limit;
          d.param = h.reset_s;
        }
      } else {
        ++w.used;
        h.remaining = r.percent - w.used;
      }
      if (!d.rate || h.remaining < d.rate->remaining) d.rate = h;
      continue;
    }
    if (pct(rng_) >= r.percent) continue;
    if (r.kind == FaultKind::latency) {
      d.added_latency_ms += r.param;
    } else if (d.kind == FaultKind::none) {
      d.kind = r.kind;
      d.param = r.param;
    }
  }
  return d;
}

}  // namespace kpay::sim
