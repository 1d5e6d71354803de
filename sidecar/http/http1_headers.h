#pragma once

// Conversion between Beast's HTTP/1.1 headers and the protocol-neutral HeaderMap: the request
// line becomes :method/:path, Host becomes :authority, the status line :status, and back.

#include <boost/beast/http/message.hpp>

#include "sidecar/http/header_map.h"

namespace meshpilot::sidecar::http {

HeaderMap FromHttp1Request(const boost::beast::http::request_header<>& request);
HeaderMap FromHttp1Response(const boost::beast::http::response_header<>& response);

// Fields without framing: the caller decides Content-Length / Transfer-Encoding and keep-alive.
// An absent :authority leaves Host out; HTTP/1.1 requires it, so the router always sets one.
boost::beast::http::request_header<> ToHttp1Request(const HeaderMap& headers);
boost::beast::http::response_header<> ToHttp1Response(const HeaderMap& headers, unsigned version);

}  // namespace meshpilot::sidecar::http
