// A command message (any bytes) → processor::decode_command, what the
// processor runs on every message of klarna.commands; the interoperability
// token check on the same bytes; the result message rendered from what was
// decoded. Properties: never crashes or throws; a Command has a 1–100
// character id, a SHA-256 body hash, and decodes the same from its minified
// JSON (the hash is of the minified body: a resend hashes alike); a
// rejection names a reason, and neither it nor its detail carries the
// tokens the command held; the result message is valid JSON.
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "fuzz_check.hpp"
#include "kpay/processor/commands.hpp"

namespace {

using namespace kpay::processor;

bool is_sha256_hex(std::string_view h) {
  if (h.size() != 64) return false;
  for (char c : h) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// Whether `v` holds a character no rejection text is written with: a token
// made only of words could equal part of a fixed message ("not three
// dot-separated segments") without being leaked.
bool unlike_any_message(std::string_view v) {
  for (char c : v) {
    if (std::string_view("\"#$%&*+/;<?@\\^`{|}~").find(c) != std::string_view::npos ||
        static_cast<unsigned char>(c) >= 0x80) {
      return true;
    }
  }
  return false;
}

// String values of the token fields, when the body is an object holding them.
std::vector<std::string> secrets_in(std::string_view body) {
  std::vector<std::string> out;
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(body.data(), body.size()).get(root) != simdjson::SUCCESS) return out;
  for (const char* k :
       {"customer_token", "interoperability_token", "klarna_interoperability_token"}) {
    std::string_view v;
    if (root.is_object() && root[k].get_string().get(v) == simdjson::SUCCESS && v.size() >= 6 &&
        unlike_any_message(v)) {
      out.emplace_back(v);
    }
  }
  return out;
}

void check_json(const std::string& text) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  FUZZ_CHECK(parser.parse(text).get(doc) == simdjson::SUCCESS && doc.is_object());
}

void check_same_as_minified(std::string_view body,
                            const std::variant<Command, CommandRejection>& r) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(body.data(), body.size()).get(root) != simdjson::SUCCESS) return;
  const auto again = decode_command(simdjson::minify(root));
  FUZZ_CHECK(again.index() == r.index());
  if (const auto* c = std::get_if<Command>(&r)) {
    FUZZ_CHECK(std::get<Command>(again).body_hash == c->body_hash);
    FUZZ_CHECK(std::get<Command>(again).command_id == c->command_id);
  } else {
    const auto& x = std::get<CommandRejection>(r);
    const auto& y = std::get<CommandRejection>(again);
    FUZZ_CHECK(x.error == y.error && x.body_hash == y.body_hash && x.detail == y.detail);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  const auto decoded = decode_command(body);
  CommandResult result;
  result.status = CommandStatus::accepted;
  if (const auto* c = std::get_if<Command>(&decoded)) {
    FUZZ_CHECK(!c->command_id.empty() && c->command_id.size() <= 100);
    FUZZ_CHECK(is_sha256_hex(c->body_hash));
    FUZZ_CHECK(parse_command_type(command_type_name(c->type())) == c->type());
    result.command_id = c->command_id;
    result.type = std::string(command_type_name(c->type()));
  } else {
    const auto& r = std::get<CommandRejection>(decoded);
    FUZZ_CHECK(is_sha256_hex(r.body_hash));
    const std::string reason = r.reason();
    FUZZ_CHECK(reason.rfind(command_error_name(r.error), 0) == 0);
    for (const auto& secret : secrets_in(body)) {
      FUZZ_CHECK(reason.find(secret) == std::string::npos);
    }
    result.command_id = r.command_id;
    result.type = r.type;
    result.status = CommandStatus::rejected;
    result.reason = reason;
  }
  check_same_as_minified(body, decoded);
  check_json(render_command_result(result, 1'700'000'000'000));
  (void)check_interoperability_token(body);
  return 0;
}
