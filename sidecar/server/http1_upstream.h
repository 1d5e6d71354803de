#pragma once

// An exchange on one HTTP/1.1 upstream connection (Boost.Beast). The request body is sent as
// it comes, with Content-Length when the request had one and chunked otherwise; the response
// body is read a piece at a time. A cleanly finished keep-alive exchange gives the connection
// back to the pool.

#include <memory>
#include <optional>
#include <string>

#include "sidecar/http/http1_parser.h"

#include "sidecar/server/stream.h"
#include "sidecar/server/upstream_pool.h"

namespace meshpilot::sidecar::server {

class Http1UpstreamStream final : public UpstreamStream {
 public:
  // `idle`, `cluster` and `peer` are the pool's, which outlive the stream.
  Http1UpstreamStream(UpstreamPool& pool, IdleConnections& idle, std::string_view cluster,
                      const boost::asio::ip::tcp::endpoint& peer, const UpstreamTarget& target,
                      std::unique_ptr<UpstreamConnection> connection);
  ~Http1UpstreamStream() override;

  boost::asio::awaitable<StreamError> SendHeaders(const http::HeaderMap& headers,
                                                  bool end_stream) override;
  boost::asio::awaitable<StreamError> SendBody(std::string_view data, bool end_stream) override;
  boost::asio::awaitable<StreamError> SendTrailers(const http::HeaderMap& trailers) override;
  boost::asio::awaitable<StreamError> ReadHeaders(http::HeaderMap& out, bool& end_stream,
                                                  Clock::time_point deadline) override;
  boost::asio::awaitable<StreamError> ReadBody(std::string& out, bool& end,
                                               Clock::time_point deadline) override;
  const http::HeaderMap& trailers() const override { return trailers_; }
  void Reset() override;
  bool reused_idle_connection() const override { return connection_->reused; }
  StreamError ReadBufferedBody(std::string& out, bool& end) override;

 private:
  // What `out_` holds (a head, or nothing) and a piece of the body, framed, in one write.
  boost::asio::awaitable<StreamError> Send(std::string_view data, bool end_stream);
  // After a read of the body into `out` (from `before` on) that ended with `ec`: a piece cut
  // short is not passed on, and the trailers are kept once the body is done.
  StreamError BodyRead(std::string& out, size_t before, boost::system::error_code ec, bool& end);

  UpstreamPool& pool_;
  IdleConnections& idle_;  // where the connection goes back
  std::string_view cluster_;  // the pool's key
  const boost::asio::ip::tcp::endpoint& peer_;
  std::unique_ptr<UpstreamConnection> connection_;
  bool head_request_;
  std::chrono::milliseconds idle_timeout_;  // of the connection back in the pool
  uint32_t max_requests_;  // per connection, 0: no limit
  bool trailers_enabled_;  // enable_trailers: read the response's, write the request's
  bool chunked_request_ = false;
  bool request_complete_ = false;
  bool reset_ = false;
  std::optional<http::Http1Parser<false>> parser_;
  http::HeaderMap trailers_;  // read only with enable_trailers, as Envoy
};

}  // namespace meshpilot::sidecar::server
