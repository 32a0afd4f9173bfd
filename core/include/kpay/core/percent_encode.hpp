// Percent-encoding of a URL path segment (RFC 3986): Klarna's ids are KRNs
// ("krn:payment:eu1:request:…"), whose colons must not reach a path as they are.
#pragma once

#include <string>
#include <string_view>

namespace kpay::core {

// Unreserved characters (A–Z a–z 0–9 - . _ ~) kept, every other byte %XX
// (upper-case hex): "krn:payment" → "krn%3Apayment".
std::string percent_encode(std::string_view s);

}  // namespace kpay::core
