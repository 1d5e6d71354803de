#include "sidecar/server/http1_upstream.h"

#include <array>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/beast/http/error.hpp>

#include "sidecar/http/http1_headers.h"
#include "sidecar/server/http1_read.h"

namespace meshpilot::sidecar::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;

namespace {

bool MethodHasBody(std::string_view method) {
  return method == "POST" || method == "PUT" || method == "PATCH";
}

}  // namespace

Http1UpstreamStream::Http1UpstreamStream(UpstreamPool& pool, IdleConnections& idle,
                                         std::string_view cluster,
                                         const asio::ip::tcp::endpoint& peer,
                                         const UpstreamTarget& target,
                                         std::unique_ptr<UpstreamConnection> connection)
    : pool_(pool),
      idle_(idle),
      cluster_(cluster),
      peer_(peer),
      connection_(std::move(connection)),
      head_request_(target.head_request),
      idle_timeout_(target.idle_timeout),
      max_requests_(target.max_requests_per_connection),
      trailers_enabled_(target.http1_trailers) {}

Http1UpstreamStream::~Http1UpstreamStream() {
  const bool reusable = !reset_ && request_complete_ && parser_ && parser_->is_done() &&
                        parser_->keep_alive();
  const bool at_max_requests = max_requests_ != 0 && connection_->requests >= max_requests_;
  const bool at_max_duration = connection_->max_duration_at != Clock::time_point::max() &&
                               connection_->max_duration_at <= Clock::now();
  if (reusable && !at_max_requests && !at_max_duration) {
    ShrinkHttp1Buffer(connection_->buffer);
    pool_.Release(idle_, cluster_, peer_, std::move(connection_), idle_timeout_);
    return;
  }
  if (reusable) {
    (at_max_requests ? connection_->stats->upstream_cx_max_requests
                     : connection_->stats->upstream_cx_max_duration_reached)
        .fetch_add(1, std::memory_order_relaxed);
  }
  connection_.reset();
  pool_.ConnectionClosed(cluster_, peer_);
}

asio::awaitable<StreamError> Http1UpstreamStream::Send(std::string_view data, bool end_stream) {
  const std::string_view suffix =
      http::FrameHttp1Body(data.size(), chunked_request_, end_stream, connection_->out);
  const std::array<asio::const_buffer, 3> buffers{asio::buffer(connection_->out),
                                                  asio::buffer(data.data(), data.size()),
                                                  asio::buffer(suffix.data(), suffix.size())};
  size_t sent = 0;
  boost::system::error_code ec;
  if (!connection_->stream.WriteNow(buffers, sent, ec)) {
    ec = co_await connection_->stream.Write(buffers, sent);
  }
  co_return ec ? Http1StreamError(ec) : StreamError::kNone;
}

asio::awaitable<StreamError> Http1UpstreamStream::SendHeaders(const http::HeaderMap& headers,
                                                              bool end_stream) {
  connection_->out.clear();
  http::AppendHttp1RequestHead(headers, connection_->out);
  if (!headers.Has("content-length")) {
    if (!end_stream) {
      http::AppendHttp1Field("Transfer-Encoding", "chunked", connection_->out);
      chunked_request_ = true;
    } else if (MethodHasBody(headers.GetOr(":method", ""))) {
      http::AppendHttp1Field("Content-Length", "0", connection_->out);
    }
  }
  http::EndHttp1Head(connection_->out);
  request_complete_ = end_stream;
  connection_->stream.tcp().expires_never();  // a new TLS connection keeps its connect deadline
  const auto head = asio::buffer(connection_->out);
  size_t sent = 0;
  boost::system::error_code ec;
  if (!connection_->stream.WriteNow(head, sent, ec)) {
    ec = co_await connection_->stream.Write(head, sent);
  }
  co_return ec ? Http1StreamError(ec) : StreamError::kNone;
}

asio::awaitable<StreamError> Http1UpstreamStream::SendBody(std::string_view data,
                                                           bool end_stream) {
  connection_->out.clear();
  const StreamError error = co_await Send(data, end_stream);
  request_complete_ = end_stream && error == StreamError::kNone;
  co_return error;
}

asio::awaitable<StreamError> Http1UpstreamStream::SendTrailers(const http::HeaderMap& trailers) {
  if (!trailers_enabled_ || !chunked_request_) co_return co_await SendBody({}, true);
  connection_->out.clear();
  http::AppendHttp1LastChunk(trailers, connection_->out);  // goes out as Send's "head"
  const StreamError error = co_await Send({}, /*end_stream=*/false);
  request_complete_ = error == StreamError::kNone;
  co_return error;
}

asio::awaitable<StreamError> Http1UpstreamStream::ReadHeaders(http::HeaderMap& out,
                                                              bool& end_stream,
                                                              Clock::time_point deadline) {
  for (;;) {
    parser_.emplace(trailers_enabled_);
    if (head_request_) parser_->skip(true);
    const boost::system::error_code ec = co_await ReadHttp1(
        connection_->stream, connection_->buffer, *parser_, Http1ReadUntil::kHeader, deadline);
    if (ec) co_return Http1StreamError(ec);
    const unsigned status = parser_->status();
    // 100 Continue and other informational responses: the final one follows.
    if (status >= 100 && status < 200 && status != 101) continue;
    break;
  }
  out = std::move(parser_->headers());
  end_stream = parser_->is_done();
  co_return StreamError::kNone;
}

asio::awaitable<StreamError> Http1UpstreamStream::ReadBody(std::string& out, bool& end,
                                                           Clock::time_point deadline) {
  const size_t before = out.size();
  parser_->BodyInto(out);
  const boost::system::error_code ec = co_await ReadHttp1(
      connection_->stream, connection_->buffer, *parser_, Http1ReadUntil::kMessage, deadline);
  co_return BodyRead(out, before, ec, end);
}

StreamError Http1UpstreamStream::ReadBufferedBody(std::string& out, bool& end) {
  if (connection_->buffer.size() == 0) return StreamError::kNone;
  const size_t before = out.size();
  parser_->BodyInto(out);
  boost::system::error_code ec;
  ParseBuffered(connection_->buffer, *parser_, Http1ReadUntil::kMessage, ec);
  return BodyRead(out, before, ec, end);
}

StreamError Http1UpstreamStream::BodyRead(std::string& out, size_t before,
                                          boost::system::error_code ec, bool& end) {
  if (ec == bhttp::error::need_buffer) ec = {};
  if (ec) {
    out.resize(before);
    return Http1StreamError(ec);
  }
  end = parser_->is_done();
  if (end) trailers_ = std::move(parser_->trailers());  // kept with enable_trailers
  return StreamError::kNone;
}

void Http1UpstreamStream::Reset() {
  reset_ = true;
  connection_->stream.ShutdownBoth();
}

}  // namespace meshpilot::sidecar::server
