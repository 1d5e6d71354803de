#include "translator/authorization.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "translator/message_types.h"
#include "translator/names.h"

namespace meshpilot::translator {
namespace {

using Action = model::AuthorizationPolicy::Action;

model::ConfigError ErrorFor(const model::AuthorizationPolicy& policy, std::string message,
                            const model::MessageType& type = kNotSupported) {
  return {.origin = "translator",
          .kind = "AuthorizationPolicy",
          .namespace_ = policy.meta.namespace_,
          .name = policy.meta.name,
          .message = std::move(message),
          .type = type};
}

// The TCP ports (endpoint target ports) of the workloads `policy` selects.
std::set<uint32_t> SelectedTcpPorts(const model::MeshState& state,
                                    const model::AuthorizationPolicy& policy) {
  std::set<uint32_t> ports;
  for (const auto& [key, service] : state.services) {
    for (const model::Endpoint& endpoint : state.EndpointsOf(service)) {
      const std::string& ns =
          endpoint.namespace_.empty() ? service.meta.namespace_ : endpoint.namespace_;
      if (!SelectsWorkload(policy, ns, endpoint.labels)) continue;
      for (const model::ServicePort& port : service.ports) {
        if (port.name == endpoint.port_name && model::IsTcpLike(port.protocol)) {
          ports.insert(endpoint.port);
        }
      }
    }
  }
  return ports;
}

// Fields that need what meshpilot does not have yet (mTLS peer identities, JWT).
void CheckRuleFields(const model::AuthorizationPolicy& policy, size_t index,
                     std::vector<model::ConfigError>& errors) {
  const model::AuthorizationRule& rule = policy.rules[index];
  const std::string path = absl::StrCat("spec.rules[", index, "]");
  auto mtls = [&](const std::string& field) {
    errors.push_back(ErrorFor(
        policy, absl::StrCat(field, ": matches mTLS peer identities (spiffe://", std::string(kTrustDomain),
                             "/ns/NS/sa/SA), which do not exist until meshpilot has mTLS; "
                             "translated as Istio does, it cannot match yet")));
  };
  auto jwt = [&](const std::string& field) {
    errors.push_back(ErrorFor(
        policy, absl::StrCat(field, ": needs JWT authentication (RequestAuthentication), which "
                             "meshpilot does not support yet; it cannot match")));
  };
  for (size_t i = 0; i < rule.from.size(); ++i) {
    const model::AuthorizationSource& source = rule.from[i];
    const std::string field = absl::StrCat(path, ".from[", i, "].source");
    if (!source.principals.empty() || !source.not_principals.empty()) {
      mtls(field + ".principals");
    }
    if (!source.namespaces.empty() || !source.not_namespaces.empty()) {
      mtls(field + ".namespaces");
    }
    if (!source.service_accounts.empty() || !source.not_service_accounts.empty()) {
      mtls(field + ".serviceAccounts");
    }
    if (!source.request_principals.empty() || !source.not_request_principals.empty()) {
      jwt(field + ".requestPrincipals");
    }
  }
  for (size_t i = 0; i < rule.when.size(); ++i) {
    const std::string& key = rule.when[i].key;
    const std::string field = absl::StrCat(path, ".when[", i, "] (", key, ")");
    if (key == "source.principal" || key == "source.namespace" ||
        key == "source.serviceAccount") {
      mtls(field);
    } else if (key.starts_with("request.auth.")) {
      jwt(field);
    } else if (key.starts_with("experimental.")) {
      errors.push_back(ErrorFor(
          policy, absl::StrCat(field, ": experimental attributes are not supported; ",
                               policy.action == Action::kAllow
                                   ? "this ALLOW rule is dropped (allows nothing)"
                                   : "the condition is ignored (the rule matches more)")));
    }
  }
}

}  // namespace

bool SelectsWorkload(const model::AuthorizationPolicy& policy,
                     const std::string& workload_namespace,
                     const std::map<std::string, std::string>& labels) {
  if (policy.target_ref || !policy.target_refs.empty()) return false;
  if (policy.meta.namespace_ != kRootNamespace && policy.meta.namespace_ != workload_namespace) {
    return false;
  }
  if (!policy.selector) return true;
  for (const auto& [key, value] : *policy.selector) {
    auto it = labels.find(key);
    if (it == labels.end() || it->second != value) return false;
  }
  return true;
}

SelectedPolicies SelectPolicies(const model::MeshState& state, const ProxyInfo& proxy) {
  SelectedPolicies selected;
  for (const auto& [key, policy] : state.authorization_policies) {
    if (!SelectsWorkload(policy, proxy.namespace_, proxy.labels)) continue;
    switch (policy.action) {
      case Action::kCustom:
        selected.custom.push_back(&policy);
        break;
      case Action::kDeny:
        selected.deny.push_back(&policy);
        break;
      case Action::kAllow:
        selected.allow.push_back(&policy);
        break;
      case Action::kAudit:
        break;  // Audit logging only: nothing to enforce.
    }
  }
  return selected;
}

std::vector<model::ConfigError> CheckAuthorizationPolicies(const model::MeshState& state) {
  std::vector<model::ConfigError> errors;
  for (const auto& [key, policy] : state.authorization_policies) {
    if (policy.action == Action::kCustom) {
      errors.push_back(ErrorFor(
          policy, absl::StrCat("spec.action: CUSTOM needs an ext-authz provider (\"",
                               policy.provider,
                               "\"), which meshpilot does not support yet; as Istio does for a "
                               "provider it cannot use, requests matching its rules are denied")));
    } else if (policy.action == Action::kAudit) {
      errors.push_back(ErrorFor(
          policy, "spec.action: AUDIT only marks requests for audit logging, which meshpilot "
                  "does not support yet; the policy has no effect"));
    }
    std::vector<model::PolicyTargetReference> refs = policy.target_refs;
    if (policy.target_ref) refs.insert(refs.begin(), *policy.target_ref);
    for (size_t i = 0; i < refs.size(); ++i) {
      std::string field = policy.target_ref && i == 0 ? std::string("spec.targetRef")
                                                      : absl::StrCat("spec.targetRefs[", i, "]");
      errors.push_back(ErrorFor(
          policy, absl::StrCat(field, ": a policy attached to a ", refs[i].kind,
                               " applies to its gateway or waypoint, which meshpilot does not "
                               "serve (sidecars and proxyless gRPC only); it selects no "
                               "workload here")));
    }
    std::set<uint32_t> tcp_ports;
    bool tcp_ports_known = false;
    for (size_t i = 0; i < policy.rules.size(); ++i) {
      CheckRuleFields(policy, i, errors);
      if (!HasHttpOnlyFields(policy.rules[i]) || policy.action == Action::kAudit) continue;
      if (!tcp_ports_known) {
        tcp_ports = SelectedTcpPorts(state, policy);
        tcp_ports_known = true;
      }
      std::string where = tcp_ports.empty()
                              ? std::string("ports no Service declares as HTTP")
                              : absl::StrCat("TCP ports ", absl::StrJoin(tcp_ports, ", "),
                                             " of the selected workloads and ports no Service "
                                             "declares");
      errors.push_back(ErrorFor(
          policy,
          absl::StrCat("spec.rules[", i, "]: uses HTTP-only fields (hosts, methods, paths, "
                       "requestPrincipals, request.headers, request.auth.*); on ",
                       where, ", as in Istio, ",
                       policy.action == Action::kAllow
                           ? "this ALLOW rule is dropped (it allows nothing there)"
                           : "those fields are ignored, so the rule denies more there"),
          kHttpOnlyRuleOnTcp));
    }
  }
  return errors;
}

}  // namespace meshpilot::translator
