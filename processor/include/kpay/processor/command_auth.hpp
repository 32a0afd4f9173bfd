// Who may send a downstream command, and until when (docs/OPERATIONS.md,
// "Command senders"; schemas/KAFKA-CONTRACT.md, "Command signatures").
//
// A command on klarna.commands carries two Kafka headers:
//   kpay-sender:    <sender id>
//   kpay-signature: kid=<key id>;v1=<64 lowercase hex>
// where the hex is HMAC-SHA256(key = the sender key's secret, data = the
// message value, byte for byte). Nothing else is signed; the command_id (and
// `issued_at`, when given) inside the value make a copy of an old message a
// duplicate or an expired command.
//
// authenticate() runs on the consumer's thread (no store); the permission
// and age checks run in the batch transaction (CommandGate), where the
// payment's account, currency and the sender's spending of the day are known.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "kpay/core/config.hpp"
#include "kpay/klarna/signature.hpp"
#include "kpay/processor/commands.hpp"

namespace kpay::processor {

inline constexpr std::string_view kSenderHeader = "kpay-sender";
inline constexpr std::string_view kSignatureHeader = "kpay-signature";

struct SignatureHeader {
  std::string key_id;
  std::string hex;  // 64 lowercase hex characters
};
// Exactly "kid=<key id>;v1=<64 lowercase hex>" (key id: 1-64 of A-Z a-z 0-9 _ -).
std::optional<SignatureHeader> parse_signature_header(std::string_view value);
// The header value signing `value` with `secret` (senders, klarnactl, tests).
std::string sign_command(std::string_view key_id, std::string_view secret, std::string_view value);

// The senders' keys at one moment: an immutable snapshot, replaced whole on a
// reload. Retired keys are kept by id only (no secret): a command signed with
// one is told apart from a forged one.
class SenderKeyRing {
 public:
  void add_active(const std::string& sender, const std::string& key_id, std::string_view secret);
  void add_retired(const std::string& sender, const std::string& key_id);
  std::size_t active_keys() const { return active_count_; }
  std::size_t senders() const { return senders_.size(); }
  bool knows(std::string_view sender) const { return senders_.find(sender) != senders_.end(); }

  struct Key {
    std::unique_ptr<klarna::SigningKey> key;  // none: retired
  };
  const Key* find(std::string_view sender, std::string_view key_id) const;

 private:
  std::map<std::string, std::map<std::string, Key, std::less<>>, std::less<>> senders_;
  std::size_t active_count_ = 0;
};

// The headers of one message, as consumed (absent: nullopt).
struct CommandHeaders {
  std::optional<std::string> sender;
  std::optional<std::string> signature;
};

// Who signed a command; `sender` empty: unsigned, let in by allow_unsigned.
struct Authenticated {
  std::string sender;
  std::string key_id;
};
// Why a command was refused before it was read: `reason` is one of unsigned,
// malformed_signature, unknown_sender, unknown_key, retired_key, bad_signature.
struct AuthFailure {
  std::string reason;
  std::string sender;  // as claimed (validated characters only), may be empty
};
std::variant<Authenticated, AuthFailure> authenticate(const SenderKeyRing& ring,
                                                      const CommandHeaders& headers,
                                                      std::string_view value, bool allow_unsigned);

// What the batch transaction knows of a command's origin: its signer (empty:
// unsigned) and when it was issued (`issued_at`, else the Kafka timestamp).
struct CommandOrigin {
  std::string sender;
  std::string key_id;
  std::optional<std::int64_t> issued_at_ms;
};
// The `issued_at` of a command value (RFC 3339), looked for only when the
// value names it: nullopt when absent, an error text when not a timestamp.
std::variant<std::optional<std::int64_t>, std::string> command_issued_at(std::string_view value);

// ---- permissions and age (processor TOML) ---------------------------------------
struct AmountLimit {
  std::optional<std::int64_t> per_command;  // minor units
  std::optional<std::int64_t> per_day;      // UTC day, accepted commands
};
struct SenderPermissions {
  std::set<std::string> commands;          // wire names, or "*"
  std::set<std::string> partner_accounts;  // or "*"
  // Empty: no amount limit. Otherwise only these currencies are permitted.
  std::map<std::string, AmountLimit> limits;
};

struct CommandPolicy {
  bool allow_unsigned = false;
  std::string senders_database;
  std::chrono::milliseconds senders_poll{1000};
  std::string klarnactl_sender;  // the sender klarnactl signs its commands as; "" unsigned
  // Where the audit trail is published (audit.topic with kafka.topic_prefix);
  // "" when audit.topic is unset: kept in the state database only.
  std::string audit_topic;
  std::map<std::string, SenderPermissions> senders;          // [senders.<id>]
  std::map<std::string, std::chrono::milliseconds> max_age;  // by command type wire name
  std::chrono::milliseconds max_age_for(std::string_view type) const;
};
// Every command type a permission or an age may name (today's and sdk_token).
const std::vector<std::string>& known_command_type_names();
// Reads [commands] and [senders.*]; throws core::ConfigError naming the key
// (unknown command types, limits ≤ 0 or per_command > per_day, bad ids).
CommandPolicy command_policy_from_config(const core::Config& c);

}  // namespace kpay::processor
