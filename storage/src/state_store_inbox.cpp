// The inbox's part of the SQLite state store (inbox_store.hpp): one narrow
// row per event_id (schema v14, inbox_schema.hpp), its topic by number.
#include "inbox_schema.hpp"
#include "kpay/storage/state_store.hpp"
#include "state_store_impl.hpp"

namespace kpay::storage {

bool StateStore::insert_inbox(const InboxEntry& e) {
  // The topic's number in inbox_topics, added on first use.
  auto& ids = impl_->inbox_topic_ids;
  auto known = ids.find(e.topic);
  if (known == ids.end()) {
    auto& find =
        impl_->prep(impl_->find_inbox_topic, "SELECT id FROM inbox_topics WHERE topic = ?");
    find.bind_view(1, e.topic);
    std::optional<std::int64_t> id;
    if (find.step()) id = find.int64(0);
    find.reset();
    if (!id) {
      auto& add =
          impl_->prep(impl_->insert_inbox_topic, "INSERT INTO inbox_topics (topic) VALUES (?)");
      add.bind_view(1, e.topic);
      add.run();
      id = impl_->db.last_insert_rowid();
    }
    known = ids.emplace(e.topic, *id).first;
  }
  const std::int64_t topic = known->second;
  auto& s = impl_->prep(impl_->insert_inbox,
                        "INSERT OR IGNORE INTO inbox (event_id, topic_id, partition, offset, "
                        "digest) VALUES (?,?,?,?,?)");
  s.bind_view(1, e.event_id).bind_view(2, topic).bind_view(3, e.partition).bind_view(4, e.offset);
  if (e.digest.empty()) {
    s.bind_null(5);
  } else {
    s.bind_blob(5, std::string_view(e.digest).substr(0, kInboxDigestBytes));
  }
  s.run();
  return impl_->db.changes() == 1;
}

std::optional<InboxEntry> StateStore::find_inbox(const std::string& event_id) {
  auto& s = impl_->prep(impl_->find_inbox,
                        "SELECT t.topic, i.partition, i.offset, i.digest FROM inbox i "
                        "JOIN inbox_topics t ON t.id = i.topic_id WHERE i.event_id = ?");
  s.bind(1, event_id);
  std::optional<InboxEntry> e;
  if (s.step()) {
    e.emplace();
    e->event_id = event_id;
    e->topic = s.text(0);
    e->partition = static_cast<std::int32_t>(s.int64(1));
    e->offset = s.int64(2);
    if (!s.is_null(3)) e->digest = s.blob(3);
  }
  s.reset();
  return e;
}

}  // namespace kpay::storage
