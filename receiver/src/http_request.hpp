// The receiver's HTTP request handling without a socket: feeding bytes to
// Beast's parser under the receiver's limits, the framing rules Beast leaves
// to us, reading a parsed request into an IncomingRequest, and what a read
// error is answered with. connection.cpp runs these on every connection; the
// fuzz target (fuzz/fuzz_receiver_request.cpp) runs the same functions on
// raw bytes. Internal to the receiver (Beast types); not installed.
#pragma once

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "kpay/receiver/webhook_handler.hpp"

namespace kpay::receiver::http_request {

using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Parser = boost::beast::http::request_parser<Request::body_type>;

// A fresh parser with the configured header and body limits.
void apply_limits(Parser& parser, std::size_t max_header_bytes, std::uint64_t max_body_bytes);

// How far a request must be parsed before the caller acts on it.
enum class Stage { header, complete };

struct Feed {
  boost::system::error_code error;  // Beast's, or obs-fold in the header; never need_more
  bool reached = false;             // `stage` is complete
};

// Feeds what `buffer` holds to `parser` (consuming what it used) until `stage`
// is reached, an error, or the parser needs bytes the buffer does not have.
// Neither error nor `reached`: read more into `buffer` and call again.
Feed feed(Parser& parser, boost::beast::flat_buffer& buffer, Stage stage);

// Framing Beast accepts but we refuse (ambiguous framing is how requests are
// smuggled past a proxy): a reason for the 400, empty when the framing is fine.
// Call once the header is parsed.
std::string framing_error(const Parser& parser);

// The parts of a parsed request the webhook handler decides on. The views
// point into `req`. The query string is not part of the path; the first of a
// repeated header counts.
IncomingRequest incoming(const Request& req);

// What a failed read of a request becomes.
struct ReadFailure {
  enum class Kind {
    client_left,  // EOF, reset, cancelled: nothing to answer, nothing counted
    timeout,      // counted as a rejection, connection cut without an answer
    answered,     // counted, answered with `status`, then closed
  };
  Kind kind = Kind::client_left;
  int status = 0;
  std::string_view reason;  // the rejection metric's label (timeout, answered)
  std::string message;      // the answer's message (answered)
};
ReadFailure classify_read_error(const boost::system::error_code& ec, std::uint64_t max_body_bytes);

}  // namespace kpay::receiver::http_request
