// Applies a batch of consumed messages to the state store in ONE SQLite
// transaction: for each message, inbox (event_id unique) → state machine →
// one history row → outbox rows for follow-up calls → publish-queue rows
// (state changes, dead-letter copies); then the next offset of every partition
// in the batch. Nothing of a batch is visible unless all of it is.
//
// No Kafka here: the consumer loop (consumer.hpp) feeds batches in and
// publishes what the result lists, after the commit.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "kpay/klarna/envelope.hpp"
#include "kpay/processor/command_auth.hpp"
#include "kpay/processor/commands.hpp"
#include "kpay/processor/events.hpp"
#include "kpay/processor/follow_ups.hpp"
#include "kpay/storage/store.hpp"

namespace kpay::processor {

struct InputMessage {
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::string key;
  std::string value;  // the raw webhook body
  // SHA-256 of the body (32 bytes), set by decode() for events: a second
  // message with a known event_id and another digest is a conflict.
  std::string digest{};
  CommandHeaders headers{};                    // kpay-sender, kpay-signature (commands)
  std::optional<std::int64_t> timestamp_ms{};  // the Kafka message timestamp
  // The message's W3C traceparent header (a new trace when it had no valid
  // one) and the receiver's received-at header: kept in the history, carried
  // to the calls and messages the message causes (docs/OPERATIONS.md).
  std::string traceparent{};
  std::string received_at{};
};

// A command refused before it was read (command_auth.hpp: unsigned,
// malformed_signature, unknown_sender, unknown_key, retired_key,
// bad_signature, bad_issued_at): rejected, counted, its raw message kept as
// a dead letter; never put in the command inbox, so a forger cannot take a
// command_id away from its real sender.
struct CommandRefusal {
  std::string reason;
  std::string sender;  // as claimed, when well formed
  std::optional<std::string> command_id;
  std::optional<std::string> type;
};

// How the processor checks commands: its policy and the senders' keys of
// the moment. Without it (unit suites) every command is trusted.
struct CommandSecurity {
  CommandPolicy policy;
  std::function<std::shared_ptr<const SenderKeyRing>()> keys;
};

// A consumed message with its body already decoded. Decoding needs no store,
// so the consumer does it on its own thread while the previous batch commits.
// Messages of the commands topic decode to a Command or a CommandRejection.
struct DecodedMessage {
  InputMessage message;  // value emptied once decoded into an Event or a command
  std::variant<Event, Poison, Command, CommandRejection, CommandRefusal> decoded;
  CommandOrigin origin{};  // commands: who signed it, when it was issued
};

// Messages of one partition a batch skipped because they lay below the
// partition's stored offset (intake/batch_fence.hpp): applied before, by
// another processor or by an attempt of this one whose commit it missed.
struct FencedRange {
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t first = 0;   // lowest skipped offset
  std::int64_t last = 0;    // highest skipped offset
  std::int64_t stored = 0;  // the stored next offset that held them back
  std::uint64_t count = 0;  // messages skipped
};

struct BatchResult {
  std::uint64_t applied = 0;
  std::uint64_t duplicates = 0;
  std::uint64_t stale = 0;
  std::uint64_t rejected = 0;  // forbidden transitions, poison, unrouted
  std::uint64_t unrouted = 0;
  // Events whose metadata.live contradicts the deployment's environment
  // (FollowUpSettings::live): applied or not, they caused no call.
  std::uint64_t environment_mismatch = 0;
  // Events whose metadata.subject_account_id disagrees with the account stored
  // for their entity (or a dispute's transaction): entity id, what.
  std::vector<std::pair<std::string, std::string>> account_mismatches;
  // Payouts that moved to PAYOUT_FAILED in this batch (each once: a
  // redelivered or stale failure is not applied again).
  std::vector<FailedPayout> failed_payouts;
  // Messages with the event_id of an applied event but another body:
  // dead-lettered (event_id_conflict), counted apart from duplicates.
  std::uint64_t conflicts = 0;
  std::map<std::string, std::uint64_t> poison_by_reason;
  // Commands refused for their signature, age or permissions, by reason.
  std::map<std::string, std::uint64_t> commands_refused;
  // Rows written to the publish queue in this batch (seq assigned), to be
  // produced once the transaction committed.
  std::vector<storage::PublishRow> publications;
  // Highest offset + 1 per (topic, partition) seen in the batch, or the
  // stored one when that is further (every message of it was fenced).
  std::map<std::pair<std::string, std::int32_t>, std::int64_t> next_offsets;
  // Messages skipped below their partition's stored offset, per partition:
  // nothing written for them.
  std::vector<FencedRange> fenced;
};

namespace appliers {
class SenderDayTotals;  // the senders' day totals of a batch (processor/src/commands)
}
class BatchFence;  // processor/src/intake/batch_fence.hpp

class BatchApplier {
 public:
  // `follow_ups`: the capture policy and the environment follow-up calls are
  // decided with (follow_ups.hpp); the rows go to the outbox in the batch.
  BatchApplier(storage::Store& store, klarna::Topics topics, FollowUpSettings follow_ups = {});
  ~BatchApplier();

  // Throws storage::SqliteError when the store fails; the transaction is then
  // rolled back and the caller may retry the same batch (it is idempotent).
  // `acknowledged` publish-queue rows (broker-confirmed) are deleted in the
  // same transaction. A batch lying wholly below its partitions' committed
  // offsets (applied already, by another processor) is reported in `fenced`
  // without that transaction, its acknowledged rows deleted in one of their
  // own (intake/batch_fence.hpp).
  BatchResult apply(std::span<const DecodedMessage> batch,
                    std::span<const std::int64_t> acknowledged = {});
  // The same, decoding each message first.
  BatchResult apply(std::span<const InputMessage> batch,
                    std::span<const std::int64_t> acknowledged = {});

  // In a transaction of its own: `d`, which made apply() throw something
  // other than a storage fault (a bug, a constraint it violates), recorded
  // as poison with reason "apply_error" and `what` as the detail (history
  // row, poison_messages, dead-letter copy) and its offset moved past. Its
  // event_id is not put in the inbox: replayed after a fix, it applies.
  // The dead-letter copy holds the raw bytes only when `d` still has them
  // (decoded events and commands let them go; the coordinates name it).
  BatchResult record_apply_error(const DecodedMessage& d, std::string_view what);

  // From now on commands are authenticated and checked against `security`.
  void secure_commands(std::shared_ptr<const CommandSecurity> security) {
    security_ = std::move(security);
  }

  // What apply() would decode `m` to (messages of the unrouted topic are
  // recorded, never applied).
  DecodedMessage decode(InputMessage m) const;

 private:
  // A batch every message of which lies below its partition's committed
  // offset: reported as fenced, its acknowledged publications deleted.
  BatchResult finish_fenced(std::span<const DecodedMessage> batch, const BatchFence& fence,
                            std::span<const std::int64_t> acknowledged);
  // apply_one with the message's trace context set in the store.
  void apply_traced(const DecodedMessage& m, BatchResult& out);
  void apply_one(const DecodedMessage& m, BatchResult& out);
  // Open settlement findings checked again when the batch booked a dispute
  // or a sub-record (recheck_findings); what changed is queued for
  // klarna.reconciliation.
  void recheck_settlements(BatchResult& out);
  void record_poison(const InputMessage& m, const Poison& p, BatchResult& out);
  // A known event_id with another body: a conflict, dead-lettered
  // (event_id_conflict) with both digests. false when it is a duplicate.
  bool record_conflict(const InputMessage& m, storage::HistoryRow& h, BatchResult& out);
  // A downstream command (or a message of the commands topic that is none):
  // command inbox, outbox row, history row, result on klarna.command-results.
  template <class C>
  void apply_command_message(const DecodedMessage& d, const C& command, BatchResult& out);
  // command_refusals.cpp: the refused command's history row, dead letter,
  // result and audit row; and the audit row of a command decision.
  void record_command_refusal(const DecodedMessage& d, const CommandRefusal& r, BatchResult& out);
  void audit_command(const DecodedMessage& d, const CommandResult& result, std::int64_t now_ms);
  // The signature and issued_at of a command message (decode()).
  std::optional<CommandRefusal> authenticate_command(InputMessage& m, CommandOrigin& origin) const;

  storage::Store& store_;
  klarna::Topics topics_;
  FollowUpSettings follow_ups_;
  std::shared_ptr<const CommandSecurity> security_;
  std::unique_ptr<appliers::SenderDayTotals> day_totals_;  // written at each commit
  bool recheck_settlements_ = false;  // set by apply_one, cleared by recheck_settlements
};

}  // namespace kpay::processor
