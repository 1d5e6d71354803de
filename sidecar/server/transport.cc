#include "sidecar/server/transport.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <sys/socket.h>

#include <cerrno>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace meshpilot::sidecar::server {

std::string_view Transport::alpn() {
  if (!tls_) return {};
  const unsigned char* data = nullptr;
  unsigned length = 0;
  SSL_get0_alpn_selected(tls_->native_handle(), &data, &length);
  return {reinterpret_cast<const char*>(data), length};
}

size_t Transport::ReadNow(boost::asio::mutable_buffer buffer, boost::system::error_code& ec) {
  if (!tls_) {
    // One recv, past Asio: no mode to switch back and forth.
    for (;;) {
      const ssize_t n = ::recv(socket().native_handle(), buffer.data(), buffer.size(), MSG_DONTWAIT);
      if (n > 0) return static_cast<size_t>(n);
      if (n == 0) {
        ec = buffer.size() == 0 ? boost::system::error_code() : boost::asio::error::eof;
        return 0;
      }
      if (errno == EINTR) continue;
      ec.assign(errno, boost::asio::error::get_system_category());
      return 0;
    }
  }
  boost::asio::ip::tcp::socket& s = socket();
  s.non_blocking(true, ec);
  if (ec) return 0;
  const size_t n = tls_ ? tls_->read_some(buffer, ec) : s.read_some(buffer, ec);
  boost::system::error_code ignored;
  s.non_blocking(false, ignored);
  return n;
}

std::string Transport::TakeCloseNotify() {
  if (!tls_) return {};
  SSL* ssl = tls_->native_handle();
  if (!SSL_is_init_finished(ssl) || (SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN) != 0) return {};
  // Asio's engine writes through a BIO pair whose other end it keeps to itself: the alert
  // goes to a memory BIO instead, and out by hand.
  BIO* out = BIO_new(BIO_s_mem());
  if (out == nullptr) return {};
  SSL_set0_wbio(ssl, out);
  SSL_shutdown(ssl);  // writes the alert; never reads on this first call
  ERR_clear_error();
  char* data = nullptr;
  const long size = BIO_get_mem_data(out, &data);
  return size > 0 ? std::string(data, static_cast<size_t>(size)) : std::string();
}

void Transport::SendCloseNotifyNow() {
  if (!tls_ || !socket().is_open()) return;
  const std::string alert = TakeCloseNotify();
  if (alert.empty()) return;
  [[maybe_unused]] const ssize_t sent = ::send(socket().native_handle(), alert.data(),
                                               alert.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
}

boost::asio::awaitable<void> Transport::ShutdownSend(
    std::chrono::steady_clock::time_point deadline) {
  const std::string alert = TakeCloseNotify();
  if (!alert.empty()) {
    boost::system::error_code ec;
    auto token = boost::asio::redirect_error(boost::asio::use_awaitable, ec);
    // The deadline is the write's alone: a read of the other direction may start meanwhile.
    co_await boost::asio::async_initiate<decltype(token), void(boost::system::error_code, size_t)>(
        [this, deadline](auto handler, boost::asio::const_buffer bytes) {
          tcp().expires_at(deadline);
          boost::asio::async_write(tcp(), bytes, std::move(handler));
          tcp().expires_never();  // the write in progress keeps `deadline`
        },
        token, boost::asio::buffer(alert));
  }
  boost::system::error_code ignored;
  socket().shutdown(boost::asio::ip::tcp::socket::shutdown_send, ignored);
}

std::shared_ptr<const config::PeerCertificate> Transport::PeerCertificate() {
  if (!tls_) return nullptr;
  X509* peer = SSL_get0_peer_certificate(tls_->native_handle());
  if (peer == nullptr) return nullptr;
  return std::make_shared<const config::PeerCertificate>(config::ReadPeerCertificate(peer));
}

boost::asio::awaitable<bool> Transport::Handshake(const config::TlsContext& context, Role role,
                                                  SslStats& stats,
                                                  std::chrono::steady_clock::time_point deadline) {
  tls_ = std::make_unique<TlsStream>(std::move(plain_), *context.ssl);
  SSL* ssl = tls_->native_handle();
  if (role == Role::kClient && !context.sni.empty()) {
    SSL_set_tlsext_host_name(ssl, context.sni.c_str());
  }
  tcp().expires_at(deadline);
  boost::system::error_code ec;
  co_await tls_->async_handshake(
      role == Role::kClient ? TlsStream::client : TlsStream::server,
      boost::asio::redirect_error(boost::asio::use_awaitable, ec));
  tcp().expires_never();
  X509* peer = SSL_get0_peer_certificate(ssl);
  if (ec) {
    if (SSL_get_verify_result(ssl) != X509_V_OK) {
      stats.fail_verify_error.fetch_add(1, std::memory_order_relaxed);
    } else if (role == Role::kServer && context.require_client_certificate && peer == nullptr) {
      stats.fail_verify_no_cert.fetch_add(1, std::memory_order_relaxed);
    }
    stats.connection_error.fetch_add(1, std::memory_order_relaxed);
    co_return false;
  }
  // A client certificate that was not required and not sent has no SANs to check.
  if ((peer != nullptr || role == Role::kClient) && !context.SanMatches(peer)) {
    stats.fail_verify_san.fetch_add(1, std::memory_order_relaxed);
    stats.connection_error.fetch_add(1, std::memory_order_relaxed);
    co_return false;
  }
  stats.handshake.fetch_add(1, std::memory_order_relaxed);
  if (peer == nullptr) stats.no_certificate.fetch_add(1, std::memory_order_relaxed);
  co_return true;
}

}  // namespace meshpilot::sidecar::server
