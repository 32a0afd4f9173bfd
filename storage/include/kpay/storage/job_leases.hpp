// Jobs that one processor at a time runs when several share one state
// (storage/README.md, "Jobs on several processors"): the audit publisher, the
// dispute and call deadline watchers, the settlement watch. A job is held by the processor that
// took or last renewed its lease; another takes it over once the lease has
// run out (its holder stopped renewing: dead, or cut off from the database).
#pragma once

#include <string>

namespace kpay::storage {

// Job names, one per job.
inline constexpr const char* kAuditPublisherJob = "audit-publisher";
inline constexpr const char* kDisputeDeadlinesJob = "dispute-deadlines";
inline constexpr const char* kCallDeadlinesJob = "call-deadlines";
inline constexpr const char* kSettlementWatchJob = "settlement-watch";

class JobLeases {
 public:
  virtual ~JobLeases() = default;
  // Takes or renews this store's processor's lease on `job`; true while it
  // holds it (run the job now), false while another processor does. Call it
  // at least once per lease (postgresql.claim_lease_ms) to keep the job. An
  // embedded database has one processor: always true.
  virtual bool hold_job(const std::string& /*job*/) { return true; }
};

}  // namespace kpay::storage
