// A webhook body (any bytes) → klarna::parse_envelope, the envelope parser the
// receiver runs after the signature holds and the processor runs on every
// Kafka message. Properties: never crashes; a parsed envelope has its three
// required fields, a non-empty entity id (the Kafka key), the family of its
// event type and a topic; a refusal has a machine-readable reason.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_check.hpp"
#include "kpay/klarna/envelope.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  const auto r = kpay::klarna::parse_envelope(body);
  if (!r) {
    FUZZ_CHECK(!r.error.reason.empty());
    FUZZ_CHECK(!r.error.detail.empty());
    return 0;
  }
  const auto& e = *r.envelope;
  FUZZ_CHECK(!e.event_id.empty() && !e.event_type.empty() && !e.event_version.empty());
  FUZZ_CHECK(!e.entity_id.empty());
  FUZZ_CHECK(!e.entity_id_is_fallback || e.entity_id == e.event_id);
  FUZZ_CHECK(e.family == kpay::klarna::classify_event_type(e.event_type));
  static const kpay::klarna::Topics topics;
  FUZZ_CHECK(!topics.for_family(e.family).empty());
  FUZZ_CHECK(!kpay::klarna::family_name(e.family).empty());
  return 0;
}
