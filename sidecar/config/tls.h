#pragma once

// envoy.transport_sockets.tls: a DownstreamTlsContext (a filter chain terminates TLS) or an
// UpstreamTlsContext (a cluster originates it), parsed and built into one OpenSSL context when
// the resource is parsed; every worker's connections share it. Certificates and keys come from
// DataSources (filename, inline_string, inline_bytes), read at parse time, or from SDS files
// (sds.h), read then and again whenever they are replaced: the context is built anew, new
// connections take it, open ones keep theirs.

#include <atomic>
#include <cstdint>
#include <functional>
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

// A peer certificate as Envoy's RBAC `authenticated` principal reads it: the URI SANs, then
// the DNS SANs, else the subject (RFC 2253, "CN=client,O=example").
struct PeerCertificate {
  std::vector<std::string> uri_sans;
  std::vector<std::string> dns_sans;
  std::string subject;
};
PeerCertificate ReadPeerCertificate(X509* cert);

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

// A TLS transport_socket as configured: the context built from it and its SDS secrets as they
// were last read successfully. Connections take Current() when they start.
class TlsTransportSocket {
 public:
  using Build = std::function<absl::StatusOr<std::shared_ptr<const TlsContext>>()>;
  explicit TlsTransportSocket(Build build) : build_(std::move(build)) {}

  std::shared_ptr<const TlsContext> Current() const {
    return current_.load(std::memory_order_acquire);
  }
  // Builds the context again from the files as they are now; on failure the current one
  // stays (and the error is returned).
  absl::Status Reload();

 private:
  const Build build_;
  std::atomic<std::shared_ptr<const TlsContext>> current_;
};

// The transport_socket of a filter chain (`field` is its path): envoy.transport_sockets.tls
// with a DownstreamTlsContext, or raw_buffer (null: plaintext).
absl::StatusOr<std::shared_ptr<const TlsTransportSocket>> ParseDownstreamTransportSocket(
    const envoy::config::core::v3::TransportSocket& proto, const std::string& field);
// The transport_socket of a cluster: an UpstreamTlsContext, or raw_buffer (null). With
// `offer_h2_and_http11` (auto_config) a context without alpn_protocols offers both, as Envoy.
absl::StatusOr<std::shared_ptr<const TlsTransportSocket>> ParseUpstreamTransportSocket(
    const envoy::config::core::v3::TransportSocket& proto, const std::string& field,
    bool offer_h2_and_http11 = false);

}  // namespace meshpilot::sidecar::config
