#include "sidecar/server/transport.h"

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace meshpilot::sidecar::server {

std::string_view Transport::alpn() {
  if (!tls_) return {};
  const unsigned char* data = nullptr;
  unsigned length = 0;
  SSL_get0_alpn_selected(tls_->native_handle(), &data, &length);
  return {reinterpret_cast<const char*>(data), length};
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
