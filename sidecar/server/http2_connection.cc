#include "sidecar/server/http2_connection.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "sidecar/server/upstream_pool.h"
#include "spdlog/spdlog.h"

namespace meshpilot::sidecar::server {

namespace asio = boost::asio;
using asio::redirect_error;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

namespace {

// Each stream may have this much unacknowledged data in flight towards us, the connection
// four times that: enough to keep loopback and LAN links busy, small enough that a stalled
// reader holds little.
constexpr int32_t kStreamWindow = 256 * 1024;
constexpr int32_t kConnectionWindow = 4 * kStreamWindow;
constexpr uint32_t kMaxConcurrentStreams = 1024;  // what a downstream client may open
constexpr size_t kWriteCoalesce = 64 * 1024;

std::vector<nghttp2_nv> ToNv(const http::HeaderMap& headers) {
  std::vector<nghttp2_nv> nva;
  nva.reserve(headers.entries().size());
  for (const auto& [name, value] : headers.entries()) {
    nva.push_back(nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                             reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())),
                             name.size(), value.size(), NGHTTP2_NV_FLAG_NONE});
  }
  return nva;
}

}  // namespace

// ---- Http2Stream ----

Http2Stream::Http2Stream(asio::io_context& io, std::shared_ptr<Http2Connection> connection)
    : connection_(std::move(connection)), readable_(io), writable_(io) {}

asio::awaitable<bool> Http2Stream::Wait(asio::steady_timer& signal, Clock::time_point deadline) {
  signal.expires_at(deadline);
  boost::system::error_code ec;
  co_await signal.async_wait(redirect_error(use_awaitable, ec));
  const bool woken = ec == asio::error::operation_aborted || Clock::now() < deadline;
  co_return woken;
}

void Http2Stream::Close(uint32_t error_code, bool connect_failed) {
  closed_ = true;
  close_error_ = error_code;
  connect_failed_ = connect_failed;
  NotifyAll();
  if (on_abandoned_ && (error_code != NGHTTP2_NO_ERROR || !local_ended_)) {
    std::function<void()> callback = std::move(on_abandoned_);
    callback();
  }
}

void Http2Stream::NotifyAll() {
  readable_.cancel();
  writable_.cancel();
}

StreamError Http2Stream::CloseReason() const {
  if (connect_failed_) return StreamError::kConnectFailure;
  if (close_error_ == NGHTTP2_REFUSED_STREAM) return StreamError::kRefused;
  return StreamError::kReset;
}

asio::awaitable<StreamError> Http2Stream::WaitHeaders(Clock::time_point deadline) {
  while (!headers_complete_ && !closed_) {
    const bool woken = co_await Wait(readable_, deadline);
    if (!woken) co_return StreamError::kTimeout;
  }
  const StreamError error = headers_complete_ ? StreamError::kNone : CloseReason();
  co_return error;
}

asio::awaitable<StreamError> Http2Stream::ReadBody(std::string& out, bool& end,
                                                   Clock::time_point deadline) {
  while (received_.empty() && !remote_ended_ && !closed_) {
    const bool woken = co_await Wait(readable_, deadline);
    if (!woken) co_return StreamError::kTimeout;
  }
  if (!received_.empty()) {
    out.append(received_);
    // The router passed it on (or holds it for a retry): the peer may send this much more.
    nghttp2_session_consume(connection_->session_, id_, received_.size());
    received_.clear();
    connection_->Flush();
  }
  end = remote_ended_;
  if (!end && closed_) co_return CloseReason();
  co_return StreamError::kNone;
}

StreamError Http2Stream::SubmitResponse(const http::HeaderMap& headers, bool end_stream) {
  if (closed_ || connection_->dead_) return StreamError::kReset;
  std::vector<nghttp2_nv> nva = ToNv(headers);
  nghttp2_data_provider provider{};
  provider.read_callback = &Http2Connection::ReadBodySource;
  local_ended_ = end_stream;
  if (nghttp2_submit_response(connection_->session_, id_, nva.data(), nva.size(),
                              end_stream ? nullptr : &provider) != 0) {
    return StreamError::kReset;
  }
  connection_->Flush();
  return StreamError::kNone;
}

asio::awaitable<StreamError> Http2Stream::WriteBody(std::string_view data, bool end_stream) {
  while (!closed_ && sending_.size() - sending_offset_ >= kSendHighWater) {
    co_await Wait(writable_, Clock::time_point::max());
  }
  if (closed_ || connection_->dead_) co_return CloseReason();
  sending_.append(data);
  if (end_stream) local_ended_ = true;
  nghttp2_session_resume_data(connection_->session_, id_);
  connection_->Flush();
  co_return StreamError::kNone;
}

asio::awaitable<StreamError> Http2Stream::WriteTrailers(const http::HeaderMap& trailers) {
  if (closed_ || connection_->dead_) co_return CloseReason();
  pending_trailers_ = trailers;
  local_ended_ = true;
  nghttp2_session_resume_data(connection_->session_, id_);
  connection_->Flush();
  co_return StreamError::kNone;
}

void Http2Stream::Reset(uint32_t error_code) {
  if (!closed_ && id_ > 0 && !connection_->dead_) {
    nghttp2_submit_rst_stream(connection_->session_, NGHTTP2_FLAG_NONE, id_, error_code);
  }
  Discard();
}

void Http2Stream::Discard() {
  discarding_ = true;
  if (!received_.empty()) {
    nghttp2_session_consume(connection_->session_, id_, received_.size());
    received_.clear();
  }
  connection_->Flush();
}

// ---- Http2Connection ----

Http2Connection::Http2Connection(asio::io_context& io, Transport transport, Role role,
                                 RequestHandler on_request)
    : io_(io),
      transport_(std::move(transport)),
      role_(role),
      on_request_(std::move(on_request)),
      write_signal_(io),
      idle_timer_(io),
      max_duration_timer_(io),
      drain_timer_(io) {
  InitSession();
}

Http2Connection::~Http2Connection() { nghttp2_session_del(session_); }

void Http2Connection::InitSession() {
  nghttp2_session_callbacks* callbacks;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, &OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, &OnHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, &OnFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, &OnDataChunkRecv);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, &OnStreamClose);
  nghttp2_option* option;
  nghttp2_option_new(&option);
  // WINDOW_UPDATE only once the router consumed the data (Http2Stream::ReadBody).
  nghttp2_option_set_no_auto_window_update(option, 1);
  if (role_ == Role::kServer) {
    nghttp2_session_server_new2(&session_, callbacks, this, option);
  } else {
    nghttp2_session_client_new2(&session_, callbacks, this, option);
  }
  nghttp2_option_del(option);
  nghttp2_session_callbacks_del(callbacks);
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, kMaxConcurrentStreams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kStreamWindow)},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},  // a proxy has nowhere to deliver pushes
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
}

asio::awaitable<void> Http2Connection::Serve(std::string preface) {
  co_await Run(std::move(preface));
}

asio::awaitable<void> Http2Connection::Connect(tcp::endpoint peer, Clock::time_point deadline,
                                               std::shared_ptr<ClusterStats> stats,
                                               std::optional<config::TcpKeepalive> keepalive) {
  auto self = shared_from_this();
  const bool connected =
      co_await ConnectUpstream(transport_, peer, deadline, keepalive, tls_.get(), *stats);
  if (!connected) {
    Terminate(/*connect_failed=*/true);
    co_return;
  }
  transport_.tcp().expires_never();
  co_await Start(std::move(stats));
}

asio::awaitable<void> Http2Connection::Start(std::shared_ptr<ClusterStats> stats) {
  auto self = shared_from_this();
  stats_ = std::move(stats);
  co_await Run("");
}

asio::awaitable<void> Http2Connection::Run(std::string preface) {
  auto self = shared_from_this();
  asio::co_spawn(io_, WriteLoop(), asio::detached);
  if (idle_timeout_.count() > 0) asio::co_spawn(io_, IdleLoop(), asio::detached);
  if (max_duration_.count() > 0) {
    max_duration_timer_.expires_after(max_duration_);
    max_duration_timer_.async_wait([self](const boost::system::error_code& ec) {
      if (ec || self->dead_ || self->draining_) return;
      if (self->max_durations_reached_ != nullptr) {
        self->max_durations_reached_->fetch_add(1, std::memory_order_relaxed);
      }
      self->DrainGracefully();
    });
  }
  co_await ReadLoop(std::move(preface));
  Terminate(/*connect_failed=*/false);
}

asio::awaitable<void> Http2Connection::ReadLoop(std::string preface) {
  if (!preface.empty()) {
    if (nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(preface.data()),
                                 preface.size()) < 0) {
      co_return;
    }
    Flush();
  }
  std::vector<uint8_t> buffer(64 * 1024);
  while (!dead_ && (nghttp2_session_want_read(session_) || nghttp2_session_want_write(session_))) {
    boost::system::error_code ec;
    size_t n = co_await transport_.ReadSome(asio::buffer(buffer), ec, Clock::time_point::max());
    if (ec) break;
    if (stats_) stats_->upstream_cx_rx_bytes_total.fetch_add(n, std::memory_order_relaxed);
    ssize_t rv = nghttp2_session_mem_recv(session_, buffer.data(), n);
    if (rv < 0) {
      spdlog::debug("http2: {}", nghttp2_strerror(static_cast<int>(rv)));
      break;
    }
    Flush();
  }
}

asio::awaitable<void> Http2Connection::WriteLoop() {
  auto self = shared_from_this();
  std::string out;
  while (!dead_) {
    out.clear();
    while (out.size() < kWriteCoalesce) {
      const uint8_t* data = nullptr;
      ssize_t n = nghttp2_session_mem_send(session_, &data);
      if (n < 0) {
        Terminate(false);
        co_return;
      }
      if (n == 0) break;
      out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    }
    if (!out.empty()) {
      if (co_await transport_.Write(asio::buffer(out))) {
        Terminate(false);
        co_return;
      }
      if (stats_) {
        stats_->upstream_cx_tx_bytes_total.fetch_add(out.size(), std::memory_order_relaxed);
      }
      continue;
    }
    if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_)) {
      // GOAWAY both ways and no stream left: close, which also ends the reader.
      Terminate(false);
      co_return;
    }
    write_signal_.expires_at(Clock::time_point::max());
    boost::system::error_code ec;
    co_await write_signal_.async_wait(redirect_error(use_awaitable, ec));
  }
}

asio::awaitable<void> Http2Connection::IdleLoop() {
  auto self = shared_from_this();
  for (;;) {
    // The idle time starts over whenever the last stream closes (the wait is cancelled).
    idle_timer_.expires_after(idle_timeout_);
    boost::system::error_code ec;
    co_await idle_timer_.async_wait(redirect_error(use_awaitable, ec));
    if (dead_) co_return;
    if (ec || !streams_.empty()) continue;
    if (draining_ || shutdown_notice_sent_) co_return;  // draining already
    if (idle_timeouts_ != nullptr) idle_timeouts_->fetch_add(1, std::memory_order_relaxed);
    if (role_ == Role::kServer) {
      // As Envoy's connection manager: the drain sequence (a stream racing the notice is
      // still served), closed once the final GOAWAY is sent with no stream left.
      DrainGracefully();
    } else {
      // GOAWAY, then the writer closes the connection once it is sent.
      nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
      Flush();
    }
    co_return;
  }
}

void Http2Connection::Flush() { write_signal_.cancel(); }

void Http2Connection::Terminate(bool connect_failed) {
  if (dead_) return;
  dead_ = true;
  auto streams = std::move(streams_);
  streams_.clear();
  for (auto& [id, stream] : streams) stream->Close(NGHTTP2_INTERNAL_ERROR, connect_failed);
  slot_.Release();  // before the pool wakes a request that may take the place
  if (on_capacity_) std::exchange(on_capacity_, nullptr)(/*closed=*/true);
  write_signal_.cancel();
  idle_timer_.cancel();
  max_duration_timer_.cancel();
  drain_timer_.cancel();
  transport_.ShutdownBoth();
  transport_.Close();
}

bool Http2Connection::CanOpenStream(uint32_t local_limit) const {
  // Draining (GOAWAY sent: max requests or duration reached, or replaced): no new stream.
  if (dead_ || draining_ || goaway_received_ || !nghttp2_session_check_request_allowed(session_)) {
    return false;
  }
  if (max_requests_ != 0 && assigned_ >= max_requests_) return false;
  if (nghttp2_session_get_next_stream_id(session_) >= (1u << 31) - 2) return false;
  uint32_t limit =
      nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  if (local_limit != 0) limit = std::min(limit, local_limit);
  return streams_.size() < limit;
}

std::shared_ptr<Http2Stream> Http2Connection::OpenStream(const http::HeaderMap& headers,
                                                         bool end_stream) {
  auto stream = std::make_shared<Http2Stream>(io_, shared_from_this());
  if (dead_) {
    stream->closed_ = true;
    stream->close_error_ = NGHTTP2_REFUSED_STREAM;
    return stream;
  }
  std::vector<nghttp2_nv> nva = ToNv(headers);
  nghttp2_data_provider provider{};
  provider.read_callback = &ReadBodySource;
  stream->local_ended_ = end_stream;
  const int32_t id = nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(),
                                            end_stream ? nullptr : &provider, nullptr);
  if (id < 0) {
    stream->closed_ = true;
    stream->close_error_ = NGHTTP2_REFUSED_STREAM;
    return stream;
  }
  stream->id_ = id;
  streams_[id] = stream;
  ++opened_;
  Flush();
  return stream;
}

void Http2Connection::Drain() {
  if (dead_ || draining_) return;
  draining_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
  Flush();
}

void Http2Connection::DrainGracefully() {
  if (dead_ || draining_ || shutdown_notice_sent_) return;
  if (role_ == Role::kClient || drain_timeout_.count() == 0) {
    Drain();
    return;
  }
  shutdown_notice_sent_ = true;
  nghttp2_submit_shutdown_notice(session_);
  Flush();
  drain_timer_.expires_after(drain_timeout_);
  drain_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (!ec) self->Drain();
  });
}

Http2Stream* Http2Connection::StreamOf(int32_t stream_id) {
  auto it = streams_.find(stream_id);
  return it == streams_.end() ? nullptr : it->second.get();
}

int Http2Connection::OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* data) {
  auto* self = static_cast<Http2Connection*>(data);
  if (self->role_ == Role::kServer && frame->hd.type == NGHTTP2_HEADERS &&
      frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    auto stream = std::make_shared<Http2Stream>(self->io_, self->shared_from_this());
    stream->id_ = frame->hd.stream_id;
    stream->headers_.Reserve(16);  // the usual request in one allocation
    self->streams_[frame->hd.stream_id] = std::move(stream);
  }
  return 0;
}

int Http2Connection::OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                              size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                              void* data) {
  auto* self = static_cast<Http2Connection*>(data);
  Http2Stream* stream = self->StreamOf(frame->hd.stream_id);
  if (stream == nullptr || frame->hd.type != NGHTTP2_HEADERS) return 0;
  std::string_view n(reinterpret_cast<const char*>(name), namelen);
  std::string_view v(reinterpret_cast<const char*>(value), valuelen);
  (stream->headers_complete_ ? stream->trailers_ : stream->headers_).Add(n, v);
  return 0;
}

int Http2Connection::OnFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* data) {
  auto* self = static_cast<Http2Connection*>(data);
  const bool end_stream = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS: {
      auto it = self->streams_.find(frame->hd.stream_id);
      if (it == self->streams_.end()) break;
      Http2Stream& stream = *it->second;
      if (!stream.headers_complete_) {
        const unsigned status = stream.headers_.Status();
        if (self->role_ == Role::kClient && status >= 100 && status < 200 && !end_stream) {
          stream.headers_ = {};  // informational: the final headers follow
          break;
        }
        stream.headers_complete_ = true;
        stream.remote_ended_ = end_stream;
        if (self->role_ == Role::kServer && self->on_request_) self->on_request_(it->second);
      } else if (end_stream) {
        stream.remote_ended_ = true;  // trailers
      }
      stream.readable_.cancel();
      break;
    }
    case NGHTTP2_DATA:
      if (end_stream) {
        if (Http2Stream* stream = self->StreamOf(frame->hd.stream_id)) {
          stream->remote_ended_ = true;
          stream->readable_.cancel();
        }
      }
      break;
    case NGHTTP2_GOAWAY:
      self->goaway_received_ = true;
      break;
    case NGHTTP2_SETTINGS:
      // The peer's SETTINGS_MAX_CONCURRENT_STREAMS may leave room for streams now.
      if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) && self->on_capacity_) self->on_capacity_(false);
      break;
    default:
      break;
  }
  return 0;
}

int Http2Connection::OnDataChunkRecv(nghttp2_session* session, uint8_t, int32_t stream_id,
                                     const uint8_t* bytes, size_t len, void* data) {
  auto* self = static_cast<Http2Connection*>(data);
  Http2Stream* stream = self->StreamOf(stream_id);
  if (stream == nullptr || stream->discarding_) {
    nghttp2_session_consume(session, stream_id, len);
    return 0;
  }
  stream->received_.append(reinterpret_cast<const char*>(bytes), len);
  stream->readable_.cancel();
  return 0;
}

int Http2Connection::OnStreamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code,
                                   void* data) {
  auto* self = static_cast<Http2Connection*>(data);
  auto it = self->streams_.find(stream_id);
  if (it == self->streams_.end()) return 0;
  std::shared_ptr<Http2Stream> stream = std::move(it->second);
  self->streams_.erase(it);
  if (self->streams_.empty()) {
    self->idle_timer_.cancel();
    if (self->max_requests_ != 0 && self->opened_ >= self->max_requests_) {
      if (self->stats_) {
        self->stats_->upstream_cx_max_requests.fetch_add(1, std::memory_order_relaxed);
      }
      self->Drain();
    }
  }
  stream->Close(error_code, /*connect_failed=*/false);
  if (self->on_capacity_) self->on_capacity_(false);
  return 0;
}

ssize_t Http2Connection::ReadBodySource(nghttp2_session* session, int32_t stream_id,
                                        uint8_t* buf, size_t length, uint32_t* flags,
                                        nghttp2_data_source*, void* data) {
  auto* self = static_cast<Http2Connection*>(data);
  Http2Stream* stream = self->StreamOf(stream_id);
  if (stream == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  const size_t available = stream->sending_.size() - stream->sending_offset_;
  const size_t n = std::min(length, available);
  std::memcpy(buf, stream->sending_.data() + stream->sending_offset_, n);
  stream->sending_offset_ += n;
  if (stream->sending_offset_ == stream->sending_.size()) {
    stream->sending_.clear();
    stream->sending_offset_ = 0;
  } else if (stream->sending_offset_ >= Http2Stream::kSendHighWater) {
    stream->sending_.erase(0, stream->sending_offset_);
    stream->sending_offset_ = 0;
  }
  if (n == available) {
    if (stream->local_ended_) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (stream->pending_trailers_) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        std::vector<nghttp2_nv> nva = ToNv(*stream->pending_trailers_);
        nghttp2_submit_trailer(session, stream_id, nva.data(), nva.size());
      }
    } else if (n == 0) {
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  stream->writable_.cancel();
  return static_cast<ssize_t>(n);
}

}  // namespace meshpilot::sidecar::server
