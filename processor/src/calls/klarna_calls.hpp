// How each follow-up goes on the wire (klarna_calls.cpp): the parts of its
// outbox row that differ per operation — method, path, body, token headers —
// and what its idempotency key is derived from. outbox_rows.cpp makes the
// row of it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kpay/processor/follow_ups.hpp"

namespace kpay::processor {

// The parts of an outbox row that differ per operation.
struct Call {
  std::string_view method = "POST";
  std::string path;
  std::string body;
  std::string entity_id;
  std::string path_token;  // "{token}" in the path (confirm)
  std::vector<std::pair<std::string_view, std::string>> token_headers;  // sensitive values
  std::string key_entity;         // what the idempotency key is derived from …
  std::string key_discriminator;  // … together with the operation
  std::optional<std::string> command_id;
  std::optional<std::int64_t> amount;  // money moved (captures, refunds)
  std::optional<std::string> capture_id;
};

// The call a follow-up makes; `origin.read_discriminator` keys the reads.
Call call_for(const FollowUp& f, const FollowUpOrigin& origin);

}  // namespace kpay::processor
