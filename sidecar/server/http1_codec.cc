#include "sidecar/server/http1_codec.h"

#include <algorithm>
#include <array>
#include <functional>
#include <memory>
#include <optional>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http.hpp>

#include "sidecar/http/http1_headers.h"
#include "sidecar/http/http1_parser.h"
#include "sidecar/server/http1_read.h"
#include "sidecar/server/router_filter.h"

namespace meshpilot::sidecar::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using asio::redirect_error;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

namespace {

class Http1DownstreamStream final : public DownstreamStream {
 public:
  Http1DownstreamStream(Transport& stream, beast::flat_buffer& buffer,
                        http::Http1Parser<true>& parser, std::string& out,
                        bool keep_alive, const bool* connection_expired, bool enable_trailers)
      : stream_(stream),
        buffer_(buffer),
        parser_(parser),
        out_(out),
        version_(parser.version()),
        keep_alive_(keep_alive && parser.keep_alive()),
        connection_expired_(connection_expired),
        enable_trailers_(enable_trailers),
        headers_(std::move(parser.headers())) {
    if (auto expect = headers_.Get("expect");
        expect && beast::iequals(beast::string_view(expect->data(), expect->size()),
                                 "100-continue")) {
      headers_.Remove("expect");
      continue_pending_ = !parser.is_done();
    }
  }

  // The connection may carry another request.
  bool reusable() const { return keep_alive_ && response_done_ && !failed_ && parser_.is_done(); }

  Protocol protocol() const override { return Protocol::kHttp1; }
  http::HeaderMap& request_headers() override { return headers_; }
  std::optional<uint64_t> request_body_length() const override {
    if (parser_.is_done()) return 0;
    if (parser_.content_length()) return *parser_.content_length();
    return std::nullopt;
  }

  asio::awaitable<bool> ReadBody(std::string& out, bool& end) override {
    if (parser_.is_done()) {
      end = true;
      co_return true;
    }
    if (continue_pending_) {
      continue_pending_ = false;
      static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
      size_t sent = 0;
      if (!co_await WriteInOrder(asio::buffer(kContinue, sizeof(kContinue) - 1), sent,
                                 /*interim=*/true)) {
        co_return false;
      }
    }
    const size_t before = out.size();
    parser_.BodyInto(out);
    boost::system::error_code ec =
        co_await ReadHttp1(stream_, buffer_, parser_, Http1ReadUntil::kMessage);
    if (ec == bhttp::error::need_buffer) ec = {};
    if (ec) {
      out.resize(before);
      failed_ = true;
      co_return false;
    }
    end = parser_.is_done();
    if (end) request_trailers_ = std::move(parser_.trailers());  // kept with enable_trailers
    co_return true;
  }
  const http::HeaderMap& request_trailers() const override { return request_trailers_; }

  asio::awaitable<bool> WriteHeaders(http::HeaderMap headers, bool end_stream) override {
    co_return co_await WriteResponse(std::move(headers), {}, end_stream);
  }

  asio::awaitable<bool> WriteResponse(http::HeaderMap headers, std::string_view body,
                                      bool end_stream) override {
    response_started_ = true;  // no 100 Continue from here on
    const unsigned status = headers.Status();
    out_.clear();
    http::AppendHttp1ResponseHead(headers, version_, out_);
    const bool no_body = parser_.method() == bhttp::verb::head || status == 204 ||
                         status == 304 || (status >= 100 && status < 200);
    if (!headers.Has("content-length") && !no_body) {
      if (end_stream && body.empty()) {
        http::AppendHttp1Field("Content-Length", "0", out_);
      } else if (version_ >= 11) {
        http::AppendHttp1Field("Transfer-Encoding", "chunked", out_);
        chunked_ = true;
      } else {
        keep_alive_ = false;  // HTTP/1.0 has no chunks: the end of the body is the close
      }
    }
    // A response that leaves the request body unread must close the connection, and so must
    // one past the connection's max_connection_duration.
    keep_alive_ = keep_alive_ && parser_.is_done() && !*connection_expired_;
    if (version_ >= 11 && !keep_alive_) {
      http::AppendHttp1Field("Connection", "close", out_);
    } else if (version_ < 11 && keep_alive_) {
      http::AppendHttp1Field("Connection", "keep-alive", out_);
    }
    http::EndHttp1Head(out_);
    Output output = Frame(body, end_stream);
    if (std::optional<bool> written = SendNow(output)) co_return *written;
    co_return co_await Send(output);
  }

  asio::awaitable<bool> WriteBody(std::string_view data, bool end_stream) override {
    out_.clear();
    Output output = Frame(data, end_stream);
    if (std::optional<bool> written = SendNow(output)) co_return *written;
    co_return co_await Send(output);
  }

  // Envoy drops trailers towards HTTP/1.1 clients unless enable_trailers asks to encode them
  // in the last chunk: so does this.
  asio::awaitable<bool> WriteTrailers(http::HeaderMap trailers) override {
    if (!enable_trailers_ || !chunked_) co_return co_await WriteBody({}, true);
    out_.clear();
    http::AppendHttp1LastChunk(trailers, out_);
    Output output = Frame({}, /*end_stream=*/false);  // out_ is the whole chunk
    output.completes = true;
    if (std::optional<bool> written = SendNow(output)) co_return *written;
    co_return co_await Send(output);
  }

  void Reset() override {
    failed_ = true;
    stream_.ShutdownBoth();
  }

  void OnAbandoned(std::function<void()> callback) override { on_abandoned_ = std::move(callback); }

  Tunnel TakeTunnel() override {
    Tunnel tunnel{&stream_, beast::buffers_to_string(buffer_.data())};
    buffer_.consume(buffer_.size());
    response_started_ = true;
    failed_ = true;  // the connection closes once the tunnel has ended
    return tunnel;
  }

  // Nothing reads the socket meanwhile: readable means the client closed or reset it, or sent
  // more bytes (the rest of a body, a pipelined request), which are read into the connection's
  // buffer for the parser, and then its close cannot be seen before them. Through TLS the close
  // is a close_notify record, seen only by reading; it may already wait in OpenSSL's buffers.
  void WatchAbandoned(bool on) override {
    if (!on) {
      if (watch_ == nullptr) return;
      watch_->stream = nullptr;  // a completion already queued finds no stream
      watch_.reset();
      boost::system::error_code ignored;
      stream_.socket().cancel(ignored);
      return;
    }
    watch_ = std::make_shared<Watch>(Watch{this});
    if (stream_.tls()) {
      // Not from here: the router starts its wait after this call.
      asio::post(stream_.get_executor(), [watch = watch_] {
        if (watch->stream != nullptr) watch->stream->Readable();
      });
    } else {
      AwaitReadable();
    }
  }

 private:
  struct Watch {
    Http1DownstreamStream* stream;
  };

  void AwaitReadable() {
    stream_.socket().async_wait(
        tcp::socket::wait_read, [watch = watch_](const boost::system::error_code& ec) {
          if (!ec && watch->stream != nullptr) watch->stream->Readable();
        });
  }

  void Readable() {
    constexpr size_t kRead = 4096;
    boost::system::error_code ec;
    size_t n = 0;
    if (buffer_.max_size() - buffer_.size() >= kRead) {
      n = stream_.ReadNow(buffer_.prepare(kRead), ec);
      buffer_.commit(n);
    }
    if (ec == asio::error::would_block || ec == asio::error::try_again ||
        ec == asio::error::interrupted) {
      AwaitReadable();
      return;
    }
    watch_.reset();
    if (n > 0 || !ec) return;  // bytes to read first
    failed_ = true;            // EOF, close_notify or reset: the client is gone
    if (on_abandoned_) std::exchange(on_abandoned_, nullptr)();
  }

  // One write: what `out_` holds (a head, a last chunk, or nothing) and a piece of the body,
  // framed.
  struct Output {
    std::array<asio::const_buffer, 3> buffers;
    size_t sent = 0;
    bool completes;  // the response is done once it is written
  };
  Output Frame(std::string_view data, bool end_stream) {
    const std::string_view suffix = http::FrameHttp1Body(data.size(), chunked_, end_stream, out_);
    return Output{{asio::buffer(out_), asio::buffer(data.data(), data.size()),
                   asio::buffer(suffix.data(), suffix.size())},
                  0,
                  end_stream};
  }

  // Writes `output` at once if no other write is in progress and the socket takes all of it
  // (the usual case, which costs no coroutine): whether the connection took it; nullopt
  // leaves the rest to Send.
  std::optional<bool> SendNow(Output& output) {
    if (writing_) return std::nullopt;
    boost::system::error_code ec;
    if (!stream_.WriteNow(output.buffers, output.sent, ec)) return std::nullopt;
    return Written(output, !ec);
  }
  asio::awaitable<bool> Send(Output& output) {
    co_return Written(output,
                      co_await WriteInOrder(output.buffers, output.sent, /*interim=*/false));
  }
  bool Written(const Output& output, bool ok) {
    if (!ok) {
      failed_ = true;
    } else if (output.completes) {
      response_done_ = true;
    }
    return ok;
  }

  // The connection's one way out. The router writes the response while the body pump may
  // write the 100 Continue, and a write sends what fits at once: a write started while another
  // waits for room in the socket would cut into it. So a write waits for the one in progress,
  // and an `interim` response is dropped once the final one has started (it may be the one in
  // progress), as Envoy never sends 100 Continue after the response headers. `sent`: what
  // SendNow wrote of `buffers` already (then no other write was in progress).
  template <class Buffers>
  asio::awaitable<bool> WriteInOrder(const Buffers& buffers, size_t sent, bool interim) {
    while (writing_) {
      if (!write_done_) write_done_.emplace(stream_.get_executor(), Clock::time_point::max());
      ++write_waiters_;
      boost::system::error_code ec;
      co_await write_done_->async_wait(redirect_error(use_awaitable, ec));
      --write_waiters_;
    }
    if (interim && response_started_) co_return true;
    writing_ = true;
    const boost::system::error_code ec = co_await stream_.Write(buffers, sent);
    writing_ = false;
    if (write_waiters_ > 0) write_done_->cancel();
    if (ec) failed_ = true;
    co_return !ec;
  }

  Transport& stream_;
  beast::flat_buffer& buffer_;
  http::Http1Parser<true>& parser_;
  std::string& out_;  // the connection's output buffer
  const unsigned version_;
  bool keep_alive_;
  const bool* connection_expired_;  // the connection's max_connection_duration has passed
  const bool enable_trailers_;
  http::HeaderMap headers_;
  http::HeaderMap request_trailers_;
  bool continue_pending_ = false;
  bool response_started_ = false;
  bool writing_ = false;  // a write is in progress (WriteInOrder)
  int write_waiters_ = 0;
  std::optional<asio::steady_timer> write_done_;  // wakes them; made only when one waits
  bool chunked_ = false;
  bool response_done_ = false;
  bool failed_ = false;
  std::function<void()> on_abandoned_;  // the router's, for the exchange
  std::shared_ptr<Watch> watch_;        // while the router waits in the pending queue
};

// The HTTP connection manager's timers on one connection, each armed once per connection, not
// per request (each re-arm can cost a timerfd_settime syscall):
// - idle_timeout closes a keep-alive connection that waits longer for its next request
//   (downstream_cx_idle_timeout). A request only records when the wait began, and an expiry
//   that finds a later wait (or a request being served) sleeps again for what is left.
// - max_connection_duration (downstream_cx_max_duration_reached) closes a connection waiting
//   for its next request at once; one serving a request closes after the response, which says
//   Connection: close.
class ConnectionTimers {
 public:
  ConnectionTimers(Transport& stream, const config::HttpChain& chain,
                   std::shared_ptr<HttpConnectionManagerStats> stats)
      : state_(std::make_shared<State>(stream, chain.idle_timeout, std::move(stats))) {
    if (chain.idle_timeout.count() > 0) ArmIdle(state_, Clock::now() + chain.idle_timeout);
    if (chain.max_connection_duration.count() > 0) {
      state_->duration_timer.expires_after(chain.max_connection_duration);
      state_->duration_timer.async_wait([state = state_](const boost::system::error_code& ec) {
        if (ec || state->stream == nullptr) return;
        state->stats->downstream_cx_max_duration_reached.fetch_add(1, std::memory_order_relaxed);
        state->duration_reached = true;
        if (state->waiting_since != Clock::time_point::max()) state->stream->Close();
      });
    }
  }
  ~ConnectionTimers() {
    state_->stream = nullptr;  // a completion already queued finds no stream
    state_->idle_timer.cancel();
    state_->duration_timer.cancel();
  }
  ConnectionTimers(const ConnectionTimers&) = delete;
  ConnectionTimers& operator=(const ConnectionTimers&) = delete;

  void Waiting() { state_->waiting_since = Clock::now(); }
  void Serving() { state_->waiting_since = Clock::time_point::max(); }
  // Set once max_connection_duration has passed: the response in flight ends the connection.
  const bool* duration_reached() const { return &state_->duration_reached; }

 private:
  struct State {
    State(Transport& s, std::chrono::milliseconds t, std::shared_ptr<HttpConnectionManagerStats> st)
        : stream(&s),
          idle_timer(s.get_executor()),
          duration_timer(s.get_executor()),
          idle_timeout(t),
          stats(std::move(st)) {}
    Transport* stream;
    asio::steady_timer idle_timer;
    asio::steady_timer duration_timer;
    const std::chrono::milliseconds idle_timeout;
    const std::shared_ptr<HttpConnectionManagerStats> stats;
    Clock::time_point waiting_since = Clock::time_point::max();  // max: serving a request
    bool duration_reached = false;
  };

  static void ArmIdle(const std::shared_ptr<State>& state, Clock::time_point at) {
    state->idle_timer.expires_at(at);
    state->idle_timer.async_wait([state](const boost::system::error_code& ec) {
      if (ec || state->stream == nullptr) return;
      const Clock::time_point now = Clock::now();
      if (state->waiting_since != Clock::time_point::max() &&
          now - state->waiting_since >= state->idle_timeout) {
        state->stats->downstream_cx_idle_timeout.fetch_add(1, std::memory_order_relaxed);
        state->stream->Close();  // the pending read fails
        return;
      }
      ArmIdle(state, std::min(state->waiting_since, now) + state->idle_timeout);
    });
  }

  std::shared_ptr<State> state_;
};

}  // namespace

asio::awaitable<void> ServeHttp1(Worker& worker, Transport& stream,
                                 beast::flat_buffer& buffer, const ConnectionInfo& info,
                                 const std::string& listener_name, const ListenerEntry& listener,
                                 const config::HttpChain& chain) {
  RouterFilter router(worker, info, listener, chain);
  std::string out;  // response heads, reused from one request to the next
  stream.tcp().expires_never();
  const std::shared_ptr<HttpConnectionManagerStats>& stats = listener.HttpStats(chain);
  ConnectionTimers timers(stream, chain, stats);
  // A listener removed or replaced, or /drain_listeners: the next response closes the
  // connection. Told by the worker once, rather than asked at every request.
  bool drained = worker.ListenerDrained(listener_name, *listener.config, chain);
  const Worker::DrainWatch drain_watch(worker, listener_name, listener.config, chain,
                                       [&drained] { drained = true; });
  for (uint32_t requests = 1;; ++requests) {
    http::Http1Parser<true> parser(chain.enable_trailers);
    parser.header_limit(64 * 1024);
    timers.Waiting();
    boost::system::error_code ec =
        co_await ReadHttp1(stream, buffer, parser, Http1ReadUntil::kHeader);
    timers.Serving();
    if (ec) {
      if (ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category() &&
          ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message) {
        bhttp::response<bhttp::string_body> bad{bhttp::status::bad_request, 11};
        bad.set(bhttp::field::server, "envoy");
        bad.keep_alive(false);
        bad.prepare_payload();
        listener.stats->downstream_rq_class[4].fetch_add(1, std::memory_order_relaxed);
        co_await bhttp::async_write(stream, bad, redirect_error(use_awaitable, ec));
      }
      break;
    }
    bool keep_alive = !drained;
    if (chain.max_requests_per_connection != 0 && requests >= chain.max_requests_per_connection) {
      stats->downstream_cx_max_requests_reached.fetch_add(1, std::memory_order_relaxed);
      keep_alive = false;
    }
    Http1DownstreamStream down(stream, buffer, parser, out, keep_alive, timers.duration_reached(),
                               chain.enable_trailers);
    co_await router.Serve(down);
    if (!down.reusable() || *timers.duration_reached()) break;
    ShrinkHttp1Buffer(buffer);
  }
  co_await stream.ShutdownSend(Clock::now() + kCloseNotifyTimeout);
}

}  // namespace meshpilot::sidecar::server
