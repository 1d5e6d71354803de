#pragma once

#include <optional>
#include <string>
#include <vector>

#include "controlplane/model/authorization_policy.h"
#include "envoy/config/listener/v3/listener_components.pb.h"
#include "envoy/config/rbac/v3/rbac.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"

// AuthorizationPolicy rules to Envoy RBAC, field by field as istiod's authz builder maps them
// (pilot/pkg/security/authz/model): one Envoy policy per rule, named
// `ns[NS]-policy[NAME]-rule[I]`, whose permissions are the rule's `to` operations (any one)
// and whose principals are its `from` sources (any one), each AND-ed with the `when`
// conditions of its side; inside an attribute the values are OR-ed and the not-values
// negated.
namespace meshpilot::translator {

inline constexpr std::string_view kHttpRbacFilter = "envoy.filters.http.rbac";
inline constexpr std::string_view kNetworkRbacFilter = "envoy.filters.network.rbac";
// The mesh's SPIFFE trust domain: principals are spiffe://cluster.local/ns/NS/sa/SA.
inline constexpr std::string_view kTrustDomain = "cluster.local";

// Who reads the generated RBAC, which decides its shape.
struct RbacTarget {
  // A TCP filter chain (network RBAC filter): HTTP-only fields cannot be evaluated there.
  bool tcp = false;
  // gRPC before 1.5x parses only the deprecated HeaderMatcher forms (exact_match,
  // prefix_match, ...), not string_match, and rejects duplicate HTTP filter names.
  bool proxyless_grpc = false;
};

// The policies selecting one workload, by action. AUDIT policies enforce nothing and are
// left out; CUSTOM ones have no ext-authz provider to call, so, as istiod does for a provider
// it cannot use, their rules deny.
struct SelectedPolicies {
  std::vector<const model::AuthorizationPolicy*> custom;
  std::vector<const model::AuthorizationPolicy*> deny;
  std::vector<const model::AuthorizationPolicy*> allow;

  bool empty() const { return custom.empty() && deny.empty() && allow.empty(); }
};

// Whether a rule uses a field only HTTP can evaluate (hosts, methods, paths,
// requestPrincipals and their not-forms, request.headers and request.auth.* conditions).
bool HasHttpOnlyFields(const model::AuthorizationRule& rule);

// One rule as an Envoy policy; nullopt when the rule is dropped: an ALLOW rule with an
// HTTP-only field on TCP (Istio ignores it, so it allows nothing). For DENY (and CUSTOM) on
// TCP, Istio ignores the HTTP-only fields instead, so the rule denies more.
std::optional<envoy::config::rbac::v3::Policy> RulePolicy(
    const model::AuthorizationRule& rule, const std::string& policy_namespace,
    envoy::config::rbac::v3::RBAC::Action action, const RbacTarget& target);

// The RBAC of one action over some policies: every rule of every policy. An ALLOW RBAC with
// no policies denies everything, which is what an ALLOW policy without rules means.
envoy::config::rbac::v3::RBAC BuildRbac(
    const std::vector<const model::AuthorizationPolicy*>& policies,
    envoy::config::rbac::v3::RBAC::Action action, const RbacTarget& target);

// The HTTP RBAC filters for a workload, in Istio's evaluation order: CUSTOM (as deny), DENY,
// ALLOW; none without policies (everything is allowed). They go before the router.
std::vector<envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter>
RbacHttpFilters(const SelectedPolicies& policies, bool proxyless_grpc);

// The network RBAC filters of a TCP filter chain, same order, before tcp_proxy.
std::vector<envoy::config::listener::v3::Filter> RbacNetworkFilters(
    const SelectedPolicies& policies);

}  // namespace meshpilot::translator
