#pragma once

// envoy.transport_sockets.tls: a DownstreamTlsContext (a filter chain terminates TLS) or an
// UpstreamTlsContext (a cluster originates it), parsed and built into one OpenSSL context when
// the resource is parsed; every worker's connections share it. Certificates and keys come from
// DataSources (filename, inline_string, inline_bytes), read at parse time; SDS is not
// available (NACKed with the field).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/ssl/context.hpp>

#include "absl/status/statusor.h"
#include "envoy/config/core/v3/base.pb.h"
#include "sidecar/config/string_match.h"

namespace meshpilot::sidecar::config {

// validation_context's SAN matchers: typed (match_typed_subject_alt_names) or of any type
// (the deprecated match_subject_alt_names).
struct SanMatcher {
  enum class Type { kAny, kEmail, kDns, kUri, kIpAddress };
  Type type = Type::kAny;
  StringMatch match;
};

struct TlsContext {
  std::unique_ptr<boost::asio::ssl::context> ssl;
  std::string sni;  // upstream: the ClientHello's server name, empty: none
  // The peer's certificate must carry one SAN that one of these matches (empty: any).
  std::vector<SanMatcher> san_matchers;
  std::vector<std::string> alpn;  // alpn_protocols, in order
  std::string alpn_wire;          // server: the same in ALPN's wire format, for OpenSSL
  bool verify_peer = false;       // a trusted CA: the peer's chain is verified
  bool require_client_certificate = false;  // downstream (mTLS)

  // Whether `cert` (the peer's) has a SAN some matcher accepts; true without matchers.
  bool SanMatches(X509* cert) const;
};

// The transport_socket of a filter chain (`field` is its path): envoy.transport_sockets.tls
// with a DownstreamTlsContext, or raw_buffer (null: plaintext).
absl::StatusOr<std::shared_ptr<const TlsContext>> ParseDownstreamTransportSocket(
    const envoy::config::core::v3::TransportSocket& proto, const std::string& field);
// The transport_socket of a cluster: an UpstreamTlsContext, or raw_buffer (null).
absl::StatusOr<std::shared_ptr<const TlsContext>> ParseUpstreamTransportSocket(
    const envoy::config::core::v3::TransportSocket& proto, const std::string& field);

}  // namespace meshpilot::sidecar::config
