#include "kpay/storage/state_store.hpp"

#include <algorithm>
#include <array>
#include <chrono>

#include "kpay/storage/migrations.hpp"
#include "state_store_impl.hpp"

namespace kpay::storage {

namespace {

// FNV-1a, 64 bit: stable across builds and platforms (it is stored).
std::int64_t entity_hash(std::string_view id) {
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : id) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return static_cast<std::int64_t>(h);
}

// Commit and rollback hooks: what a connection remembers of its transaction
// is forgotten when it ends.
int forget_links_on_commit(void* links) {
  *static_cast<StoredLinks*>(links) = {};
  return 0;  // the commit goes ahead
}
void forget_links_on_rollback(void* links) {
  forget_links_on_commit(links);
}

}  // namespace

StateStore::StateStore(const std::string& path, bool read_only, int cache_mib, int checkpoint_mib) {
  Database::Options opts;
  opts.read_only = read_only;
  opts.create = !read_only;
  impl_ = std::make_unique<Impl>(Database::open(path, opts));
  sqlite3_commit_hook(impl_->db.handle(), forget_links_on_commit, &impl_->links);
  sqlite3_rollback_hook(impl_->db.handle(), forget_links_on_rollback, &impl_->links);
  // The working set (inbox and entity indexes) is read on every event: a page
  // cache that holds it turns most lookups into memory reads.
  impl_->db.exec("PRAGMA cache_size=-" + std::to_string(cache_mib * 1024));
  if (!read_only) {
    // Checkpoint every `checkpoint_mib` of WAL (128 MiB; the processor's
    // store 512) rather than 4 MiB: a page rewritten by many batches (inbox and
    // entity B-trees take random inserts) is copied into the database once per
    // checkpoint, and each checkpoint reads the WAL back. Costs disk, not
    // memory. Durability is the WAL's (synchronous=FULL), not the checkpoint's.
    auto page = impl_->db.prepare("PRAGMA page_size");
    page.step();
    const auto page_size = std::max<std::int64_t>(512, page.int64(0));
    const std::int64_t wal_bytes = std::int64_t{std::max(1, checkpoint_mib)} << 20;
    impl_->db.exec("PRAGMA wal_autocheckpoint=" + std::to_string(wal_bytes / page_size));
    impl_->db.exec("PRAGMA journal_size_limit=134217728");
  }
  if (read_only) {
    const int version = storage::schema_version(impl_->db, "state");
    if (version > state_migrations().back().version) {
      throw SchemaTooNewError("database schema 'state' is newer than this binary supports");
    }
    if (version < state_migrations().back().version) {
      // Read-only connections never migrate; the processor does at start.
      throw SqliteError(SQLITE_ERROR, "database schema 'state' is version " +
                                          std::to_string(version) + ", this binary reads " +
                                          std::to_string(state_migrations().back().version) +
                                          ": start klarna-processor once to migrate it");
    }
  } else {
    migrate(impl_->db, "state", state_migrations());
  }
}

StateStore::~StateStore() = default;

std::string StateStore::database_file() {
  const char* file = sqlite3_db_filename(impl_->db.handle(), "main");
  return file != nullptr ? file : "";
}

Database& StateStore::database() {
  return impl_->db;
}

namespace {
// BEGIN IMMEDIATE … COMMIT on the store's connection (sqlite.hpp).
// What the store remembers of a transaction (the inbox's topic numbers) is
// forgotten when it rolls back.
class SqliteScope final : public TransactionScope {
 public:
  SqliteScope(Database& db, std::unordered_map<std::string, std::int64_t>& remembered)
      : remembered_(remembered), tx_(db) {}
  ~SqliteScope() override {
    if (!committed_) remembered_.clear();
  }
  void commit() override {
    tx_.commit();
    committed_ = true;
  }

 private:
  std::unordered_map<std::string, std::int64_t>& remembered_;
  Transaction tx_;
  bool committed_ = false;
};
}  // namespace

std::unique_ptr<TransactionScope> StateStore::begin_write() {
  return std::make_unique<SqliteScope>(impl_->db, impl_->inbox_topic_ids);
}
int StateStore::schema_version() {
  return storage::schema_version(impl_->db, "state");
}

void StateStore::append_history(const HistoryRow& h) {
  auto& s = impl_->prep(
      impl_->append_history,
      "INSERT INTO history (event_id, entity_kind, entity_id, event_type, "
      "event_version, occurred_at, outcome, from_state, to_state, reason, "
      "topic, partition, offset, entity_hash, traceparent, recorded_at_ms, received_at, "
      "kafka_timestamp_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
  s.bind_view(1, h.event_id)
      .bind_view(2, h.entity_kind)
      .bind_view(3, h.entity_id)
      .bind_view(4, h.event_type);
  s.bind_view(5, h.event_version).bind_view(6, h.occurred_at).bind_view(7, h.outcome);
  s.bind_view(8, h.from_state);
  s.bind_view(9, h.to_state);
  s.bind_view(10, h.reason)
      .bind_view(11, h.topic)
      .bind_view(12, h.partition)
      .bind_view(13, h.offset);
  s.bind_view(14, entity_hash(h.entity_id));
  const auto& t = trace_context();
  s.bind_view(15, non_empty(h.traceparent, t.traceparent));
  s.bind_view(16, h.recorded_at_ms != 0 ? h.recorded_at_ms
                                        : std::chrono::duration_cast<std::chrono::milliseconds>(
                                              std::chrono::system_clock::now().time_since_epoch())
                                              .count());
  s.bind_view(17, non_empty(h.received_at, t.received_at));
  s.bind_view(18, h.kafka_timestamp_ms ? h.kafka_timestamp_ms : t.kafka_timestamp_ms);
  s.run();
}

std::vector<HistoryRow> StateStore::history(const std::string& entity_id) {
  // The indexed rows, then the tail not indexed yet (index_history_if_due).
  auto s = impl_->db.prepare(
      "SELECT seq, event_id, entity_kind, event_type, event_version, occurred_at, outcome, "
      "from_state, to_state, reason, topic, partition, offset, traceparent, recorded_at_ms, "
      "received_at, kafka_timestamp_ms FROM history "
      "WHERE seq IN (SELECT seq FROM history_by_entity WHERE entity_hash = ?1) "
      "AND entity_id = ?2 "
      "UNION ALL "
      "SELECT seq, event_id, entity_kind, event_type, event_version, occurred_at, outcome, "
      "from_state, to_state, reason, topic, partition, offset, traceparent, recorded_at_ms, "
      "received_at, kafka_timestamp_ms FROM history "
      "WHERE seq > (SELECT through_seq FROM history_indexed) "
      "AND entity_hash = ?1 AND entity_id = ?2 ORDER BY 1");
  s.bind(1, entity_hash(entity_id)).bind(2, entity_id);
  std::vector<HistoryRow> out;
  while (s.step()) {
    HistoryRow h;
    h.seq = s.int64(0);
    h.event_id = s.text(1);
    h.entity_kind = s.text(2);
    h.entity_id = entity_id;
    h.event_type = s.text(3);
    h.event_version = s.text(4);
    h.occurred_at = s.text(5);
    h.outcome = s.text(6);
    h.from_state = s.optional_text(7);
    h.to_state = s.optional_text(8);
    h.reason = s.text(9);
    h.topic = s.text(10);
    h.partition = static_cast<std::int32_t>(s.int64(11));
    h.offset = s.int64(12);
    h.traceparent = s.optional_text(13).value_or("");
    h.recorded_at_ms = s.optional_int64(14).value_or(0);
    h.received_at = s.optional_text(15).value_or("");
    h.kafka_timestamp_ms = s.optional_int64(16);
    out.push_back(std::move(h));
  }
  return out;
}

bool StateStore::index_history_if_due(std::int64_t max_unindexed) {
  auto& tail = impl_->prep(impl_->history_unindexed,
                           "SELECT through_seq, (SELECT COALESCE(MAX(seq), 0) FROM history) "
                           "FROM history_indexed");
  std::int64_t through = 0, last = 0;
  if (tail.step()) {
    through = tail.int64(0);
    last = tail.int64(1);
  }
  tail.reset();
  if (last - through < max_unindexed) return false;
  // In key order: each index page is visited once, however many rows land on it.
  auto& fill = impl_->prep(impl_->index_history,
                           "INSERT INTO history_by_entity (entity_hash, seq) "
                           "SELECT entity_hash, seq FROM history WHERE seq > ? AND seq <= ? "
                           "ORDER BY entity_hash, seq");
  fill.bind(1, through).bind(2, last);
  fill.run();
  auto& mark =
      impl_->prep(impl_->mark_history_indexed, "UPDATE history_indexed SET through_seq = ?");
  mark.bind(1, last);
  mark.run();
  return true;
}

std::int64_t StateStore::enqueue_publish(const PublishRow& p) {
  auto& s = impl_->prep(impl_->enqueue_publish,
                        "INSERT INTO publish_queue (topic, key, value, reason, traceparent) "
                        "VALUES (?,?,?,?,?)");
  s.bind_view(1, p.topic).bind_blob(2, p.key).bind_blob(3, p.value).bind_view(4, p.reason);
  s.bind_view(5, non_empty(p.traceparent, trace_context().traceparent));
  s.run();
  return impl_->db.last_insert_rowid();
}

void StateStore::delete_published(std::int64_t seq) {
  auto& s = impl_->prep(impl_->delete_published, "DELETE FROM publish_queue WHERE seq = ?");
  s.bind(1, seq);
  s.run();
}

std::vector<PublishRow> StateStore::pending_publications() {
  auto s = impl_->db.prepare(
      "SELECT seq, topic, key, value, reason, traceparent FROM publish_queue ORDER BY seq");
  std::vector<PublishRow> out;
  while (s.step()) {
    out.push_back(
        {s.int64(0), s.text(1), s.blob(2), s.blob(3), s.text(4), s.optional_text(5).value_or("")});
  }
  return out;
}

void StateStore::insert_poison(const PoisonRow& p) {
  auto& s = impl_->prep(impl_->insert_poison,
                        "INSERT OR IGNORE INTO poison_messages (topic, partition, offset, "
                        "event_id, reason, value, key, recorded_at_ms) VALUES (?,?,?,?,?,?,?,?)");
  s.bind(1, p.topic).bind(2, p.partition).bind(3, p.offset).bind(4, p.event_id);
  s.bind(5, p.reason).bind_blob(6, p.value).bind_blob(7, p.key);
  s.bind(8, std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::system_clock::now().time_since_epoch())
                .count());
  s.run();
}

void StateStore::save_offset(const std::string& topic, std::int32_t partition,
                             std::int64_t next_offset) {
  auto& s = impl_->prep(impl_->save_offset,
                        "INSERT INTO consumer_offsets (topic, partition, next_offset) "
                        "VALUES (?,?,?) ON CONFLICT(topic, partition) DO UPDATE SET "
                        "next_offset = MAX(next_offset, excluded.next_offset)");
  s.bind_view(1, topic).bind_view(2, partition).bind_view(3, next_offset);
  s.run();
}

std::optional<std::int64_t> StateStore::stored_offset(const std::string& topic,
                                                      std::int32_t partition) {
  auto& s =
      impl_->prep(impl_->stored_offset,
                  "SELECT next_offset FROM consumer_offsets WHERE topic = ? AND partition = ?");
  s.bind(1, topic).bind(2, partition);
  std::optional<std::int64_t> v;
  if (s.step()) v = s.int64(0);
  s.reset();
  return v;
}

}  // namespace kpay::storage
