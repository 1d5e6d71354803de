#include "sidecar/server/transport.h"

#include <openssl/ssl.h>

namespace meshpilot::sidecar::server {

std::string_view Transport::alpn() {
  if (!tls_) return {};
  const unsigned char* data = nullptr;
  unsigned length = 0;
  SSL_get0_alpn_selected(tls_->native_handle(), &data, &length);
  return {reinterpret_cast<const char*>(data), length};
}

}  // namespace meshpilot::sidecar::server
