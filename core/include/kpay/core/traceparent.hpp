// W3C Trace Context `traceparent` values (https://www.w3.org/TR/trace-context/):
//   00-<trace id: 32 lowercase hex>-<span id: 16 lowercase hex>-<flags: 2 hex>
// The receiver gives each accepted webhook one (a child of Klarna's when its
// request carried a valid one), the processor carries it to the history, the
// outbox, the Klarna call and the messages it publishes (docs/OPERATIONS.md,
// "Tracing one payment"). Ids are random (a per-thread generator seeded from
// the OS), never all zeros; new spans are marked sampled (flags 01).
#pragma once

#include <string>
#include <string_view>

namespace kpay::core {

inline constexpr std::string_view kTraceparentHeader = "traceparent";

// True for a well-formed value of a version we can read: version 00 exactly
// 55 characters; a later version (not ff) at least that and '-' after the
// flags. Ids must be lowercase hex and not all zeros.
bool valid_traceparent(std::string_view value);

// A new trace: random trace id and span id, flags 01.
std::string new_traceparent();

// A child span of `parent` (same trace id, a new span id, flags 01); a new
// trace when `parent` is not valid.
std::string child_traceparent(std::string_view parent);

// `value` when valid (its first 55 characters), else a new trace.
std::string traceparent_or_new(std::string_view value);

// The trace id (32 hex) / span id (16 hex) of a valid value; empty otherwise.
std::string_view trace_id_of(std::string_view traceparent);
std::string_view span_id_of(std::string_view traceparent);

}  // namespace kpay::core
