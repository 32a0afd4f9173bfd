// Bytes as Klarna's API (or anything posing as it) answers → the API
// client's reading of an answer: Beast's response parser under the client's
// limits (klarna/src/api_client_response.hpp), then to_answer (status,
// Klarna's error body, disposition, the rate-limit hold) or, when the bytes
// are no HTTP response, the transport failure the caller sees. The first
// byte sets how many bytes each read delivers (0: all at once). Properties:
// never crashes; the disposition is the status's; a hold is 0–3600 s and
// only on 429/503; a failure has a text; every answer has a summary.
#include <openssl/x509_vfy.h>

#include <algorithm>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "api_client_internal.hpp"
#include "api_client_response.hpp"
#include "fuzz_check.hpp"

namespace {

namespace http = boost::beast::http;
using namespace kpay::klarna;

// What http::async_read does with the stream's bytes: put() what is
// buffered, read more while the parser needs it, put_eof() at the end.
boost::system::error_code read_response(std::string_view wire, std::size_t chunk,
                                        detail::ResponseParser& parser) {
  boost::beast::flat_buffer buffer;
  std::size_t pos = 0;
  for (;;) {
    while (buffer.size() > 0 && !parser.is_done()) {
      boost::system::error_code ec;
      const std::size_t used = parser.put(buffer.data(), ec);
      buffer.consume(used);
      if (ec == http::error::need_more) break;
      if (ec) return ec;
      if (used == 0) break;
    }
    if (parser.is_done()) return {};
    if (pos == wire.size()) {  // the server closed the connection
      if (!parser.got_some()) return http::error::end_of_stream;
      boost::system::error_code ec;
      parser.put_eof(ec);
      return ec;
    }
    const std::size_t n = std::min(chunk, wire.size() - pos);
    auto space = buffer.prepare(n);
    std::memcpy(space.data(), wire.data() + pos, n);
    buffer.commit(n);
    pos += n;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view wire(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::size_t chunk = data[0] == 0 ? std::max<std::size_t>(wire.size(), 1) : data[0];
  detail::ResponseParser parser;
  detail::apply_response_limits(parser);
  const auto ec = read_response(wire, chunk, parser);
  if (ec) {
    const auto failure = detail::describe_transport_error(ec, X509_V_OK);
    FUZZ_CHECK(!failure.text.empty());
    return 0;
  }
  const Answer a = detail::to_answer(parser.release());
  FUZZ_CHECK(a.status >= 0 && a.status <= 999);
  FUZZ_CHECK(a.disposition == classify(a.status, ""));
  FUZZ_CHECK(!a.error || a.status >= 300);
  if (a.retry_after) {
    FUZZ_CHECK(a.status == 429 || a.status == 503);
    FUZZ_CHECK(a.retry_after->count() >= 0 && a.retry_after->count() <= 3'600'000);
  }
  FUZZ_CHECK(!a.summary().empty());
  return 0;
}
