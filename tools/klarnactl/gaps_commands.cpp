// klarnactl gaps list|accept|repair|conflicts: the processor's offset gaps
// (partitions that moved past offsets it never applied) and event conflicts
// (a known event_id with another body). docs/OPERATIONS.md, "Offset gaps".
//
// `accept` records the operator's decision; the running processor sees it
// within processor.gap_check_interval_ms and resumes a paused partition at
// the gap's end, without a restart. `repair` queues reads of the partition's
// open entities (GET payment request / transaction / dispute) in the outbox;
// the outbox worker sends them within worker.poll_interval_ms.
#include <chrono>
#include <iostream>

#include "ctl_support.hpp"
#include "klarnactl.hpp"
#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"
#include "kpay/core/wall_clock.hpp"
#include "kpay/processor/gap_repair.hpp"

namespace kpay::ctl {

namespace {

using core::now_ms;

std::string when(const std::optional<std::int64_t>& ms) {
  return ms ? core::rfc3339_ms(*ms) : "-";
}

void gap_json(core::JsonWriter& w, const storage::OffsetGapRow& g) {
  w.begin_object().field("id", g.id).field("topic", g.topic);
  w.field("partition", std::int64_t{g.partition}).field("expected_offset", g.expected);
  w.field("resume_offset", g.resume_at).field("kind", g.kind).field("skipped_offsets", g.skipped);
  w.field("policy", storage::to_string(g.policy)).field("status", storage::to_string(g.status));
  w.field("detected_at", core::rfc3339_ms(g.detected_at_ms));
  w.key("decided_at");
  g.decided_at_ms ? w.value(core::rfc3339_ms(*g.decided_at_ms)) : w.null();
  w.key("repaired_at");
  g.repaired_at_ms ? w.value(core::rfc3339_ms(*g.repaired_at_ms)) : w.null();
  w.field("repair_reads", g.repair_reads).end_object();
}

void print_gaps(const std::vector<storage::OffsetGapRow>& gaps, bool json) {
  if (json) {
    core::JsonWriter w;
    w.begin_object().key("gaps").begin_array();
    for (const auto& g : gaps) gap_json(w, g);
    w.end_array().end_object();
    std::cout << w.take() << "\n";
    return;
  }
  std::vector<std::vector<std::string>> rows = {{"ID", "TOPIC/PARTITION", "EXPECTED", "RESUME AT",
                                                 "KIND", "SKIPPED", "POLICY", "STATUS", "DETECTED",
                                                 "REPAIRED (READS)"}};
  for (const auto& g : gaps) {
    rows.push_back({std::to_string(g.id), g.topic + "/" + std::to_string(g.partition),
                    std::to_string(g.expected), std::to_string(g.resume_at), g.kind,
                    std::to_string(g.skipped), std::string(storage::to_string(g.policy)),
                    std::string(storage::to_string(g.status)), core::rfc3339_ms(g.detected_at_ms),
                    when(g.repaired_at_ms) + " (" + std::to_string(g.repair_reads) + ")"});
  }
  print_table(rows);
}

void print_conflicts(const std::vector<storage::EventConflictRow>& conflicts, bool json) {
  if (json) {
    core::JsonWriter w;
    w.begin_object().key("conflicts").begin_array();
    for (const auto& c : conflicts) {
      w.begin_object().field("event_id", c.event_id).field("topic", c.topic);
      w.field("partition", std::int64_t{c.partition}).field("offset", c.offset);
      w.field("sha256", processor::digest_hex(c.digest))
          .field("applied_sha256", processor::digest_hex(c.first_digest));
      w.field("applied_at", c.first_topic + "/" + std::to_string(c.first_partition) + "/" +
                                std::to_string(c.first_offset));
      w.field("recorded_at", core::rfc3339_ms(c.recorded_at_ms)).end_object();
    }
    w.end_array().end_object();
    std::cout << w.take() << "\n";
    return;
  }
  std::vector<std::vector<std::string>> rows = {
      {"EVENT ID", "MESSAGE", "SHA-256", "APPLIED (SHA-256 AT)", "RECORDED"}};
  for (const auto& c : conflicts) {
    rows.push_back({c.event_id,
                    c.topic + "/" + std::to_string(c.partition) + "/" + std::to_string(c.offset),
                    processor::digest_hex(c.digest),
                    processor::digest_hex(c.first_digest) + " at " + c.first_topic + "/" +
                        std::to_string(c.first_partition) + "/" + std::to_string(c.first_offset),
                    core::rfc3339_ms(c.recorded_at_ms)});
  }
  print_table(rows);
}

storage::OffsetGapRow existing_gap(storage::Store& store, std::int64_t id) {
  auto gap = store.find_gap(id);
  if (!gap) throw CommandFailed("no offset gap with id " + std::to_string(id));
  return *gap;
}

void register_list(CLI::App* gaps, const GlobalOptions& global) {
  auto* list = gaps->add_subcommand("list", "Offset gaps, newest first");
  static std::string status;
  static std::size_t limit = 50;
  static bool json = false;
  list->add_option("--status", status, "open | accepted")
      ->check(CLI::IsMember({"open", "accepted"}));
  add_limit(list, limit);
  list->add_flag("--json", json, "JSON output");
  list->callback([&global] {
    auto store = open_state_store(global, false);
    print_gaps(store->list_gaps(storage::parse_gap_status(status), limit), json);
  });
}

void register_accept(CLI::App* gaps, const GlobalOptions& global) {
  auto* accept = gaps->add_subcommand(
      "accept", "Accept a gap: a paused partition resumes where the log goes on");
  static std::int64_t id = 0;
  accept->add_option("id", id, "the gap's id (gaps list)")->required()->check(CLI::PositiveNumber);
  accept->callback([&global] {
    auto store = open_state_store(global, true);
    const auto gap = existing_gap(*store, id);
    if (!store->accept_gap(id, now_ms())) {
      throw CommandFailed("gap " + std::to_string(id) + " is " +
                          std::string(storage::to_string(gap.status)) + ", not open");
    }
    std::cout << "gap " << id << " accepted; " << gap.topic << "/" << gap.partition
              << (gap.policy == storage::GapPolicy::pause
                      ? " resumes at offset " + std::to_string(gap.resume_at) +
                            " within processor.gap_check_interval_ms"
                      : " went on already (policy continue)")
              << "\n";
  });
}

void register_repair(CLI::App* gaps, const GlobalOptions& global) {
  auto* repair = gaps->add_subcommand(
      "repair", "Read the open payments and disputes of a gap's partition again from Klarna");
  static std::int64_t id = 0;
  repair->add_option("id", id, "the gap's id (gaps list)")->required()->check(CLI::PositiveNumber);
  repair->callback([&global] {
    auto store = open_state_store(global, true);
    const auto gap = existing_gap(*store, id);
    storage::WriteTransaction tx(*store);
    const auto r = processor::queue_gap_repair(*store, gap, now_ms());
    tx.commit();
    std::cout << "gap " << id << ": " << r.queued << " read(s) queued in the outbox (" << r.already
              << " queued before, " << r.final << " entities final, " << r.no_account
              << " without an account to read from); klarnactl actions list shows them\n";
  });
}

void register_conflicts(CLI::App* gaps, const GlobalOptions& global) {
  auto* conflicts = gaps->add_subcommand(
      "conflicts", "Messages with a known event_id but another body (dead-lettered)");
  static std::size_t limit = 50;
  static bool json = false;
  add_limit(conflicts, limit);
  conflicts->add_flag("--json", json, "JSON output");
  conflicts->callback([&global] {
    auto store = open_state_store(global, false);
    print_conflicts(store->list_conflicts(limit), json);
  });
}

}  // namespace

void register_gaps_commands(CLI::App& app, const GlobalOptions& global) {
  auto* gaps =
      app.add_subcommand("gaps", "Offset gaps (events Kafka no longer has) and event_id conflicts");
  gaps->require_subcommand(1);
  register_list(gaps, global);
  register_accept(gaps, global);
  register_repair(gaps, global);
  register_conflicts(gaps, global);
}

}  // namespace kpay::ctl
