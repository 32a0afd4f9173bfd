#include "http_request.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>

namespace kpay::receiver::http_request {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

std::string_view sv(beast::string_view s) {
  return {s.data(), s.size()};
}

// Framing Beast accepts and the receiver refuses; answered 400 malformed_request.
class FramingCategory final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "kpay.receiver.framing"; }
  std::string message(int) const override {
    return "obsolete line folding (a header line starting with a space or tab)";
  }
};
constexpr int kObsFold = 1;

boost::system::error_code obs_fold_error() {
  static const FramingCategory category;
  return {kObsFold, category};
}

// Obsolete line folding: a header line starting with SP or HTAB. Beast joins
// it into the previous value where other HTTP parsers (a proxy in front of
// us) may not, so it is refused (RFC 9112 5.2 allows a server to). `header`
// is the raw header block, as Beast consumed it.
bool has_obs_fold(std::string_view header) {
  const auto end = header.find("\r\n\r\n");
  if (end != std::string_view::npos) header = header.substr(0, end + 2);
  for (auto at = header.find('\n'); at != std::string_view::npos; at = header.find('\n', at + 1)) {
    if (at + 1 < header.size() && (header[at + 1] == ' ' || header[at + 1] == '\t')) return true;
  }
  return false;
}

}  // namespace

void apply_limits(Parser& parser, std::size_t max_header_bytes, std::uint64_t max_body_bytes) {
  parser.header_limit(static_cast<std::uint32_t>(max_header_bytes));
  parser.body_limit(max_body_bytes);
}

Feed feed(Parser& parser, beast::flat_buffer& buffer, Stage stage) {
  auto reached = [&] {
    return stage == Stage::header ? parser.is_header_done() : parser.is_done();
  };
  for (;;) {
    if (buffer.size() == 0) return {{}, reached()};
    boost::system::error_code ec;
    const bool header_pending = !parser.is_header_done();
    const std::size_t used = parser.put(buffer.data(), ec);
    if (header_pending && parser.is_header_done() &&
        has_obs_fold({static_cast<const char*>(buffer.data().data()), used})) {
      return {obs_fold_error(), false};
    }
    buffer.consume(used);
    if (ec && ec != http::error::need_more) return {ec, false};
    if (reached()) return {{}, true};
    // need_more, or nothing taken: the parser waits for more bytes.
    if (ec || used == 0 || buffer.size() == 0) return {{}, false};
  }
}

// Beast also accepts a repeated equal Content-Length ("5" twice, or "5, 5")
// and any Transfer-Encoding list ending in chunked, spread over several
// fields or not; a proxy in front may read either differently, so only one
// plain number or exactly one "chunked" pass.
std::string framing_error(const Parser& parser) {
  const auto& req = parser.get();
  // One pass over the fields (known names compare as enums), counting what
  // count() and operator[] would find with a tree search each (~2k
  // instructions a request): the count and the first value of each.
  std::size_t lengths = 0, encodings = 0;
  beast::string_view length, encoding;
  for (const auto& field : req) {
    if (field.name() == http::field::content_length) {
      if (lengths++ == 0) length = field.value();
    } else if (field.name() == http::field::transfer_encoding) {
      if (encodings++ == 0) encoding = field.value();
    }
  }
  if (lengths > 1) return "more than one Content-Length";
  if (lengths == 1) {
    for (char c : sv(length)) {
      if (c < '0' || c > '9') return "Content-Length must be one decimal number";
    }
  }
  if (encodings == 0) return {};
  if (req.version() < 11) return "Transfer-Encoding is not allowed in HTTP/1.0";
  if (lengths > 0) return "both Transfer-Encoding and Content-Length";
  if (!parser.chunked()) return "Transfer-Encoding must end with chunked";
  if (encodings > 1 || !beast::iequals(encoding, "chunked")) {
    return "Transfer-Encoding must be exactly chunked (one field, no other coding)";
  }
  return {};
}

IncomingRequest incoming(const Request& req) {
  IncomingRequest in;
  in.method = sv(req.method_string());
  in.path = sv(req.target());
  if (auto q = in.path.find('?'); q != std::string_view::npos) in.path = in.path.substr(0, q);
  // One pass over the headers.
  bool has_content_type = false;
  for (const auto& field : req) {
    if (field.name() == http::field::content_type) {
      if (!has_content_type) in.content_type = sv(field.value());
      has_content_type = true;
    } else if (field.name() == http::field::unknown) {
      const auto name = field.name_string();
      if (!in.has_signing_key_id && beast::iequals(name, "Klarna-Signing-Key-Id")) {
        in.signing_key_id = sv(field.value());
        in.has_signing_key_id = true;
      } else if (!in.has_signature && beast::iequals(name, "Klarna-Signature")) {
        in.signature = sv(field.value());
        in.has_signature = true;
      } else if (in.traceparent.empty() && beast::iequals(name, "traceparent")) {
        in.traceparent = sv(field.value());
      }
    }
  }
  in.body = req.body();
  return in;
}

ReadFailure classify_read_error(const boost::system::error_code& ec, std::uint64_t max_body_bytes) {
  using Kind = ReadFailure::Kind;
  if (ec == http::error::end_of_stream || ec == http::error::partial_message ||
      ec == asio::error::operation_aborted || ec == asio::error::eof ||
      ec == asio::ssl::error::stream_truncated || ec == asio::error::connection_reset) {
    return {};  // the client left; nothing to answer
  }
  if (ec == beast::error::timeout) return {Kind::timeout, 0, "read_timeout", {}};
  if (ec == http::error::body_limit) {
    return {Kind::answered, 413, "body_too_large",
            "the body exceeds " + std::to_string(max_body_bytes) + " bytes"};
  }
  if (ec == http::error::header_limit) {
    return {Kind::answered, 431, "header_too_large", "the request headers are too large"};
  }
  return {Kind::answered, 400, "malformed_request", "malformed HTTP request: " + ec.message()};
}

}  // namespace kpay::receiver::http_request
