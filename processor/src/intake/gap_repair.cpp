#include "kpay/processor/gap_repair.hpp"

#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"
#include "kpay/processor/state_machines.hpp"

namespace kpay::processor {

namespace {

template <class S>
bool final_in(const StateMachine<S>& machine, const std::optional<std::string>& state) {
  if (!state) return false;  // unknown: worth a read
  auto s = parse_state<S>(*state);
  return s && machine.is_final(*s);
}

bool is_final(const storage::RepairTarget& t) {
  if (t.kind == "payment_request") {
    return final_in(t.generation == 1 ? gen1_request_machine() : gen2_request_machine(), t.state);
  }
  if (t.kind == "payment_transaction") return final_in(transaction_machine(), t.state);
  return final_in(t.framework == storage::DisputeFramework::legacy ? legacy_dispute_machine()
                                                                   : current_dispute_machine(),
                  t.state);
}

FollowUp read_of(const storage::RepairTarget& t) {
  if (t.kind == "payment_request") return ReadPaymentRequest{t.id};
  if (t.kind == "payment_transaction") return ReadTransaction{t.id};
  return ReadDispute{t.id, std::nullopt};
}

}  // namespace

GapRepair queue_gap_repair(storage::Store& store, const storage::OffsetGapRow& gap,
                           std::int64_t now_ms) {
  GapRepair r;
  for (const auto& t : store.repair_targets(gap.topic, gap.partition)) {
    if (is_final(t)) {
      ++r.final;
      continue;
    }
    if (!t.account_id || t.account_id->empty()) {
      ++r.no_account;
      continue;
    }
    FollowUpOrigin origin;
    origin.account_id = *t.account_id;
    origin.caused_by = "gap:" + std::to_string(gap.id);
    origin.now_ms = now_ms;
    origin.read_discriminator = "gap-" + std::to_string(gap.id);
    if (store.insert_outbox(outbox_row(read_of(t), origin))) {
      ++r.queued;
    } else {
      ++r.already;  // this gap's repair queued it before
    }
  }
  store.mark_gap_repaired(gap.id, r.queued, now_ms);
  return r;
}

std::string digest_hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 0xf];
  }
  return out;
}

std::string gap_message_key(const storage::OffsetGapRow& gap) {
  return "offset-gap:" + gap.topic + "/" + std::to_string(gap.partition);
}

std::string render_gap_message(const storage::OffsetGapRow& gap) {
  core::JsonWriter w;
  w.begin_object().field("type", "offset_gap").field("gap_id", gap.id);
  w.field("topic", gap.topic).field("partition", std::int64_t{gap.partition});
  w.field("expected_offset", gap.expected).field("resume_offset", gap.resume_at);
  w.field("kind", gap.kind).field("skipped_offsets", gap.skipped);
  w.field("policy", storage::to_string(gap.policy)).field("status", storage::to_string(gap.status));
  w.field("detected_at", core::rfc3339_ms(gap.detected_at_ms)).end_object();
  return w.take();
}

}  // namespace kpay::processor
