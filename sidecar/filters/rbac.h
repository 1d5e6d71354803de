#pragma once

// Envoy's RBAC filters (envoy.filters.http.rbac and envoy.filters.network.rbac) as a compiled
// policy set. A policy matches when one of its permissions and one of its principals match; an
// ALLOW set admits a request only if some policy matches, a DENY set only if none does, a LOG
// set admits everything. Shadow rules only feed Envoy's stats and are not evaluated.
//
// `authenticated` principals match connections whose TLS meshproxy terminated, by the peer
// certificate's URI SANs, then DNS SANs, then subject (as Envoy); plaintext and passed-through
// TLS never match. There is no dynamic metadata (no JWT filter), so `metadata` matchers see
// an absent value.

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

#include "absl/status/statusor.h"
#include "envoy/config/rbac/v3/rbac.pb.h"
#include "google/protobuf/any.pb.h"
#include "sidecar/config/cidr.h"
#include "sidecar/config/route.h"
#include "sidecar/config/string_match.h"
#include "sidecar/router/route_match.h"

namespace meshpilot::sidecar::config {
struct PeerCertificate;  // config/tls.h
}  // namespace meshpilot::sidecar::config

namespace meshpilot::sidecar::filters {

// One node of a Permission or a Principal tree.
struct RbacMatcher {
  enum class Kind {
    kAny,
    kAnd,
    kOr,
    kNot,
    kHeader,
    kUrlPath,
    kDestinationIp,
    kDestinationPortRange,  // destination_port is the range [port, port]
    kServerName,
    kAuthenticated,
    kDirectRemoteIp,
    kRemoteIp,
    kMetadata,
  };
  Kind kind = Kind::kAny;
  std::vector<RbacMatcher> children;  // kAnd, kOr; kNot has exactly one
  config::HeaderMatch header;
  std::optional<config::StringMatch> string;  // url path, server name, principal name
  config::Cidr cidr;
  uint32_t port_first = 0;  // inclusive
  uint32_t port_last = 0;   // inclusive
  bool invert = false;      // kMetadata
};

// What the rules look at. `headers` is unset for the network filter, where header and path
// rules never match.
struct RbacRequest {
  boost::asio::ip::tcp::endpoint remote;       // downstream peer
  boost::asio::ip::tcp::endpoint destination;  // where the connection was going
  std::optional<router::HeaderGetter> headers;
  std::string_view path;  // :path without its query
  std::string_view server_name;  // the tls_inspector's SNI; empty without
  bool tls_terminated = false;    // a TLS session with the downstream: it is authenticated
  const config::PeerCertificate* peer_certificate = nullptr;  // the client's, if it sent one
};

struct RbacPolicy {
  std::string name;
  std::vector<RbacMatcher> permissions;
  std::vector<RbacMatcher> principals;
};

class RbacFilter {
 public:
  enum class Action { kAllow, kDeny, kLog };

  // The name of the policy that decided, if one matched.
  struct Decision {
    bool allowed = true;
    std::string_view policy;
  };

  Decision Evaluate(const RbacRequest& request) const;

  // From the filters' typed_config; `field` prefixes error messages.
  static absl::StatusOr<std::shared_ptr<const RbacFilter>> ParseHttp(
      const google::protobuf::Any& typed_config, const std::string& field);
  static absl::StatusOr<std::shared_ptr<const RbacFilter>> ParseNetwork(
      const google::protobuf::Any& typed_config, const std::string& field);

 private:
  static absl::StatusOr<std::shared_ptr<const RbacFilter>> Build(
      const envoy::config::rbac::v3::RBAC* rules, const std::string& field);

  bool enabled_ = false;  // no `rules`: the filter admits everything
  Action action_ = Action::kAllow;
  std::vector<RbacPolicy> policies_;
};

}  // namespace meshpilot::sidecar::filters
