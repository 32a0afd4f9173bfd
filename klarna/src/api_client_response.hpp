// How the API client reads Klarna's HTTP answer, without a socket: the
// response parser's limits and the turning of a parsed response into an
// Answer (status, Klarna's error body, disposition, rate-limit hold).
// api_client.cpp runs these on every exchange; the fuzz target
// (fuzz/fuzz_api_answer.cpp) runs them on raw bytes. Not installed.
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstdint>

#include "kpay/klarna/api_client.hpp"

namespace kpay::klarna::detail {

using Response = boost::beast::http::response<boost::beast::http::string_body>;
using ResponseParser = boost::beast::http::response_parser<Response::body_type>;

constexpr std::uint64_t kMaxResponseBody = 64ull << 20;  // settlement CSVs, dispute files
constexpr std::uint32_t kMaxResponseHeader = 64u << 10;

// A fresh parser with the client's limits.
void apply_response_limits(ResponseParser& parser);

// The Answer of a complete response (not `elapsed`, which the caller measures).
Answer to_answer(Response&& res);

}  // namespace kpay::klarna::detail
