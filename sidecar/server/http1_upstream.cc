#include "sidecar/server/http1_upstream.h"


// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>

#include "sidecar/http/http1_headers.h"

namespace meshpilot::sidecar::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using asio::redirect_error;
using asio::use_awaitable;

namespace {

StreamError ErrorOf(const boost::system::error_code& ec) {
  return ec == beast::error::timeout ? StreamError::kTimeout : StreamError::kReset;
}

bool MethodHasBody(std::string_view method) {
  return method == "POST" || method == "PUT" || method == "PATCH";
}

}  // namespace

Http1UpstreamStream::Http1UpstreamStream(UpstreamPool& pool, const UpstreamTarget& target,
                                         std::unique_ptr<UpstreamConnection> connection)
    : pool_(pool),
      cluster_(target.cluster),
      peer_(target.peer),
      connection_(std::move(connection)),
      head_request_(target.head_request),
      idle_timeout_(target.idle_timeout),
      trailers_enabled_(target.http1_trailers) {}

Http1UpstreamStream::~Http1UpstreamStream() {
  if (!reset_ && request_complete_ && parser_ && parser_->is_done() &&
      parser_->get().keep_alive()) {
    pool_.Release(cluster_, peer_, std::move(connection_), idle_timeout_);
  } else {
    connection_.reset();
    pool_.ConnectionClosed(cluster_);
  }
}

void Http1UpstreamStream::ExpiresAt(Clock::time_point deadline) {
  if (deadline == Clock::time_point::max()) {
    connection_->stream.expires_never();
  } else {
    connection_->stream.expires_at(deadline);
  }
}

asio::awaitable<StreamError> Http1UpstreamStream::Write(std::string_view bytes) {
  boost::system::error_code ec;
  co_await asio::async_write(connection_->stream, asio::buffer(bytes.data(), bytes.size()),
                             redirect_error(use_awaitable, ec));
  co_return ec ? ErrorOf(ec) : StreamError::kNone;
}

asio::awaitable<StreamError> Http1UpstreamStream::SendHeaders(const http::HeaderMap& headers,
                                                              bool end_stream) {
  bhttp::request<bhttp::empty_body> request(http::ToHttp1Request(headers));
  if (!headers.Has("content-length")) {
    if (!end_stream) {
      request.set(bhttp::field::transfer_encoding, "chunked");
      chunked_request_ = true;
    } else if (MethodHasBody(headers.GetOr(":method", ""))) {
      request.set(bhttp::field::content_length, "0");
    }
  }
  request_complete_ = end_stream;
  connection_->stream.expires_never();
  bhttp::request_serializer<bhttp::empty_body> serializer(request);
  boost::system::error_code ec;
  co_await bhttp::async_write_header(connection_->stream, serializer,
                                     redirect_error(use_awaitable, ec));
  co_return ec ? ErrorOf(ec) : StreamError::kNone;
}

asio::awaitable<StreamError> Http1UpstreamStream::SendBody(std::string_view data,
                                                           bool end_stream) {
  const std::string framed = http::FrameHttp1Body(data, chunked_request_, end_stream);
  StreamError error = StreamError::kNone;
  if (!framed.empty()) error = co_await Write(framed);
  request_complete_ = end_stream && error == StreamError::kNone;
  co_return error;
}

asio::awaitable<StreamError> Http1UpstreamStream::SendTrailers(const http::HeaderMap& trailers) {
  if (!trailers_enabled_ || !chunked_request_) co_return co_await SendBody({}, true);
  const StreamError error = co_await Write(http::Http1LastChunk(trailers));
  request_complete_ = error == StreamError::kNone;
  co_return error;
}

asio::awaitable<StreamError> Http1UpstreamStream::ReadHeaders(http::HeaderMap& out,
                                                              bool& end_stream,
                                                              Clock::time_point deadline) {
  ExpiresAt(deadline);
  for (;;) {
    parser_.emplace();
    parser_->body_limit(http::kUnlimitedBody);
    if (head_request_) parser_->skip(true);
    boost::system::error_code ec;
    co_await bhttp::async_read_header(connection_->stream, connection_->buffer, *parser_,
                                      redirect_error(use_awaitable, ec));
    if (ec) co_return ErrorOf(ec);
    const unsigned status = parser_->get().result_int();
    // 100 Continue and other informational responses: the final one follows.
    if (status >= 100 && status < 200 && status != 101) continue;
    break;
  }
  out = http::FromHttp1Response(parser_->get().base());
  header_fields_ = static_cast<size_t>(std::distance(parser_->get().begin(), parser_->get().end()));
  end_stream = parser_->is_done();
  co_return StreamError::kNone;
}

asio::awaitable<StreamError> Http1UpstreamStream::ReadBody(std::string& out, bool& end,
                                                           Clock::time_point deadline) {
  ExpiresAt(deadline);
  char buffer[16384];
  auto& body = parser_->get().body();
  body.data = buffer;
  body.size = sizeof(buffer);
  boost::system::error_code ec;
  co_await bhttp::async_read(connection_->stream, connection_->buffer, *parser_,
                             redirect_error(use_awaitable, ec));
  if (ec == bhttp::error::need_buffer) ec = {};
  if (ec) co_return ErrorOf(ec);
  out.append(buffer, sizeof(buffer) - body.size);
  end = parser_->is_done();
  if (end && trailers_enabled_ && parser_->chunked()) {
    trailers_ = http::Http1Trailers(parser_->get(), header_fields_);
  }
  co_return StreamError::kNone;
}

void Http1UpstreamStream::Reset() {
  reset_ = true;
  boost::system::error_code ignored;
  connection_->stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
}

}  // namespace meshpilot::sidecar::server
