#pragma once

// HTTP/1.1 on the wire from the protocol-neutral HeaderMap: a message head is written straight
// into the bytes that go out, so it costs one buffer and no intermediate field container
// (reading is http1_parser.h).

#include <cstddef>
#include <string>
#include <string_view>

#include "sidecar/http/header_map.h"

namespace meshpilot::sidecar::http {

// The start line and the fields of a message head, each line ending in CRLF, appended to
// `out`; the caller appends its framing fields (Content-Length / Transfer-Encoding,
// Connection) and the blank line that ends the head (AppendHttp1Field, EndHttp1Head).
// A request is HTTP/1.1 with :authority as Host (HTTP/1.1 requires one, so the router always
// sets it; absent, Host is left out).
void AppendHttp1RequestHead(const HeaderMap& headers, std::string& out);
void AppendHttp1ResponseHead(const HeaderMap& headers, unsigned version, std::string& out);
void AppendHttp1Field(std::string_view name, std::string_view value, std::string& out);
inline void EndHttp1Head(std::string& out) { out.append("\r\n"); }

// How a piece of an HTTP/1.1 body of `size` bytes goes on the wire: as it is, or, for a
// chunked message, as a chunk, followed by the last chunk when `end`. What precedes the data
// (the chunk's size line) is appended to `out`; what follows it is returned, so the data
// itself goes out in a gathered write without a copy.
std::string_view FrameHttp1Body(size_t size, bool chunked, bool end, std::string& out);

// The last chunk of a chunked body with trailers (pseudo-headers left out), appended to `out`.
void AppendHttp1LastChunk(const HeaderMap& trailers, std::string& out);

}  // namespace meshpilot::sidecar::http
