#pragma once

// A connection's byte stream: a plaintext TCP stream, or TLS over it once a handshake made it
// one. The codecs (HTTP/1.1, HTTP/2), the upstream pool and the TCP proxy read and write
// through it; a plaintext connection pays one predictable branch per operation and nothing
// else (no allocation, no extra system call). The TCP stream stays reachable for deadlines
// (Beast's expires_*) and socket options.

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_suffix.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "sidecar/config/tls.h"
#include "sidecar/stats.h"

namespace meshpilot::sidecar::server {

// How long a closing connection waits for its close_notify to leave (Envoy's
// delayed_close_timeout default).
inline constexpr auto kCloseNotifyTimeout = std::chrono::seconds(1);

class Transport {
 public:
  using executor_type = boost::beast::tcp_stream::executor_type;
  using TlsStream = boost::asio::ssl::stream<boost::beast::tcp_stream>;

  explicit Transport(boost::asio::ip::tcp::socket socket) : plain_(std::move(socket)) {}
  template <class ExecutionContext>
  explicit Transport(ExecutionContext& context) : plain_(context) {}
  Transport(Transport&&) = default;
  // A TLS connection still open gets its close_notify, as from Close().
  ~Transport() { SendCloseNotifyNow(); }

  executor_type get_executor() { return tcp().get_executor(); }
  boost::beast::tcp_stream& tcp() { return tls_ ? tls_->next_layer() : plain_; }
  boost::asio::ip::tcp::socket& socket() { return tcp().socket(); }
  // Makes the stream TLS with `context` and runs the handshake as server or client (with the
  // context's SNI) until `deadline`, then checks the peer certificate's SANs. Counts the
  // outcome in `stats` (Envoy's ssl.*); false: the connection is not to be used.
  enum class Role { kServer, kClient };
  boost::asio::awaitable<bool> Handshake(const config::TlsContext& context, Role role,
                                         SslStats& stats,
                                         std::chrono::steady_clock::time_point deadline);
  // The protocol ALPN chose ("h2", "http/1.1"), empty without TLS or ALPN.
  std::string_view alpn();
  // The certificate the peer presented, read once; null without TLS or without one.
  std::shared_ptr<const config::PeerCertificate> PeerCertificate();
  bool tls() const { return tls_ != nullptr; }

  // Reads what can be read without waiting (through TLS: whole records only): bytes, or 0 with
  // `ec` would_block, eof (FIN, or TLS close_notify), or another error.
  size_t ReadNow(boost::asio::mutable_buffer buffer, boost::system::error_code& ec);

  // Writes what the socket takes of `buffers` now, without waiting, from byte `sent` on, and
  // advances `sent`: true once all of them are written or the write failed (`ec`). A
  // plaintext stream sends straight on the socket (one sendmsg); TLS writes nothing here
  // (false, unless there is nothing to write). The data path tries this first, so that a
  // write that fits costs no coroutine.
  template <class ConstBuffers>
  bool WriteNow(const ConstBuffers& buffers, size_t& sent, boost::system::error_code& ec) {
    const size_t total = boost::asio::buffer_size(buffers);
    if (sent == total) return true;
    if (tls_) return false;
    if (sent == 0) {
      sent = SendNow(buffers, ec);
    } else if (sent < total) {
      boost::beast::buffers_suffix<ConstBuffers> rest(buffers);
      rest.consume(sent);
      sent += SendNow(rest, ec);
    }
    return ec || sent == total;
  }

  // Writes all of `buffers` from byte `sent` on (what WriteNow left), waiting for room in the
  // socket's buffer as needed; TLS goes through the engine.
  template <class ConstBuffers>
  boost::asio::awaitable<boost::system::error_code> Write(const ConstBuffers& buffers,
                                                          size_t sent = 0) {
    boost::system::error_code ec;
    if (WriteNow(buffers, sent, ec)) co_return ec;
    boost::beast::buffers_suffix<ConstBuffers> rest(buffers);
    rest.consume(sent);
    using boost::asio::redirect_error;
    using boost::asio::use_awaitable;
    if (tls_) {
      co_await boost::asio::async_write(*this, rest, redirect_error(use_awaitable, ec));
    } else {
      // On the socket itself, like SendNow: writes carry no deadline, and one a timed read left
      // on the TCP stream must not cut this one off.
      co_await boost::asio::async_write(plain_.socket(), rest, redirect_error(use_awaitable, ec));
    }
    co_return ec;
  }

  // Reads some bytes into `buffers`. With no deadline (max) a plaintext stream waits on the
  // socket itself rather than through Beast's timed stream; with one, a read still pending at
  // the deadline fails with beast::error::timeout. (Not a coroutine: the read starts when the
  // result is awaited, which must be at once.)
  template <class MutableBuffers>
  boost::asio::awaitable<size_t> ReadSome(const MutableBuffers& buffers,
                                          boost::system::error_code& ec,
                                          std::chrono::steady_clock::time_point deadline) {
    using boost::asio::redirect_error;
    using boost::asio::use_awaitable;
    if (!tls_ && deadline == std::chrono::steady_clock::time_point::max()) {
      return plain_.socket().async_read_some(buffers, redirect_error(use_awaitable, ec));
    }
    if (deadline == std::chrono::steady_clock::time_point::max()) {
      tcp().expires_never();
    } else {
      tcp().expires_at(deadline);
    }
    return async_read_some(buffers, redirect_error(use_awaitable, ec));
  }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, size_t)>(
        [this](auto handler, const MutableBuffers& b) {
          if (tls_) {
            tls_->async_read_some(b, std::move(handler));
          } else {
            plain_.async_read_some(b, std::move(handler));
          }
        },
        token, buffers);
  }

  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, size_t)>(
        [this](auto handler, const ConstBuffers& b) {
          if (tls_) {
            tls_->async_write_some(b, std::move(handler));
          } else {
            plain_.async_write_some(b, std::move(handler));
          }
        },
        token, buffers);
  }

  // Ends this side's sending once what was written is sent: TLS's close_notify, then a FIN.
  // The peer may go on sending (TLS 1.3 half-close; OpenSSL reads TLS 1.2 on as well). Past
  // `deadline` (a peer that reads nothing) the socket is closed instead.
  boost::asio::awaitable<void> ShutdownSend(
      std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max());
  // Abrupt ends: a TLS connection's close_notify goes out only if the socket takes it at once
  // (as Envoy's closeSocket), without waiting.
  void ShutdownBoth() {
    SendCloseNotifyNow();
    boost::system::error_code ignored;
    socket().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
  }
  void Close() {
    SendCloseNotifyNow();
    boost::system::error_code ignored;
    socket().close(ignored);
  }

 private:
  // Sends what the socket takes of `buffers` now (plaintext only), without waiting; a full
  // socket buffer is not an error.
  template <class ConstBuffers>
  size_t SendNow(const ConstBuffers& buffers, boost::system::error_code& ec) {
    std::array<iovec, 8> iov;
    size_t count = 0;
    size_t total = 0;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      const boost::asio::const_buffer piece(*it);
      if (piece.size() == 0) continue;
      if (count == iov.size()) break;  // the rest goes with async_write
      iov[count++] = {const_cast<void*>(piece.data()), piece.size()};
      total += piece.size();
    }
    if (total == 0) return 0;
    msghdr message{};
    message.msg_iov = iov.data();
    message.msg_iovlen = count;
    for (;;) {
      const ssize_t n = ::sendmsg(socket().native_handle(), &message, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        ec.assign(errno, boost::asio::error::get_system_category());
      }
      return 0;
    }
  }

  // The close_notify alert, taken from OpenSSL past Asio's engine (whose shutdown waits for the
  // peer's); empty if the handshake is not done or it was sent already. Nothing is written
  // through TLS afterwards.
  std::string TakeCloseNotify();
  void SendCloseNotifyNow();

  boost::beast::tcp_stream plain_;  // moved into tls_ by Handshake
  std::unique_ptr<TlsStream> tls_;
};

}  // namespace meshpilot::sidecar::server
