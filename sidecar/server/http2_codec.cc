#include "sidecar/server/http2_codec.h"

#include "absl/strings/numbers.h"
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>

#include "sidecar/server/router_filter.h"

namespace meshpilot::sidecar::server {

namespace asio = boost::asio;

namespace {

class Http2DownstreamStream final : public DownstreamStream {
 public:
  explicit Http2DownstreamStream(std::shared_ptr<Http2Stream> stream)
      : stream_(std::move(stream)), body_length_(BodyLength(*stream_)) {
    // HTTP/2 clients may send Host instead of :authority (RFC 9113 8.3.1).
    http::HeaderMap& headers = stream_->headers();
    if (auto host = headers.Get("host"); host && !headers.Has(":authority")) {
      headers.Set(":authority", std::string(*host));
    }
    headers.Remove("host");
  }

  Protocol protocol() const override { return Protocol::kHttp2; }
  http::HeaderMap& request_headers() override { return stream_->headers(); }
  std::optional<uint64_t> request_body_length() const override { return body_length_; }

  asio::awaitable<bool> ReadBody(std::string& out, bool& end) override {
    co_return co_await stream_->ReadBody(out, end, Clock::time_point::max()) == StreamError::kNone;
  }
  const http::HeaderMap& request_trailers() const override { return stream_->trailers(); }
  asio::awaitable<bool> WriteHeaders(http::HeaderMap headers, bool end_stream) override {
    co_return stream_->SubmitResponse(headers, end_stream) == StreamError::kNone;
  }
  asio::awaitable<bool> WriteBody(std::string_view data, bool end_stream) override {
    co_return co_await stream_->WriteBody(data, end_stream) == StreamError::kNone;
  }
  asio::awaitable<bool> WriteTrailers(http::HeaderMap trailers) override {
    co_return co_await stream_->WriteTrailers(trailers) == StreamError::kNone;
  }
  void OnAbandoned(std::function<void()> callback) override {
    stream_->OnAbandoned(std::move(callback));
  }
  void Reset() override {
    // After a complete response the unread rest of the request is refused politely.
    stream_->Reset(stream_->local_ended() ? NGHTTP2_NO_ERROR : NGHTTP2_INTERNAL_ERROR);
  }

 private:
  static std::optional<uint64_t> BodyLength(const Http2Stream& stream) {
    // The router may start after more of the stream arrived: only an end with the headers
    // means no body.
    if (stream.ended_with_headers()) return 0;
    uint64_t length = 0;
    auto value = stream.headers().Get("content-length");
    if (value && absl::SimpleAtoi(absl::string_view(value->data(), value->size()), &length)) {
      return length;
    }
    return std::nullopt;
  }

  std::shared_ptr<Http2Stream> stream_;
  std::optional<uint64_t> body_length_;
};

class Http2UpstreamStream final : public UpstreamStream {
 public:
  explicit Http2UpstreamStream(std::shared_ptr<Http2Connection> connection)
      : connection_(std::move(connection)) {}
  ~Http2UpstreamStream() override {
    // An exchange left unfinished is cancelled, and its unread data released.
    if (stream_ != nullptr) stream_->Reset(NGHTTP2_CANCEL);
  }

  asio::awaitable<StreamError> SendHeaders(const http::HeaderMap& headers,
                                           bool end_stream) override {
    stream_ = connection_->OpenStream(headers, end_stream);
    co_return stream_->closed() ? stream_->CloseReason() : StreamError::kNone;
  }
  asio::awaitable<StreamError> SendBody(std::string_view data, bool end_stream) override {
    co_return co_await stream_->WriteBody(data, end_stream);
  }
  asio::awaitable<StreamError> SendTrailers(const http::HeaderMap& trailers) override {
    co_return co_await stream_->WriteTrailers(trailers);
  }
  asio::awaitable<StreamError> ReadHeaders(http::HeaderMap& out, bool& end_stream,
                                           Clock::time_point deadline) override {
    StreamError error = co_await stream_->WaitHeaders(deadline);
    if (error != StreamError::kNone) co_return error;
    out = stream_->headers();
    end_stream = stream_->ended_with_headers();
    co_return StreamError::kNone;
  }
  asio::awaitable<StreamError> ReadBody(std::string& out, bool& end,
                                        Clock::time_point deadline) override {
    co_return co_await stream_->ReadBody(out, end, deadline);
  }
  const http::HeaderMap& trailers() const override { return stream_->trailers(); }
  void Reset() override {
    if (stream_ != nullptr) stream_->Reset(NGHTTP2_CANCEL);
  }

 private:
  std::shared_ptr<Http2Connection> connection_;
  std::shared_ptr<Http2Stream> stream_;
};

// What the streams of one downstream connection share; outlives each of them.
struct Http2ServerContext {
  Worker& worker;
  ConnectionInfo info;
  std::string listener_name;
  ListenerEntry listener;  // keeps `chain` alive
  const config::HttpChain& chain;
  std::weak_ptr<Http2Connection> connection;
  std::shared_ptr<HttpConnectionManagerStats> stats;
  uint32_t requests = 0;  // streams the connection took
};

asio::awaitable<void> ServeStream(std::shared_ptr<Http2ServerContext> context,
                                  std::shared_ptr<Http2Stream> stream) {
  Http2DownstreamStream down(stream);
  RouterFilter router(context->worker, context->info, context->listener, context->chain);
  co_await router.Serve(down);
  // A response sent before the request body was read (a local reply): the rest is dropped.
  stream->Discard();
}

}  // namespace

asio::awaitable<void> ServeHttp2(Worker& worker, Transport transport, std::string preface,
                                 ConnectionInfo info, std::string listener_name,
                                 ListenerEntry listener, const config::HttpChain& chain) {
  auto context = std::make_shared<Http2ServerContext>(Http2ServerContext{
      worker, info, std::move(listener_name), std::move(listener), chain, {}, {}});
  context->stats = context->listener.HttpStats(chain);
  auto connection = std::make_shared<Http2Connection>(
      worker.io(), std::move(transport), Http2Connection::Role::kServer,
      [context](std::shared_ptr<Http2Stream> stream) {
        // Not inside nghttp2's callback: the router starts on its own turn of the loop.
        asio::post(context->worker.io(), [context, stream = std::move(stream)]() mutable {
          const uint32_t max_requests = context->chain.max_requests_per_connection;
          if (max_requests != 0 && ++context->requests >= max_requests) {
            context->stats->downstream_cx_max_requests_reached.fetch_add(
                1, std::memory_order_relaxed);
            if (auto connection = context->connection.lock()) connection->DrainGracefully();
          }
          asio::co_spawn(context->worker.io(), ServeStream(context, std::move(stream)),
                         asio::detached);
        });
      });
  context->connection = connection;
  connection->SetIdleTimeout(chain.idle_timeout, &context->stats->downstream_cx_idle_timeout);
  connection->SetMaxDuration(chain.max_connection_duration,
                             &context->stats->downstream_cx_max_duration_reached);
  connection->SetDrainTimeout(chain.drain_timeout);
  // A listener that was removed or replaced, or /drain_listeners, drains the connection at
  // once (idle or not), as Envoy's: the notice, the final GOAWAY drain_timeout later.
  const Worker::DrainWatch drain_watch(
      worker, context->listener_name, context->listener.config, chain,
      [weak = std::weak_ptr<Http2Connection>(connection)] {
        if (auto drained = weak.lock()) drained->DrainGracefully();
      });
  // Drained before the watch began (accepted just as its listener went).
  if (worker.ListenerDrained(context->listener_name, *context->listener.config, chain)) {
    connection->DrainGracefully();
  }
  co_await connection->Serve(std::move(preface));
}

std::unique_ptr<UpstreamStream> NewHttp2UpstreamStream(
    std::shared_ptr<Http2Connection> connection) {
  return std::make_unique<Http2UpstreamStream>(std::move(connection));
}

}  // namespace meshpilot::sidecar::server
