// A Kafka message body (any bytes) → processor::decode_event, what the
// processor runs on every message of the event topics, from the normal topics
// and from klarna.unrouted; and parse_rfc3339_ms on the same bytes. Properties:
// never crashes or throws; an Event's action fits its envelope (entity kind,
// routed or unrouted), the operation amounts it books are not negative; a
// Poison has a machine-readable reason and details that name fields, not
// values; an accepted timestamp is RFC 3339 and formats back to itself.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "fuzz_check.hpp"
#include "kpay/core/log.hpp"
#include "kpay/processor/events.hpp"

namespace {

using namespace kpay::processor;

void check_timestamp(std::string_view t);

void check_event(const Event& ev, bool from_unrouted_topic) {
  const auto& env = ev.envelope;
  FUZZ_CHECK(!env.event_id.empty() && !env.event_type.empty() && !env.entity_id.empty());
  if (!env.occurred_at.empty()) check_timestamp(env.occurred_at);
  const bool unrouted = std::holds_alternative<Unrouted>(ev.action);
  FUZZ_CHECK(unrouted ==
             (from_unrouted_topic || env.family == kpay::klarna::EventFamily::unrouted));
  if (unrouted) return;
  // Only a settlement event may be keyed by its event_id (it has no
  // settlement_id, payout or report id: recorded, not dead-lettered).
  FUZZ_CHECK(!env.entity_id_is_fallback || env.family == kpay::klarna::EventFamily::settlement);
  FUZZ_CHECK(entity_kind(ev.action) != "unrouted");
  FUZZ_CHECK(std::holds_alternative<Action>(route(env.event_type, env.event_version)));
  const auto& p = ev.payload;
  if (std::holds_alternative<SubRecordAdded>(ev.action)) {
    FUZZ_CHECK(p.amount.has_value() != p.amount_ambiguous);
    FUZZ_CHECK(!p.amount || *p.amount >= 0);
  }
  for (const auto& d : p.deadlines) FUZZ_CHECK(!d.field.empty());
}

void check_poison(const Poison& p) {
  FUZZ_CHECK(!p.reason.empty());
  for (char c : p.reason) FUZZ_CHECK(c == '_' || (c >= 'a' && c <= 'z'));
  FUZZ_CHECK(!p.detail.empty());
}

bool digits(std::string_view t, std::size_t pos, std::size_t n) {
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (i >= t.size() || !std::isdigit(static_cast<unsigned char>(t[i]))) return false;
  }
  return true;
}

// YYYY-MM-DDTHH:MM:SS: the date and time fields are digits.
void check_timestamp(std::string_view t) {
  const auto ms = parse_rfc3339_ms(t);
  if (!ms) return;
  FUZZ_CHECK(digits(t, 0, 4) && digits(t, 5, 2) && digits(t, 8, 2) && digits(t, 11, 2) &&
             digits(t, 14, 2) && digits(t, 17, 2));
  FUZZ_CHECK(parse_rfc3339_ms(kpay::core::rfc3339_ms(*ms)) == ms);
  // In UTC and not a leap second, the date and time read are the ones written.
  const char zone = t[19] == '.' ? t.back() : t[19];
  if ((zone == 'Z' || zone == 'z') && t.substr(17, 2) != "60") {
    std::string written(t.substr(0, 19));
    written[10] = 'T';
    FUZZ_CHECK(kpay::core::rfc3339_ms(*ms).substr(0, 19) == written);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  for (bool from_unrouted : {false, true}) {
    const auto decoded = decode_event(body, from_unrouted);
    if (const auto* ev = std::get_if<Event>(&decoded)) {
      check_event(*ev, from_unrouted);
    } else {
      check_poison(std::get<Poison>(decoded));
    }
  }
  if (size <= 64) check_timestamp(body);
  return 0;
}
