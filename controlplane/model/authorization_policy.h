#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "controlplane/model/object_meta.h"

namespace meshpilot::model {

// Who sends the request. Every list that is set must match (AND); within a list, any value
// may (OR); the not* lists must not match.
struct AuthorizationSource {
  std::vector<std::string> principals;
  std::vector<std::string> not_principals;
  std::vector<std::string> request_principals;
  std::vector<std::string> not_request_principals;
  std::vector<std::string> namespaces;
  std::vector<std::string> not_namespaces;
  std::vector<std::string> ip_blocks;  // IPs or CIDRs
  std::vector<std::string> not_ip_blocks;
  std::vector<std::string> remote_ip_blocks;
  std::vector<std::string> not_remote_ip_blocks;
  std::vector<std::string> service_accounts;  // "ns/name"
  std::vector<std::string> not_service_accounts;
};

// What the request does; same AND/OR rules as AuthorizationSource.
struct AuthorizationOperation {
  std::vector<std::string> hosts;
  std::vector<std::string> not_hosts;
  std::vector<std::string> ports;  // strings in Istio's API, validated as 1..65535
  std::vector<std::string> not_ports;
  std::vector<std::string> methods;
  std::vector<std::string> not_methods;
  std::vector<std::string> paths;
  std::vector<std::string> not_paths;
};

struct AuthorizationCondition {
  std::string key;  // "request.headers[x-token]", "source.ip", ...
  std::vector<std::string> values;
  std::vector<std::string> not_values;
};

// A rule matches when any `from`, any `to` and every `when` match; an empty list is ignored.
struct AuthorizationRule {
  std::vector<AuthorizationSource> from;
  std::vector<AuthorizationOperation> to;
  std::vector<AuthorizationCondition> when;
};

struct PolicyTargetReference {
  std::string group;  // "" is the core group
  std::string kind;
  std::string name;
  std::string namespace_;
};

// security.istio.io AuthorizationPolicy (v1 and v1beta1).
struct AuthorizationPolicy {
  enum class Action { kAllow, kDeny, kAudit, kCustom };

  ObjectMeta meta;
  // At most one of selector, target_ref and target_refs; none selects every workload of the
  // namespace (of the mesh, in the root namespace).
  std::optional<std::map<std::string, std::string>> selector;  // selector.matchLabels
  std::optional<PolicyTargetReference> target_ref;
  std::vector<PolicyTargetReference> target_refs;
  Action action = Action::kAllow;
  std::string provider;  // provider.name, CUSTOM only
  // No rules: an ALLOW policy matches nothing. One empty rule `{}` matches everything.
  std::vector<AuthorizationRule> rules;
};

}  // namespace meshpilot::model
