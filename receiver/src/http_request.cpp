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
    const std::size_t used = parser.put(buffer.data(), ec);
    buffer.consume(used);
    if (ec && ec != http::error::need_more) return {ec, false};
    if (reached()) return {{}, true};
    // need_more, or nothing taken: the parser waits for more bytes.
    if (ec || used == 0 || buffer.size() == 0) return {{}, false};
  }
}

std::string framing_error(const Parser& parser) {
  const auto& req = parser.get();
  bool has_te = req.find(http::field::transfer_encoding) != req.end();
  if (!has_te) return {};
  if (req.version() < 11) return "Transfer-Encoding is not allowed in HTTP/1.0";
  if (req.find(http::field::content_length) != req.end()) {
    return "both Transfer-Encoding and Content-Length";
  }
  if (!parser.chunked()) return "Transfer-Encoding must end with chunked";
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
