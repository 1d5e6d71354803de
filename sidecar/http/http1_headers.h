#pragma once

// Conversion between HTTP/1.1 and the protocol-neutral HeaderMap: Beast's parsed headers become
// a HeaderMap (the request line becomes :method/:path, Host becomes :authority, the status line
// :status), and a HeaderMap is written straight into the bytes that go on the wire, so a
// message head costs one buffer and no intermediate field container.

#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>

#include <algorithm>
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

// Where a Beast buffer_body parser puts the next piece of a body: straight at the end of `out`,
// grown by at most kBodyPiece bytes and no more than the Content-Length left, so the piece
// needs no copy and no large buffer sits in a coroutine frame (those are heap-allocated).
inline constexpr size_t kBodyPiece = 16384;

template <bool isRequest>
class BodyPiece {
 public:
  using Parser = boost::beast::http::parser<isRequest, boost::beast::http::buffer_body>;
  BodyPiece(Parser& parser, std::string& out) : parser_(parser), out_(out), before_(out.size()) {
    want_ = static_cast<size_t>(
        std::min<uint64_t>(kBodyPiece, parser.content_length_remaining().value_or(kBodyPiece)));
    out.resize(before_ + want_);
    parser.get().body().data = out.data() + before_;
    parser.get().body().size = want_;
  }
  // `out` keeps what the parser wrote, or nothing after a failed read.
  void Finish(bool ok) {
    out_.resize(before_ + (ok ? want_ - parser_.get().body().size : 0));
    parser_.get().body().data = nullptr;
    parser_.get().body().size = 0;
  }

 private:
  Parser& parser_;
  std::string& out_;
  size_t before_;
  size_t want_;
};

HeaderMap FromHttp1Request(const boost::beast::http::request_header<>& request);
HeaderMap FromHttp1Response(const boost::beast::http::response_header<>& response);

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

}  // namespace meshpilot::sidecar::http
