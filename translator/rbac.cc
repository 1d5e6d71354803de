#include "translator/rbac.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "envoy/extensions/filters/http/rbac/v3/rbac.pb.h"
#include "envoy/extensions/filters/network/rbac/v3/rbac.pb.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace meshpilot::translator {
namespace {

using envoy::config::rbac::v3::Permission;
using envoy::config::rbac::v3::Policy;
using envoy::config::rbac::v3::Principal;
using envoy::config::rbac::v3::RBAC;
using envoy::config::route::v3::HeaderMatcher;
using envoy::type::matcher::v3::StringMatcher;

// The request attributes a rule can test, each with its Istio generator.
enum class Attribute {
  // Principal side: who sends.
  kPrincipal,         // from.source.principals, source.principal
  kServiceAccount,    // from.source.serviceAccounts, source.serviceAccount
  kRequestPrincipal,  // from.source.requestPrincipals, request.auth.principal (JWT)
  kRequestAuth,       // request.auth.audiences, .presenter, .claims[...] (JWT)
  kNamespace,         // from.source.namespaces, source.namespace
  kRemoteIp,          // from.source.remoteIpBlocks, remote.ip
  kSourceIp,          // from.source.ipBlocks, source.ip
  kHeader,            // request.headers[NAME]
  // Permission side: what is asked.
  kHost,          // to.operation.hosts
  kMethod,        // to.operation.methods
  kPath,          // to.operation.paths
  kPort,          // to.operation.ports, destination.port
  kDestinationIp, // destination.ip
  kSni,           // connection.sni
  kUnsupported,   // experimental.envoy.filters.*: nothing meshpilot can evaluate
};

bool IsHttpOnly(Attribute attribute) {
  switch (attribute) {
    case Attribute::kRequestPrincipal:
    case Attribute::kRequestAuth:
    case Attribute::kHeader:
    case Attribute::kHost:
    case Attribute::kMethod:
    case Attribute::kPath:
      return true;
    default:
      return false;
  }
}

bool IsPrincipalSide(Attribute attribute) { return attribute <= Attribute::kHeader; }

// One attribute of a rule with its values; `key` is the header or claim name where needed.
struct Term {
  Attribute attribute;
  std::string key;
  const std::vector<std::string>* values;
  const std::vector<std::string>* not_values;
};

// The attribute a `when` key names (validated by convert/), and its [name] part.
Term ConditionTerm(const model::AuthorizationCondition& condition) {
  const std::string& key = condition.key;
  Term term{Attribute::kUnsupported, key, &condition.values, &condition.not_values};
  auto bracketed = [&](std::string_view prefix) {
    return key.substr(prefix.size() + 1, key.size() - prefix.size() - 2);
  };
  if (key.starts_with("request.headers[")) {
    term.attribute = Attribute::kHeader;
    term.key = bracketed("request.headers");
  } else if (key == "source.ip") {
    term.attribute = Attribute::kSourceIp;
  } else if (key == "remote.ip") {
    term.attribute = Attribute::kRemoteIp;
  } else if (key == "source.namespace") {
    term.attribute = Attribute::kNamespace;
  } else if (key == "source.principal") {
    term.attribute = Attribute::kPrincipal;
  } else if (key == "source.serviceAccount") {
    term.attribute = Attribute::kServiceAccount;
  } else if (key == "request.auth.principal") {
    term.attribute = Attribute::kRequestPrincipal;
  } else if (key.starts_with("request.auth.")) {
    term.attribute = Attribute::kRequestAuth;
  } else if (key == "destination.ip") {
    term.attribute = Attribute::kDestinationIp;
  } else if (key == "destination.port") {
    term.attribute = Attribute::kPort;
  } else if (key == "connection.sni") {
    term.attribute = Attribute::kSni;
  }
  return term;
}

// RE2 syntax for a literal text, as regexp.QuoteMeta.
std::string QuoteRegex(const std::string& text) {
  std::string quoted;
  for (char c : text) {
    if (std::string_view("\\.+*?()|[]{}^$").find(c) != std::string_view::npos) quoted += '\\';
    quoted += c;
  }
  return quoted;
}

// Istio's StringMatcherWithPrefix: "*" is any non-empty value, "*x" a suffix, "x*" a prefix.
StringMatcher StringMatch(const std::string& value, const std::string& prefix = "") {
  StringMatcher matcher;
  if (value == "*") {
    matcher.mutable_safe_regex()->set_regex(".+");
  } else if (value.starts_with("*")) {
    if (prefix.empty()) {
      matcher.set_suffix(value.substr(1));
    } else {
      matcher.mutable_safe_regex()->set_regex(
          absl::StrCat(prefix, ".*", QuoteRegex(value.substr(1))));
    }
  } else if (value.ends_with("*")) {
    matcher.set_prefix(absl::StrCat(prefix, value.substr(0, value.size() - 1)));
  } else {
    matcher.set_exact(absl::StrCat(prefix, value));
  }
  return matcher;
}

// Istio's HeaderMatcher / HostMatcher ("*" present, "*x" suffix, "x*" prefix, else exact).
HeaderMatcher HeaderMatch(const std::string& name, const std::string& value, bool ignore_case,
                          const RbacTarget& target) {
  HeaderMatcher header;
  header.set_name(name);
  if (value == "*") {
    header.set_present_match(true);
    return header;
  }
  bool suffix = value.starts_with("*");
  bool prefix = !suffix && value.ends_with("*");
  std::string text = suffix ? value.substr(1) : prefix ? value.substr(0, value.size() - 1) : value;
  if (target.proxyless_grpc) {
    // No ignore_case in these forms; gRPC authorities are lower case in practice. They are
    // deprecated in Envoy's API, hence the pragma.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    if (suffix) {
      header.set_suffix_match(text);
    } else if (prefix) {
      header.set_prefix_match(text);
    } else {
      header.set_exact_match(text);
    }
#pragma GCC diagnostic pop
    return header;
  }
  StringMatcher* match = header.mutable_string_match();
  match->set_ignore_case(ignore_case);
  if (suffix) {
    match->set_suffix(text);
  } else if (prefix) {
    match->set_prefix(text);
  } else {
    match->set_exact(text);
  }
  return header;
}

void SetCidr(const std::string& block, envoy::config::core::v3::CidrRange* range) {
  size_t slash = block.find('/');
  uint32_t length = block.find(':') == std::string::npos ? 32 : 128;
  if (slash != std::string::npos) {
    uint32_t parsed = 0;
    if (absl::SimpleAtoi(block.substr(slash + 1), &parsed)) length = parsed;
  }
  range->set_address_prefix(block.substr(0, slash));
  range->mutable_prefix_len()->set_value(length);
}

// Principals of JWT attributes live in the metadata Istio's authn filter writes, which
// meshpilot does not run yet (no RequestAuthentication): such matchers never match.
envoy::type::matcher::v3::MetadataMatcher AuthnMetadata(const std::string& key,
                                                        const std::string& value) {
  envoy::type::matcher::v3::MetadataMatcher metadata;
  metadata.set_filter("istio_authn");
  metadata.add_path()->set_key(key);
  *metadata.mutable_value()->mutable_string_match() = StringMatch(value);
  return metadata;
}

Principal PrincipalFor(const Term& term, const std::string& value,
                       const std::string& policy_namespace, const RbacTarget& target) {
  Principal principal;
  switch (term.attribute) {
    case Attribute::kPrincipal:
      *principal.mutable_authenticated()->mutable_principal_name() =
          StringMatch(value, "spiffe://");
      break;
    case Attribute::kServiceAccount: {
      size_t slash = value.find('/');
      std::string ns = slash == std::string::npos ? policy_namespace : value.substr(0, slash);
      std::string name = slash == std::string::npos ? value : value.substr(slash + 1);
      principal.mutable_authenticated()->mutable_principal_name()->set_exact(
          absl::StrCat("spiffe://", std::string(kTrustDomain), "/ns/", ns, "/sa/", name));
      break;
    }
    case Attribute::kRequestPrincipal:
      *principal.mutable_metadata() = AuthnMetadata("request.auth.principal", value);
      break;
    case Attribute::kRequestAuth:
      *principal.mutable_metadata() = AuthnMetadata(term.key, value);
      break;
    case Attribute::kNamespace:
      principal.mutable_authenticated()->mutable_principal_name()->mutable_safe_regex()->set_regex(
          absl::StrCat(".*/ns/", absl::StrReplaceAll(value, {{"*", ".*"}}), "/.*"));
      break;
    case Attribute::kRemoteIp:
      SetCidr(value, principal.mutable_remote_ip());
      break;
    case Attribute::kSourceIp:
      SetCidr(value, principal.mutable_direct_remote_ip());
      break;
    case Attribute::kHeader:
      *principal.mutable_header() = HeaderMatch(term.key, value, false, target);
      break;
    default:
      break;
  }
  return principal;
}

Permission PermissionFor(const Term& term, const std::string& value, const RbacTarget& target) {
  Permission permission;
  switch (term.attribute) {
    case Attribute::kHost:
      *permission.mutable_header() = HeaderMatch(":authority", value, true, target);
      break;
    case Attribute::kMethod:
      *permission.mutable_header() = HeaderMatch(":method", value, false, target);
      break;
    case Attribute::kPath:
      *permission.mutable_url_path()->mutable_path() = StringMatch(value);
      break;
    case Attribute::kPort: {
      uint32_t port = 0;
      (void)absl::SimpleAtoi(value, &port);  // validated by convert/
      permission.set_destination_port(port);
      break;
    }
    case Attribute::kDestinationIp:
      SetCidr(value, permission.mutable_destination_ip());
      break;
    case Attribute::kSni:
      *permission.mutable_requested_server_name() = StringMatch(value);
      break;
    default:
      break;
  }
  return permission;
}

// The AND of the terms of one source (or operation), each term the OR of its values and the
// NOT of the OR of its not-values; `any` when nothing is left. Returns false when the rule
// must be dropped (an ALLOW rule with a term the target cannot evaluate).
bool AppendPrincipal(const std::vector<Term>& terms, const std::string& policy_namespace,
                     bool allow, const RbacTarget& target, Policy& policy) {
  Principal all;
  auto* ids = all.mutable_and_ids();
  for (const Term& term : terms) {
    if ((target.tcp && IsHttpOnly(term.attribute)) || term.attribute == Attribute::kUnsupported) {
      if (allow) return false;
      continue;  // DENY: the term is ignored, so the rule matches more.
    }
    for (bool negated : {false, true}) {
      const std::vector<std::string>& values = negated ? *term.not_values : *term.values;
      if (values.empty()) continue;
      Principal any_of;
      for (const std::string& value : values) {
        *any_of.mutable_or_ids()->add_ids() = PrincipalFor(term, value, policy_namespace, target);
      }
      if (negated) {
        *ids->add_ids()->mutable_not_id() = std::move(any_of);
      } else {
        *ids->add_ids() = std::move(any_of);
      }
    }
  }
  if (ids->ids().empty()) ids->add_ids()->set_any(true);
  *policy.add_principals() = std::move(all);
  return true;
}

bool AppendPermission(const std::vector<Term>& terms, bool allow, const RbacTarget& target,
                      Policy& policy) {
  Permission all;
  auto* rules = all.mutable_and_rules();
  for (const Term& term : terms) {
    if ((target.tcp && IsHttpOnly(term.attribute)) || term.attribute == Attribute::kUnsupported) {
      if (allow) return false;
      continue;
    }
    for (bool negated : {false, true}) {
      const std::vector<std::string>& values = negated ? *term.not_values : *term.values;
      if (values.empty()) continue;
      Permission any_of;
      for (const std::string& value : values) {
        *any_of.mutable_or_rules()->add_rules() = PermissionFor(term, value, target);
      }
      if (negated) {
        *rules->add_rules()->mutable_not_rule() = std::move(any_of);
      } else {
        *rules->add_rules() = std::move(any_of);
      }
    }
  }
  if (rules->rules().empty()) rules->add_rules()->set_any(true);
  *policy.add_permissions() = std::move(all);
  return true;
}

void AddTerm(std::vector<Term>& terms, Attribute attribute, const std::vector<std::string>& values,
             const std::vector<std::string>& not_values) {
  if (values.empty() && not_values.empty()) return;
  terms.push_back(Term{attribute, "", &values, &not_values});
}

std::string PolicyRuleName(const model::AuthorizationPolicy& policy, size_t index) {
  return absl::StrCat("ns[", policy.meta.namespace_, "]-policy[", policy.meta.name, "]-rule[",
                      index, "]");
}

}  // namespace

bool HasHttpOnlyFields(const model::AuthorizationRule& rule) {
  for (const auto& from : rule.from) {
    if (!from.request_principals.empty() || !from.not_request_principals.empty()) return true;
  }
  for (const auto& to : rule.to) {
    if (!to.hosts.empty() || !to.not_hosts.empty() || !to.methods.empty() ||
        !to.not_methods.empty() || !to.paths.empty() || !to.not_paths.empty()) {
      return true;
    }
  }
  for (const auto& condition : rule.when) {
    if (IsHttpOnly(ConditionTerm(condition).attribute)) return true;
  }
  return false;
}

std::optional<Policy> RulePolicy(const model::AuthorizationRule& rule,
                                 const std::string& policy_namespace, RBAC::Action action,
                                 const RbacTarget& target) {
  const bool allow = action == RBAC::ALLOW;
  // `when` conditions join every source (principal side) or every operation (permission side).
  std::vector<Term> base_principal, base_permission;
  for (const model::AuthorizationCondition& condition : rule.when) {
    Term term = ConditionTerm(condition);
    (IsPrincipalSide(term.attribute) ? base_principal : base_permission).push_back(term);
  }

  Policy policy;
  auto append_principal = [&](const model::AuthorizationSource* source) {
    std::vector<Term> terms;
    if (source != nullptr) {  // Istio's order: identities first, addresses last.
      AddTerm(terms, Attribute::kPrincipal, source->principals, source->not_principals);
      AddTerm(terms, Attribute::kServiceAccount, source->service_accounts,
              source->not_service_accounts);
      AddTerm(terms, Attribute::kRequestPrincipal, source->request_principals,
              source->not_request_principals);
      AddTerm(terms, Attribute::kNamespace, source->namespaces, source->not_namespaces);
      AddTerm(terms, Attribute::kRemoteIp, source->remote_ip_blocks, source->not_remote_ip_blocks);
      AddTerm(terms, Attribute::kSourceIp, source->ip_blocks, source->not_ip_blocks);
    }
    terms.insert(terms.end(), base_principal.begin(), base_principal.end());
    return AppendPrincipal(terms, policy_namespace, allow, target, policy);
  };
  auto append_permission = [&](const model::AuthorizationOperation* operation) {
    std::vector<Term> terms;
    if (operation != nullptr) {
      AddTerm(terms, Attribute::kHost, operation->hosts, operation->not_hosts);
      AddTerm(terms, Attribute::kMethod, operation->methods, operation->not_methods);
      AddTerm(terms, Attribute::kPath, operation->paths, operation->not_paths);
      AddTerm(terms, Attribute::kPort, operation->ports, operation->not_ports);
    }
    terms.insert(terms.end(), base_permission.begin(), base_permission.end());
    return AppendPermission(terms, allow, target, policy);
  };

  if (rule.from.empty() && !append_principal(nullptr)) return std::nullopt;
  for (const model::AuthorizationSource& source : rule.from) {
    if (!append_principal(&source)) return std::nullopt;
  }
  if (rule.to.empty() && !append_permission(nullptr)) return std::nullopt;
  for (const model::AuthorizationOperation& operation : rule.to) {
    if (!append_permission(&operation)) return std::nullopt;
  }
  return policy;
}

RBAC BuildRbac(const std::vector<const model::AuthorizationPolicy*>& policies,
               RBAC::Action action, const RbacTarget& target) {
  RBAC rbac;
  rbac.set_action(action);
  for (const model::AuthorizationPolicy* policy : policies) {
    for (size_t i = 0; i < policy->rules.size(); ++i) {
      std::optional<Policy> generated =
          RulePolicy(policy->rules[i], policy->meta.namespace_, action, target);
      if (generated) (*rbac.mutable_policies())[PolicyRuleName(*policy, i)] = *generated;
    }
  }
  return rbac;
}

namespace {

// Any::PackFrom serializes map fields (RBAC.policies) in hash order, which differs between
// processes; versions are content hashes, so the policies are packed sorted.
void PackDeterministic(const google::protobuf::Message& message, google::protobuf::Any* any) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  any->set_type_url(
      absl::StrCat("type.googleapis.com/", std::string(message.GetDescriptor()->full_name())));
  any->set_value(std::move(bytes));
}

// The (name, action, policies) of each RBAC filter, in evaluation order.
struct RbacStage {
  std::string_view name_suffix;
  RBAC::Action action;
  const std::vector<const model::AuthorizationPolicy*>* policies;
};

std::vector<RbacStage> Stages(const SelectedPolicies& policies) {
  std::vector<RbacStage> stages;
  if (!policies.custom.empty()) stages.push_back({"custom", RBAC::DENY, &policies.custom});
  if (!policies.deny.empty()) stages.push_back({"deny", RBAC::DENY, &policies.deny});
  if (!policies.allow.empty()) stages.push_back({"allow", RBAC::ALLOW, &policies.allow});
  return stages;
}

}  // namespace

std::vector<envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter>
RbacHttpFilters(const SelectedPolicies& policies, bool proxyless_grpc) {
  std::vector<envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter>
      filters;
  RbacTarget target{.tcp = false, .proxyless_grpc = proxyless_grpc};
  for (const RbacStage& stage : Stages(policies)) {
    envoy::extensions::filters::http::rbac::v3::RBAC config;
    *config.mutable_rules() = BuildRbac(*stage.policies, stage.action, target);
    auto& filter = filters.emplace_back();
    // Envoy takes repeated names (istiod names all of them so); gRPC rejects duplicates.
    filter.set_name(proxyless_grpc ? absl::StrCat(std::string(kHttpRbacFilter), ".", std::string(stage.name_suffix))
                                   : std::string(kHttpRbacFilter));
    PackDeterministic(config, filter.mutable_typed_config());
  }
  return filters;
}

std::vector<envoy::config::listener::v3::Filter> RbacNetworkFilters(
    const SelectedPolicies& policies) {
  std::vector<envoy::config::listener::v3::Filter> filters;
  RbacTarget target{.tcp = true, .proxyless_grpc = false};
  for (const RbacStage& stage : Stages(policies)) {
    envoy::extensions::filters::network::rbac::v3::RBAC config;
    *config.mutable_rules() = BuildRbac(*stage.policies, stage.action, target);
    config.set_stat_prefix("tcp.");
    auto& filter = filters.emplace_back();
    filter.set_name(std::string(kNetworkRbacFilter));
    PackDeterministic(config, filter.mutable_typed_config());
  }
  return filters;
}

}  // namespace meshpilot::translator
