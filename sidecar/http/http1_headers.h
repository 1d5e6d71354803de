#pragma once

// Conversion between Beast's HTTP/1.1 headers and the protocol-neutral HeaderMap: the request
// line becomes :method/:path, Host becomes :authority, the status line :status, and back.

#include <boost/beast/http/message.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "sidecar/http/header_map.h"

namespace meshpilot::sidecar::http {

// The body limit of Beast parsers here: bodies are streamed, so none; not boost::none, since
// Boost 1.74's parser compares the content length against an empty optional and reports
// body_limit for every body.
inline constexpr uint64_t kUnlimitedBody = std::numeric_limits<uint64_t>::max();

HeaderMap FromHttp1Request(const boost::beast::http::request_header<>& request);
HeaderMap FromHttp1Response(const boost::beast::http::response_header<>& response);

// Fields without framing: the caller decides Content-Length / Transfer-Encoding and keep-alive.
// An absent :authority leaves Host out; HTTP/1.1 requires it, so the router always sets one.
boost::beast::http::request_header<> ToHttp1Request(const HeaderMap& headers);
boost::beast::http::response_header<> ToHttp1Response(const HeaderMap& headers, unsigned version);

// A piece of an HTTP/1.1 body as it goes on the wire: as it is, or, for a chunked message, as a
// chunk followed by the last chunk when `end`.
std::string FrameHttp1Body(std::string_view data, bool chunked, bool end);

// The trailers of a chunked message Beast parsed: its fields after the first `header_fields`
// (Beast appends the trailer fields to the header's).
HeaderMap Http1Trailers(const boost::beast::http::fields& fields, size_t header_fields);
// The last chunk of a chunked body with trailers (pseudo-headers left out).
std::string Http1LastChunk(const HeaderMap& trailers);

}  // namespace meshpilot::sidecar::http
