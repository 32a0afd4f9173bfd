// Every attempt of every Klarna call (v11; klarnactl payments trace): the
// outbox row keeps only the last answer, this keeps each one
// (storage/README.md, "Call attempts").
#pragma once

#include <cstdint>
#include <vector>

#include "kpay/storage/rows.hpp"

namespace kpay::storage {

class CallAttempts {
 public:
  virtual ~CallAttempts() = default;
  // One attempt's answer, in the transaction that records it; keyed by
  // (outbox_id, attempt): a second record of the same attempt replaces it.
  virtual void insert_call_attempt(const CallAttemptRow& a) = 0;
  // The attempts of one call, by attempt.
  virtual std::vector<CallAttemptRow> call_attempts(std::int64_t outbox_id) = 0;
};

}  // namespace kpay::storage
