// klarnactl dead-letters list|show|replay: both kinds of dead letter.
//
//   receiver   a webhook with a valid signature whose body could not be routed,
//              kept on topics.dead_letter (header dead-letter-reason)
//   processor  a message the processor could not apply (poison_messages in
//              processor.database; its copy on klarna.processor-dead-letter)
//
// A dead letter's id is its origin, TOPIC/PARTITION/OFFSET. A replay re-enters
// the normal path, never around it: a receiver dead letter is parsed again with
// the receiver's envelope parser and, if it now routes, produced to the family
// topic that parser chooses (keyed by its entity, with the receiver's headers);
// a poison message is produced again to its original topic with its original
// key and bytes, so the processor applies it as any other message (its inbox
// still drops an event already applied). Every replay is recorded in
// processor.database (dead_letter_replays): a second one needs --force; and
// in the audit trail with the operator (--operator, else the OS user).
#include <cctype>
#include <chrono>
#include <iomanip>
#include <iostream>
#include <map>

#include "ctl_support.hpp"
#include "klarnactl.hpp"
#include "kpay/core/json_writer.hpp"
#include "kpay/core/kafka.hpp"
#include "kpay/core/log.hpp"
#include "kpay/core/wall_clock.hpp"
#include "kpay/klarna/envelope.hpp"
#include "kpay/klarna/kafka_contract.hpp"
#include "kpay/receiver/settings.hpp"
#include "kpay/storage/audit_log.hpp"

namespace kpay::ctl {

namespace {

using core::now_ms;

// One dead letter of either source, as shown and replayed.
struct DeadLetter {
  std::string source;  // "receiver" | "processor"
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::string reason;
  std::string key, value;  // value: empty in listings of poison (bytes counts it)
  std::int64_t bytes = 0;
  bool key_known = true;
  std::optional<std::int64_t> recorded_at_ms;
  std::map<std::string, std::string> headers;  // receiver: as received
  std::string event_id;                        // processor: when the envelope was read
  std::optional<storage::ReplayRow> replay;

  std::string id() const;
};

std::string id_of(const std::string& topic, std::int32_t partition, std::int64_t offset) {
  return topic + "/" + std::to_string(partition) + "/" + std::to_string(offset);
}
std::string DeadLetter::id() const {
  return id_of(topic, partition, offset);
}

// The receiver headers a dead letter keeps (the signature is not shown).
namespace header = klarna::contract::header;
constexpr const char* kReceiverHeaders[] = {header::dead_letter_reason, header::received_at,
                                            header::signing_key_id, header::signature,
                                            header::content_type};

DeadLetter from_kafka(const rd_kafka_message_t* m, const std::string& topic) {
  DeadLetter d;
  d.source = "receiver";
  d.topic = topic;
  d.partition = m->partition;
  d.offset = m->offset;
  if (m->key) d.key.assign(static_cast<const char*>(m->key), m->key_len);
  if (m->payload) d.value.assign(static_cast<const char*>(m->payload), m->len);
  d.bytes = static_cast<std::int64_t>(d.value.size());
  for (const char* h : kReceiverHeaders) d.headers[h] = core::kafka_header(m, h);
  d.reason = d.headers[header::dead_letter_reason];
  rd_kafka_timestamp_type_t type;
  const std::int64_t ts = rd_kafka_message_timestamp(m, &type);
  if (ts > 0) d.recorded_at_ms = ts;
  return d;
}

// Low and high watermark per partition of `topic`; empty when it does not exist.
std::vector<std::tuple<std::int32_t, std::int64_t, std::int64_t>> watermarks(
    rd_kafka_t* rk, const std::string& topic) {
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_topic_t* t = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const auto err = rd_kafka_metadata(rk, 0, t, &md, 10000);
  rd_kafka_topic_destroy(t);
  if (err)
    throw CommandFailed("cannot read the partitions of " + topic + ": " + rd_kafka_err2str(err));
  std::vector<std::tuple<std::int32_t, std::int64_t, std::int64_t>> out;
  if (md->topic_cnt == 1 && !md->topics[0].err) {
    for (int i = 0; i < md->topics[0].partition_cnt; ++i) {
      const auto p = md->topics[0].partitions[i].id;
      std::int64_t low = 0, high = 0;
      if (rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &low, &high, 10000)) continue;
      if (high > low) out.emplace_back(p, low, high);
    }
  }
  rd_kafka_metadata_destroy(md);
  return out;
}

// Every message on the receiver's dead-letter topic (its retention permitting).
std::vector<DeadLetter> receiver_dead_letters(const KafkaAccess& k) {
  auto consumer = make_client(k, RD_KAFKA_CONSUMER,
                              {{"group.id", "klarnactl-dead-letters"},
                               {"enable.auto.commit", "false"},
                               {"enable.partition.eof", "false"}});
  const std::string& topic = k.topics.dead_letter;
  const auto marks = watermarks(consumer.get(), topic);
  std::vector<DeadLetter> out;
  if (marks.empty()) return out;
  core::KafkaPartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(marks.size())));
  std::map<std::int32_t, std::int64_t> end;
  for (const auto& [p, low, high] : marks) {
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p)->offset = low;
    end[p] = high;
  }
  rd_kafka_assign(consumer.get(), list.get());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!end.empty() && std::chrono::steady_clock::now() < deadline) {
    core::KafkaMessage m(rd_kafka_consumer_poll(consumer.get(), 200));
    if (!m || m->err) continue;
    if (m->offset < end[m->partition]) out.push_back(from_kafka(m.get(), topic));
    if (m->offset + 1 >= end[m->partition]) end.erase(m->partition);
  }
  rd_kafka_consumer_close(consumer.get());
  if (!end.empty()) throw CommandFailed("could not read all of " + topic + " within 30 s");
  return out;
}

DeadLetter from_store(const storage::DeadLetterRow& p) {
  DeadLetter d;
  d.source = "processor";
  d.topic = p.topic;
  d.partition = p.partition;
  d.offset = p.offset;
  d.reason = p.reason;
  d.key = p.key.value_or("");
  d.key_known = p.key.has_value();
  d.value = p.value;
  d.bytes = p.bytes;
  d.recorded_at_ms = p.recorded_at_ms;
  d.event_id = p.event_id;
  return d;
}

struct Selection {
  std::string source;  // empty: both
  std::size_t limit = 50;
  bool json = false;
};

// Dead letters of the selected sources, newest first, with their replays.
std::vector<DeadLetter> collect(const GlobalOptions& g, storage::Store& store, const Selection& s) {
  std::vector<DeadLetter> out;
  if (s.source.empty() || s.source == "receiver") out = receiver_dead_letters(kafka_from(g));
  if (s.source.empty() || s.source == "processor") {
    for (const auto& p : store.list_poison(s.limit)) out.push_back(from_store(p));
  }
  std::map<std::string, storage::ReplayRow> replays;
  for (auto& r : store.replays()) replays.emplace(id_of(r.topic, r.partition, r.offset), r);
  for (auto& d : out) {
    if (auto it = replays.find(d.id()); it != replays.end()) d.replay = it->second;
  }
  std::stable_sort(out.begin(), out.end(), [](const DeadLetter& a, const DeadLetter& b) {
    return a.recorded_at_ms.value_or(0) > b.recorded_at_ms.value_or(0);
  });
  if (out.size() > s.limit) out.resize(s.limit);
  return out;
}

std::string when(const std::optional<std::int64_t>& ms) {
  return ms ? core::rfc3339_ms(*ms) : "-";
}

std::string replay_text(const DeadLetter& d) {
  if (!d.replay) return "no";
  return core::rfc3339_ms(d.replay->last_replayed_ms) + " (" + std::to_string(d.replay->replays) +
         "x)";
}

void summary_json(core::JsonWriter& w, const DeadLetter& d) {
  w.begin_object().field("id", d.id()).field("source", d.source).field("topic", d.topic);
  w.field("partition", static_cast<std::int64_t>(d.partition)).field("offset", d.offset);
  w.field("reason", d.reason).field("recorded_at", when(d.recorded_at_ms));
  w.field("bytes", d.bytes);
  w.key("replayed");
  if (!d.replay) {
    w.null();
    return;
  }
  w.begin_object().field("replays", d.replay->replays);
  w.field("last_replayed_at", core::rfc3339_ms(d.replay->last_replayed_ms));
  w.field("to_topic", d.replay->target_topic).end_object();
}

void list(const GlobalOptions& g, const Selection& s) {
  auto store = open_state_store(g, false);
  const auto rows = collect(g, *store, s);
  if (s.json) {
    for (const auto& d : rows) {
      core::JsonWriter w;
      summary_json(w, d);
      std::cout << w.end_object().str() << "\n";
    }
    return;
  }
  std::size_t id_width = 2, reason_width = 6;
  for (const auto& d : rows) {
    id_width = std::max(id_width, d.id().size());
    reason_width = std::max(reason_width, d.reason.size());
  }
  const int id_col = static_cast<int>(id_width) + 2;
  const int reason_col = static_cast<int>(reason_width) + 2;
  std::cout << std::left << std::setw(id_col) << "ID" << std::setw(11) << "SOURCE"
            << std::setw(reason_col) << "REASON" << std::setw(26) << "RECORDED" << std::setw(8)
            << "BYTES"
            << "REPLAYED\n";
  for (const auto& d : rows) {
    std::cout << std::setw(id_col) << d.id() << std::setw(11) << d.source << std::setw(reason_col)
              << d.reason << std::setw(26) << when(d.recorded_at_ms) << std::setw(8) << d.bytes
              << replay_text(d) << "\n";
  }
}

struct Coordinates {
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
};

// "TOPIC/PARTITION/OFFSET" (topic names cannot contain '/').
Coordinates parse_id(const std::string& id) {
  const auto b = id.rfind('/');
  const auto a = b == std::string::npos || b == 0 ? std::string::npos : id.rfind('/', b - 1);
  Coordinates c;
  try {
    if (a == std::string::npos || a == 0) throw std::invalid_argument("shape");
    std::size_t used = 0;
    c.topic = id.substr(0, a);
    const auto part = id.substr(a + 1, b - a - 1), off = id.substr(b + 1);
    c.partition = std::stoi(part, &used);
    if (used != part.size() || c.partition < 0) throw std::invalid_argument("partition");
    c.offset = std::stoll(off, &used);
    if (used != off.size() || c.offset < 0) throw std::invalid_argument("offset");
  } catch (const std::exception&) {
    throw CLI::ValidationError("ID", "'" + id + "' is not TOPIC/PARTITION/OFFSET (see list)");
  }
  return c;
}

// One dead letter by id, with its bytes; CommandFailed when there is none.
DeadLetter find(const GlobalOptions& g, storage::Store& store, const std::string& id) {
  const auto c = parse_id(id);
  std::optional<DeadLetter> found;
  const auto k = kafka_from(g);
  if (c.topic == k.topics.dead_letter) {
    for (auto& d : receiver_dead_letters(k)) {
      if (d.partition == c.partition && d.offset == c.offset) found = std::move(d);
    }
  } else if (auto p = store.find_poison(c.topic, c.partition, c.offset)) {
    found = from_store(*p);
  }
  if (!found) throw CommandFailed("no dead letter " + id);
  found->replay = store.find_replay(c.topic, c.partition, c.offset);
  return *found;
}

// The end of the JSON string starting at s[open] (a '"'), or npos.
std::size_t string_end(const std::string& s, std::size_t open) {
  for (std::size_t i = open + 1; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;
    } else if (s[i] == '"') {
      return i;
    }
  }
  return std::string::npos;
}

bool names_a_token(std::string_view key) {
  std::string lower(key);
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower.find("token") != std::string::npos;
}

// The message as shown: the string value of every member whose name contains
// "token" (payment_confirmation_token, klarna_network_session_token, …) is
// replaced by [redacted], whether or not the whole is valid JSON. A replay
// sends the original bytes; only what is printed is redacted.
std::string redacted(const std::string& s) {
  std::string out;
  std::size_t i = 0;
  while (i < s.size()) {
    const auto open = s.find('"', i);
    const auto close = open == std::string::npos ? open : string_end(s, open);
    if (close == std::string::npos) break;
    out.append(s, i, close + 1 - i);
    i = close + 1;
    auto colon = s.find_first_not_of(" \t\r\n", i);
    if (colon == std::string::npos || s[colon] != ':') continue;
    auto value = s.find_first_not_of(" \t\r\n", colon + 1);
    if (value == std::string::npos || s[value] != '"' ||
        !names_a_token(std::string_view(s).substr(open + 1, close - open - 1))) {
      continue;
    }
    const auto value_end = string_end(s, value);
    out.append(s, i, value + 1 - i).append("[redacted]");
    if (value_end == std::string::npos) return out;  // cut short: nothing of it shown
    out += '"';
    i = value_end + 1;
  }
  out.append(s, i, std::string::npos);
  return out;
}

void show(const GlobalOptions& g, const std::string& id, bool json) {
  auto store = open_state_store(g, false);
  const auto d = find(g, *store, id);
  if (json) {
    core::JsonWriter w;
    summary_json(w, d);
    w.key("key");
    d.key_known ? w.value(d.key) : w.null();
    if (!d.event_id.empty()) w.field("event_id", d.event_id);
    if (d.source == "receiver") {
      w.field("received_at", d.headers.at(header::received_at));
      w.field("signing_key_id", d.headers.at(header::signing_key_id));
      w.field("content_type", d.headers.at(header::content_type));
    }
    w.field("message", redacted(d.value));
    std::cout << w.end_object().str() << "\n";
    return;
  }
  std::cout << "dead letter " << d.id() << " (" << d.source << ")\n"
            << "  reason:   " << d.reason << "\n"
            << "  origin:   topic " << d.topic << ", partition " << d.partition << ", offset "
            << d.offset << ", recorded " << when(d.recorded_at_ms) << "\n"
            << "  key:      " << (d.key_known ? d.key : "(unknown: recorded before keys were kept)")
            << "\n";
  if (!d.event_id.empty()) std::cout << "  event_id: " << d.event_id << "\n";
  if (d.source == "receiver") {
    std::cout << "  received: " << d.headers.at(header::received_at)
              << "   signing key: " << d.headers.at(header::signing_key_id) << "\n";
  }
  std::cout << "  replayed: " << replay_text(d) << "\n"
            << "  message (" << d.value.size() << " bytes; token values redacted):\n"
            << redacted(d.value) << "\n";
}

// ---- replay ---------------------------------------------------------------------

struct Outgoing {
  std::string topic, key;
  std::vector<std::pair<std::string, std::string>> headers;
};

// Where the normal path puts this dead letter now; nullopt (with `why`) when
// it still cannot go anywhere.
std::optional<Outgoing> route(const KafkaAccess& k, const DeadLetter& d, std::string& why) {
  Outgoing o;
  if (d.source == "processor") {
    if (!d.key_known) {
      why = "its original Kafka key was not recorded (poison recorded before v6)";
      return std::nullopt;
    }
    o.topic = d.topic;
    o.key = d.key;
    return o;
  }
  // The receiver's routing: its envelope parser and its topic per family.
  auto parsed = klarna::parse_envelope(d.value);
  if (!parsed) {
    why = "still not routable: " + parsed.error.reason + " (" + parsed.error.detail + ")";
    return std::nullopt;
  }
  const auto& e = *parsed.envelope;
  o.topic = k.topics.for_family(e.family);
  o.key = e.entity_id;
  o.headers = {{header::event_id, e.event_id},
               {header::event_type, e.event_type},
               {header::event_version, e.event_version}};
  for (const char* h :
       {header::signing_key_id, header::signature, header::received_at, header::content_type}) {
    o.headers.emplace_back(h, d.headers.at(h));
  }
  return o;
}

void produce(const KafkaAccess& k, const Outgoing& o, const DeadLetter& d) {
  auto producer =
      make_client(k, RD_KAFKA_PRODUCER, {{"enable.idempotence", "true"}, {"acks", "all"}});
  core::KafkaHeaders headers(rd_kafka_headers_new(o.headers.size() + 1));
  for (const auto& [name, value] : o.headers) {
    rd_kafka_header_add(headers.get(), name.c_str(), -1, value.data(),
                        static_cast<ssize_t>(value.size()));
  }
  const std::string from = d.id();
  rd_kafka_header_add(headers.get(), header::replayed_from, -1, from.data(),
                      static_cast<ssize_t>(from.size()));
  auto err = rd_kafka_producev(
      producer.get(), RD_KAFKA_V_TOPIC(o.topic.c_str()), RD_KAFKA_V_KEY(o.key.data(), o.key.size()),
      RD_KAFKA_V_VALUE(const_cast<char*>(d.value.data()), d.value.size()),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(headers.get()), RD_KAFKA_V_END);
  if (err) throw CommandFailed(std::string("cannot produce: ") + rd_kafka_err2str(err));
  headers.release();  // owned by the message now
  if (rd_kafka_flush(producer.get(), 15000) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      rd_kafka_outq_len(producer.get()) > 0) {
    throw CommandFailed("Kafka did not acknowledge the replay of " + from + " in time");
  }
}

struct ReplayOptions {
  std::string id;
  bool all = false, force = false, json = false;
  std::string source;
};

enum class Outcome { replayed, refused, skipped };

// The operator's audit event of a replay of `d` to `out` (status replayed or
// replay_failed).
storage::AuditEvent replay_event(const GlobalOptions& g, const DeadLetter& d, const Outgoing& out,
                                 const std::string& status, const std::string& why = "") {
  std::string detail = "klarnactl dead-letters replay " + d.id() + " (" + d.source + ", reason " +
                       d.reason + ")" + (d.replay ? " again (--force)" : "") + " to " + out.topic +
                       (out.key.empty() ? "" : " with key " + out.key);
  if (!why.empty()) detail += ": not produced, " + why;
  auto e = operator_event(g, status, detail);
  if (!out.key.empty()) e.entity_id = out.key;
  return e;
}

// Replays one dead letter: recorded first with the operator's audit event (a
// poison message's inbox claim released in the same transaction), then
// produced; a failed produce takes the replay record back and adds a
// replay_failed event (the trail is append-only).
Outcome replay_one(const GlobalOptions& g, storage::Store& store, const KafkaAccess& k,
                   const DeadLetter& d, bool force, std::string& said) {
  if (d.replay && !force) {
    said = "already replayed at " + core::rfc3339_ms(d.replay->last_replayed_ms) + " (" +
           std::to_string(d.replay->replays) + "x); --force replays it again";
    return Outcome::skipped;
  }
  std::string why;
  const auto out = route(k, d, why);
  if (!out) {
    said = why;
    return Outcome::refused;
  }
  {
    storage::WriteTransaction tx(store);
    if (d.source == "processor") {
      storage::DeadLetterRow p;
      p.topic = d.topic;
      p.partition = d.partition;
      p.offset = d.offset;
      p.event_id = d.event_id;
      store.release_poison_claim(p);
    }
    store.record_replay({d.topic, d.partition, d.offset, d.source, out->topic, 0, now_ms()});
    store.append_audit(replay_event(g, d, *out, "replayed"));
    tx.commit();
  }
  try {
    produce(k, *out, d);
  } catch (const std::exception& e) {
    storage::WriteTransaction tx(store);
    store.restore_replay(d.replay, d.topic, d.partition, d.offset);
    store.append_audit(replay_event(g, d, *out, "replay_failed", e.what()));
    tx.commit();
    throw;
  }
  said = "produced to " + out->topic + (out->key.empty() ? "" : " with key " + out->key);
  return Outcome::replayed;
}

void print_outcome(const DeadLetter& d, Outcome o, const std::string& said, bool json) {
  static constexpr const char* kNames[] = {"replayed", "refused", "skipped"};
  const char* name = kNames[static_cast<int>(o)];
  if (!json) {
    std::cout << name << " " << d.id() << ": " << said << "\n";
    return;
  }
  core::JsonWriter w;
  w.begin_object().field("id", d.id()).field("source", d.source).field("outcome", name);
  w.field("detail", said).end_object();
  std::cout << w.str() << "\n";
}

void replay(const GlobalOptions& g, const ReplayOptions& o) {
  if (o.all == !o.id.empty()) throw CLI::ValidationError("replay", "give one ID or --all");
  if (!o.all && !o.source.empty()) throw CLI::ValidationError("--source", "only with --all");
  auto store = open_state_store(g, true);
  const auto k = kafka_from(g);
  std::vector<DeadLetter> todo;
  if (o.all) {
    todo = collect(g, *store, {o.source, kMaxRows, false});
  } else {
    todo.push_back(find(g, *store, o.id));
  }
  std::map<Outcome, int> counts;
  for (auto& d : todo) {
    if (d.source == "processor" && d.value.empty()) d = find(g, *store, d.id());  // its bytes
    std::string said;
    const auto outcome = replay_one(g, *store, k, d, o.force, said);
    ++counts[outcome];
    if (o.all && outcome == Outcome::skipped && !o.json) continue;  // counted below
    print_outcome(d, outcome, said, o.json);
  }
  if (o.all && !o.json) {
    std::cout << counts[Outcome::replayed] << " replayed, " << counts[Outcome::refused]
              << " refused, " << counts[Outcome::skipped] << " already replayed (--force)\n";
  }
  if (counts[Outcome::refused] > 0 || (!o.all && counts[Outcome::skipped] > 0)) {
    throw CommandFailed(o.all ? std::to_string(counts[Outcome::refused]) + " not replayed"
                              : "not replayed");
  }
}

CLI::Option* add_source(CLI::App* cmd, std::string& source) {
  return cmd->add_option("--source", source, "receiver | processor (default: both)")
      ->check(CLI::IsMember({"receiver", "processor"}));
}

}  // namespace

void register_dead_letters_commands(CLI::App& app, const GlobalOptions& global) {
  auto* dl = app.add_subcommand(
      "dead-letters", "Dead letters: the receiver's unroutable webhooks, the processor's poison");
  dl->require_subcommand(1);

  auto sel = std::make_shared<Selection>();
  auto* ls = dl->add_subcommand("list", "Dead letters of both sources, newest first");
  add_source(ls, sel->source);
  add_limit(ls, sel->limit);
  ls->add_flag("--json", sel->json, "One JSON object per line");
  ls->callback([&global, sel] { list(global, *sel); });

  auto id = std::make_shared<std::string>();
  auto show_json = std::make_shared<bool>(false);
  auto* sh = dl->add_subcommand("show", "One dead letter: reason, origin, the raw message");
  sh->add_option("ID", *id, "TOPIC/PARTITION/OFFSET (from list)")->required();
  sh->add_flag("--json", *show_json, "Print one JSON document");
  sh->callback([&global, id, show_json] { show(global, *id, *show_json); });

  auto r = std::make_shared<ReplayOptions>();
  auto* rp = dl->add_subcommand(
      "replay", "Send a dead letter through the normal path again (recorded; once unless --force)");
  rp->add_option("ID", r->id, "TOPIC/PARTITION/OFFSET (from list)");
  rp->add_flag("--all", r->all, "Every dead letter not yet replayed (of --source)");
  add_source(rp, r->source);
  rp->add_flag("--force", r->force, "Replay even if it was replayed before");
  rp->add_flag("--json", r->json, "One JSON object per dead letter");
  rp->callback([&global, r] { replay(global, *r); });
}

}  // namespace kpay::ctl
