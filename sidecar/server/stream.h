#pragma once

// The seam between the codecs and the router: one request/response exchange as the HTTP/1.1
// and HTTP/2 codecs present it, downstream (a request to serve) and upstream (a request sent
// to a host). The router (router_filter.h) drives both and never sees the wire protocol.
//
// Bodies move in pieces: a write returns once the codec has taken the piece, which for
// HTTP/2 waits for flow-control window, so a slow reader slows the writer instead of making
// the proxy buffer a whole stream.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/awaitable.hpp>

#include "sidecar/http/header_map.h"

namespace meshpilot::sidecar::server {

class Transport;
using Clock = std::chrono::steady_clock;

enum class Protocol { kHttp1, kHttp2 };

// The requests this thread's worker is serving (one event loop per worker thread, so the
// count is the worker's): the router counts each exchange while it runs. A read about to wait
// lets the others run first when there are several (ReadHttp1).
class ExchangeCount {
 public:
  ExchangeCount() { ++in_flight_; }
  ~ExchangeCount() { --in_flight_; }
  ExchangeCount(const ExchangeCount&) = delete;
  ExchangeCount& operator=(const ExchangeCount&) = delete;
  static int in_flight() { return in_flight_; }

 private:
  static inline thread_local int in_flight_ = 0;
};

// Why an upstream exchange failed.
enum class StreamError {
  kNone,
  kTimeout,         // the deadline passed
  kConnectFailure,  // no connection to the host
  kReset,           // the connection or stream ended before the response did
  kRefused,         // HTTP/2 REFUSED_STREAM or GOAWAY before the stream was processed
};

class DownstreamStream {
 public:
  virtual ~DownstreamStream() = default;

  virtual Protocol protocol() const = 0;
  virtual http::HeaderMap& request_headers() = 0;
  // The request body is known to be this long (Content-Length, or 0 when the headers ended
  // the request).
  virtual std::optional<uint64_t> request_body_length() const = 0;
  // Appends the next piece of the request body to `out` and sets `end` once it is whole.
  // false: the downstream went away.
  virtual boost::asio::awaitable<bool> ReadBody(std::string& out, bool& end) = 0;
  // Once the body has ended: the request's trailers, empty if none came (HTTP/1.1: read only
  // with enable_trailers, as Envoy).
  virtual const http::HeaderMap& request_trailers() const = 0;

  virtual boost::asio::awaitable<bool> WriteHeaders(http::HeaderMap headers, bool end_stream) = 0;
  virtual boost::asio::awaitable<bool> WriteBody(std::string_view data, bool end_stream) = 0;
  // The headers and a first piece of the body (none if empty) at once: HTTP/1.1 sends them in
  // one write.
  virtual boost::asio::awaitable<bool> WriteResponse(http::HeaderMap headers,
                                                     std::string_view body, bool end_stream) {
    bool written = co_await WriteHeaders(std::move(headers), end_stream && body.empty());
    if (written && !body.empty()) written = co_await WriteBody(body, end_stream);
    co_return written;
  }
  // Ends the response with trailers (HTTP/1.1 drops them and ends the body, as Envoy does).
  virtual boost::asio::awaitable<bool> WriteTrailers(http::HeaderMap trailers) = 0;
  // Abandons the exchange: RST_STREAM on HTTP/2, the connection closed on HTTP/1.1.
  virtual void Reset() = 0;
  // `callback` runs if the client abandons the exchange before the response is complete
  // (HTTP/2 RST_STREAM or the connection's end), so the upstream request is cancelled too, as
  // Envoy does; empty: none. HTTP/1.1 notices a client that went away only when it next reads
  // or writes, or while watched.
  virtual void OnAbandoned(std::function<void()> callback) {}
  // HTTP/1.1, once the upstream has accepted an upgrade (101): the connection, to relay bytes
  // both ways from then on (server/upgrade.h), and what the client sent past the request head.
  // The connection then serves no further request. HTTP/2: none.
  struct Tunnel {
    Transport* transport = nullptr;
    std::string early;
  };
  virtual Tunnel TakeTunnel() { return {}; }
  // While `on`, the router waits for an upstream connection without reading or writing
  // downstream (the pending queue): HTTP/1.1 watches the connection for the client's close or
  // reset meanwhile, so that OnAbandoned's callback runs (HTTP/2 always notices).
  virtual void WatchAbandoned(bool on) {}
};

class UpstreamStream {
 public:
  virtual ~UpstreamStream() = default;

  virtual boost::asio::awaitable<StreamError> SendHeaders(const http::HeaderMap& headers,
                                                          bool end_stream) = 0;
  virtual boost::asio::awaitable<StreamError> SendBody(std::string_view data, bool end_stream) = 0;
  // Ends the request with trailers (HTTP/1.1: in the last chunk with enable_trailers, else
  // dropped, as Envoy does).
  virtual boost::asio::awaitable<StreamError> SendTrailers(const http::HeaderMap& trailers) = 0;
  // The final response headers (1xx are skipped); `end_stream` when there is no body.
  virtual boost::asio::awaitable<StreamError> ReadHeaders(http::HeaderMap& out, bool& end_stream,
                                                          Clock::time_point deadline) = 0;
  virtual boost::asio::awaitable<StreamError> ReadBody(std::string& out, bool& end,
                                                       Clock::time_point deadline) = 0;
  // Once the body has ended: the trailers, empty if none came.
  virtual const http::HeaderMap& trailers() const = 0;
  // Abandons the exchange (RST_STREAM CANCEL on HTTP/2; the HTTP/1.1 connection is not reused).
  virtual void Reset() = 0;
  // The request went out on a pooled HTTP/1.1 connection that was idle: if it fails before
  // any response, the server most likely closed it meanwhile, and one retry is safe.
  virtual bool reused_idle_connection() const { return false; }
  // Appends to `out` the part of the response body that has already arrived after the headers,
  // without waiting, so that it can go downstream together with them (`end` once that is all
  // of it). An error is ReadBody's: it is reported when the body is read on.
  virtual StreamError ReadBufferedBody(std::string& out, bool& end) { return StreamError::kNone; }
};

}  // namespace meshpilot::sidecar::server
