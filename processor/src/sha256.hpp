// SHA-256 of bytes, raw (32 bytes; empty if OpenSSL fails). The algorithm is
// fetched and the digest context made once per thread: EVP_Digest with
// EVP_sha256() looked the implementation up and made a context on every
// call, a third of the digest's instructions for a webhook body
// (docs/performance/processor.md, "Where the instructions go"). Used for the inbox's
// body digest and for the follow-up calls' idempotency keys.
#pragma once

#include <string>
#include <string_view>

namespace kpay::processor {

std::string sha256(std::string_view bytes);

}  // namespace kpay::processor
