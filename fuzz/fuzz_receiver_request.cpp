// Bytes as a client sends them on a receiver connection → the receiver's
// handling of each request (receiver/src/http_request.hpp, the functions
// connection.cpp runs): Beast's parser under the receiver's limits, the framing
// rules, the header extraction, the webhook handler's decision (path, method,
// key lookup, signature, envelope, routing) and the answer's bytes. Pipelined
// requests are served in turn while the connection is kept alive. A request
// refused for its signature is decided a second time signed with the right
// key, so the code behind the signature check (envelope, routing) is fuzzed
// as well.
//
// First byte: bits 0-6 how many bytes each read delivers (0: all at once);
// bit 7 small limits (512-byte header, 1 KiB body) instead of the defaults,
// so the size limits are reached within libFuzzer's input sizes.
#include <algorithm>
#include <boost/beast/http/error.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "http_request.hpp"
#include "kpay/receiver/settings.hpp"
#include "kpay/receiver/webhook_handler.hpp"

namespace {

namespace http = boost::beast::http;
using namespace kpay::receiver;
using http_request::Stage;

constexpr std::string_view kKeyId = "fuzz-key-1";
constexpr std::string_view kSecret = "fuzz-signing-secret";

struct World {
  ListenerSettings listener;  // the receiver's defaults
  kpay::klarna::Topics topics;
  kpay::core::Registry registry;
  WebhookHandler handler{listener.path, topics, registry};
  kpay::klarna::KeyRing keys;
  World() { keys.add(std::string(kKeyId), kSecret); }
};

World& world() {
  static World w;
  return w;
}

// One connection's bytes, delivered `chunk` at a time.
struct Wire {
  std::string_view bytes;
  std::size_t chunk;
  std::size_t pos = 0;
  bool read_some(boost::beast::flat_buffer& buffer) {
    if (pos == bytes.size()) return false;  // EOF
    const std::size_t n = std::min(chunk, bytes.size() - pos);
    std::memcpy(buffer.prepare(n).data(), bytes.data() + pos, n);
    buffer.commit(n);
    pos += n;
    return true;
  }
};

// connection.cpp's parse_until, reads from the wire instead of a socket.
boost::system::error_code parse_until(Wire& wire, boost::beast::flat_buffer& buffer,
                                      http_request::Parser& parser, Stage stage) {
  for (;;) {
    const auto fed = http_request::feed(parser, buffer, stage);
    if (fed.error) return fed.error;
    if (fed.reached) return {};
    if (!wire.read_some(buffer)) {
      return parser.got_some() || buffer.size() > 0 ? http::error::partial_message
                                                    : http::error::end_of_stream;
    }
  }
}

void check_answer(const Answer& a, unsigned version, bool keep_alive) {
  FUZZ_CHECK(!a.reason.empty() && !a.body.empty());
  const std::string bytes = serialize_response(a, version, keep_alive);
  FUZZ_CHECK(bytes.rfind(version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ", 0) == 0);
  FUZZ_CHECK(bytes.size() > a.body.size());
}

void check_refusal(const Answer& a) {
  FUZZ_CHECK(a.status >= 400 && a.status < 500);
  // A refusal never tells what the signature should have been.
  FUZZ_CHECK(a.body.find("\"error\"") != std::string::npos);
}

// A verified request: always kept (a topic, or the dead-letter topic).
void check_plan(const PublishPlan& p, const World& w) {
  FUZZ_CHECK(p.topic != nullptr);
  FUZZ_CHECK(p.on_success.status == 200);
  if (p.dead_letter) {
    FUZZ_CHECK(p.topic == &w.topics.dead_letter && !p.dead_letter_reason.empty());
  } else {
    FUZZ_CHECK(!p.event_id.empty() && !p.key.empty() && p.topic != &w.topics.dead_letter);
  }
}

// The handler's decision, and the same request signed with the right key.
// True when the request itself was accepted.
bool decide(const IncomingRequest& in, World& w) {
  const Decision d = w.handler.decide(in, w.keys);
  if (!d.reject) {
    check_plan(d.publish, w);
    return true;
  }
  check_refusal(*d.reject);
  const bool routable = in.path == w.listener.path && in.method == "POST" && !in.body.empty();
  IncomingRequest signed_in = in;
  signed_in.signing_key_id = kKeyId;
  signed_in.has_signing_key_id = true;
  const std::string sig = w.keys.find(kKeyId)->sign(in.body);
  signed_in.signature = sig;
  signed_in.has_signature = true;
  const Decision again = w.handler.decide(signed_in, w.keys);
  FUZZ_CHECK(again.reject.has_value() != routable);
  if (again.reject) {
    check_refusal(*again.reject);
  } else {
    check_plan(again.publish, w);
  }
  return false;
}

// One request of the connection; false when the connection ends after it.
bool serve_one(Wire& wire, boost::beast::flat_buffer& buffer, std::size_t max_header,
               std::size_t max_body, World& w) {
  if (buffer.size() == 0 && !wire.read_some(buffer)) return false;  // client closed
  http_request::Parser parser;
  http_request::apply_limits(parser, max_header, max_body);
  auto ec = parse_until(wire, buffer, parser, Stage::header);
  if (!ec) {
    if (auto why = http_request::framing_error(parser); !why.empty()) {
      check_answer(w.handler.error_answer(400, "malformed_request", why), 11, false);
      return false;
    }
    parser.eager(true);
    ec = parse_until(wire, buffer, parser, Stage::complete);
  }
  if (ec) {
    const auto failure = http_request::classify_read_error(ec, max_body);
    FUZZ_CHECK(failure.kind != http_request::ReadFailure::Kind::timeout);
    if (failure.kind == http_request::ReadFailure::Kind::answered) {
      FUZZ_CHECK(failure.status >= 400 && failure.status < 500 && !failure.reason.empty());
      check_answer(w.handler.error_answer(failure.status, failure.reason, failure.message), 11,
                   false);
    }
    return false;
  }
  const auto& req = parser.get();
  const IncomingRequest in = http_request::incoming(req);
  FUZZ_CHECK(in.body.size() <= max_body);
  FUZZ_CHECK(in.path.find('?') == std::string_view::npos);
  // As serve() does: a refusal closes the connection.
  return decide(in, w) && req.keep_alive();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  World& w = world();
  const bool small = (data[0] & 0x80) != 0;
  const std::size_t chunk = data[0] & 0x7f;
  Wire wire{{reinterpret_cast<const char*>(data + 1), size - 1},
            chunk == 0 ? std::max<std::size_t>(size - 1, 1) : chunk};
  const std::size_t max_header = small ? 512 : w.listener.max_header_bytes;
  const std::size_t max_body = small ? 1024 : w.listener.max_body_bytes;
  boost::beast::flat_buffer buffer;
  for (int i = 0; i < 64 && serve_one(wire, buffer, max_header, max_body, w); ++i) {
  }
  return 0;
}
