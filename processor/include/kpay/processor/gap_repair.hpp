// After an offset gap (docs/OPERATIONS.md, "Offset gaps"): the entities of
// the partition that are not in a final state are read again from Klarna
// through the outbox (GET payment request / transaction / dispute), so a
// deadline whose event was lost is still met; and the message that tells
// downstream about the gap (schemas/offset-gap.schema.json).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kpay/processor/follow_ups.hpp"
#include "kpay/storage/store.hpp"

namespace kpay::processor {

struct GapRepair {
  std::int64_t queued = 0;      // reads put in the outbox now
  std::int64_t already = 0;     // queued by an earlier repair of this gap
  std::int64_t final = 0;       // entities in a final state: nothing to read
  std::int64_t no_account = 0;  // no subject_account_id known: cannot be read
};

// In the caller's transaction: one read per open entity of the gap's
// partition, keyed by the gap (a second repair of the same gap adds nothing),
// and the gap marked repaired. Entities whose every event was lost are
// unknown here: nothing names them.
GapRepair queue_gap_repair(storage::Store& store, const storage::OffsetGapRow& gap,
                           std::int64_t now_ms);

// The klarna.payment-states message announcing a gap (key: "offset-gap:<topic>/<partition>").
std::string render_gap_message(const storage::OffsetGapRow& gap);
std::string gap_message_key(const storage::OffsetGapRow& gap);

// Lowercase hex of a raw digest (event conflicts show both bodies' SHA-256).
std::string digest_hex(std::string_view bytes);

}  // namespace kpay::processor
