// What klarnactl and the metrics read that no single part owns
// (storage/README.md, "Read model").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kpay/storage/rows.hpp"

namespace kpay::storage {

class ReadModel {
 public:
  virtual ~ReadModel() = default;
  // The state schema's version (after the migrations this binary ran).
  virtual int schema_version() = 0;
  // Counts for klarnactl status/top.
  virtual Overview overview() = 0;
  virtual std::vector<PaymentSummary> list_payments(const PaymentFilter& f) = 0;
  // Every dispute, newest state first.
  virtual std::vector<DisputeRow> list_disputes(std::size_t limit) = 0;
  // klarnactl payments trace (v11): the commands that acted on an entity
  // (oldest first) and the ids of a transaction's disputes.
  virtual std::vector<CommandRow> commands_for_entity(const std::string& entity_id) = 0;
  virtual std::vector<std::string> disputes_of_transaction(const std::string& transaction_id) = 0;
};

}  // namespace kpay::storage
