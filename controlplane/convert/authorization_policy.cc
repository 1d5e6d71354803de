#include "controlplane/convert/authorization_policy.h"

#include <utility>

#include "absl/algorithm/container.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "controlplane/convert/validation.h"

namespace meshpilot::convert {
namespace {

using model::AuthorizationPolicy;
using Validator = absl::Status (*)(absl::string_view);

absl::Status ValidatePortString(absl::string_view port) {
  int number = 0;
  if (!absl::SimpleAtoi(port, &number) || number < 1 || number > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", port, "\" is not a port number between 1 and 65535"));
  }
  return absl::OkStatus();
}

absl::Status ValidateIpBlock(absl::string_view block) { return ValidateIp(block, true); }

// Reads a list of values, none of them empty, each passing `validate` if given.
std::vector<std::string> ReadValues(MapReader& reader, absl::string_view key,
                                    Validator validate = nullptr) {
  std::vector<std::string> values = reader.StringList(key);
  for (size_t i = 0; i < values.size(); ++i) {
    std::string field = absl::StrCat(key, "[", i, "]");
    if (values[i].empty()) {
      reader.FieldError(field, "must not be empty");
    } else if (validate != nullptr) {
      reader.CheckField(field, validate(values[i]));
    }
  }
  return values;
}

// A condition key names an attribute; Istio knows these, some of them with a [name] suffix.
absl::Status ValidateConditionKey(absl::string_view key) {
  static constexpr absl::string_view kPlain[] = {
      "source.ip", "remote.ip", "source.namespace",
      "source.principal", "source.serviceAccount", "request.auth.principal",
      "request.auth.audiences", "request.auth.presenter", "destination.ip",
      "destination.port", "connection.sni"};
  if (absl::c_linear_search(kPlain, key)) return absl::OkStatus();
  for (absl::string_view prefix : {"request.headers", "request.auth.claims"}) {
    if (absl::StartsWith(key, prefix)) {
      absl::string_view rest = key.substr(prefix.size());
      if (rest.size() > 2 && rest.front() == '[' && rest.back() == ']') return absl::OkStatus();
      return absl::InvalidArgumentError(
          absl::StrCat("\"", key, "\" must name an entry, as in ", prefix, "[name]"));
    }
  }
  if (absl::StartsWith(key, "experimental.envoy.filters.")) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("unknown attribute \"", key, "\""));
}

// Values of some attributes have a format of their own.
Validator ConditionValueValidator(absl::string_view key) {
  if (key == "source.ip" || key == "remote.ip" || key == "destination.ip") return ValidateIpBlock;
  if (key == "destination.port") return ValidatePortString;
  return nullptr;
}

model::AuthorizationSource ReadSource(MapReader& reader) {
  model::AuthorizationSource source;
  source.principals = ReadValues(reader, "principals");
  source.not_principals = ReadValues(reader, "notPrincipals");
  source.request_principals = ReadValues(reader, "requestPrincipals");
  source.not_request_principals = ReadValues(reader, "notRequestPrincipals");
  source.namespaces = ReadValues(reader, "namespaces");
  source.not_namespaces = ReadValues(reader, "notNamespaces");
  source.ip_blocks = ReadValues(reader, "ipBlocks", ValidateIpBlock);
  source.not_ip_blocks = ReadValues(reader, "notIpBlocks", ValidateIpBlock);
  source.remote_ip_blocks = ReadValues(reader, "remoteIpBlocks", ValidateIpBlock);
  source.not_remote_ip_blocks = ReadValues(reader, "notRemoteIpBlocks", ValidateIpBlock);
  source.service_accounts = ReadValues(reader, "serviceAccounts");
  source.not_service_accounts = ReadValues(reader, "notServiceAccounts");
  bool by_account = !source.service_accounts.empty() || !source.not_service_accounts.empty();
  bool by_identity = !source.principals.empty() || !source.not_principals.empty() ||
                     !source.namespaces.empty() || !source.not_namespaces.empty();
  if (by_account && by_identity) {
    reader.Error("serviceAccounts cannot be set with principals or namespaces");
  }
  if (!by_account && !by_identity && source.request_principals.empty() &&
      source.not_request_principals.empty() && source.ip_blocks.empty() &&
      source.not_ip_blocks.empty() && source.remote_ip_blocks.empty() &&
      source.not_remote_ip_blocks.empty()) {
    reader.Error("must not be empty");
  }
  return source;
}

model::AuthorizationOperation ReadOperation(MapReader& reader) {
  model::AuthorizationOperation operation;
  operation.hosts = ReadValues(reader, "hosts");
  operation.not_hosts = ReadValues(reader, "notHosts");
  operation.ports = ReadValues(reader, "ports", ValidatePortString);
  operation.not_ports = ReadValues(reader, "notPorts", ValidatePortString);
  operation.methods = ReadValues(reader, "methods");
  operation.not_methods = ReadValues(reader, "notMethods");
  operation.paths = ReadValues(reader, "paths");
  operation.not_paths = ReadValues(reader, "notPaths");
  if (operation.hosts.empty() && operation.not_hosts.empty() && operation.ports.empty() &&
      operation.not_ports.empty() && operation.methods.empty() && operation.not_methods.empty() &&
      operation.paths.empty() && operation.not_paths.empty()) {
    reader.Error("must not be empty");
  }
  return operation;
}

model::AuthorizationRule ReadRule(MapReader& reader) {
  model::AuthorizationRule rule;
  // `from: []` is a mistake rather than "any source": Istio rejects it, as it does `to: []`.
  for (absl::string_view key : {"from", "to"}) {
    YAML::Node list = reader.Raw(key);
    if (list.IsDefined() && list.IsSequence() && list.size() == 0) {
      reader.FieldError(key, "must not be empty");
    }
  }
  for (MapReader& item : reader.Items("from")) {
    if (std::optional<MapReader> source = item.Map("source")) {
      rule.from.push_back(ReadSource(*source));
    } else {
      item.FieldError("source", "required");
    }
  }
  for (MapReader& item : reader.Items("to")) {
    if (std::optional<MapReader> operation = item.Map("operation")) {
      rule.to.push_back(ReadOperation(*operation));
    } else {
      item.FieldError("operation", "required");
    }
  }
  for (MapReader& item : reader.Items("when")) {
    model::AuthorizationCondition& condition = rule.when.emplace_back();
    condition.key = item.RequiredString("key");
    if (!condition.key.empty()) item.CheckField("key", ValidateConditionKey(condition.key));
    Validator validate = ConditionValueValidator(condition.key);
    condition.values = ReadValues(item, "values", validate);
    condition.not_values = ReadValues(item, "notValues", validate);
    if (condition.values.empty() && condition.not_values.empty()) {
      item.Error("one of values or notValues is required");
    }
  }
  return rule;
}

model::PolicyTargetReference ReadTargetRef(MapReader& reader) {
  model::PolicyTargetReference ref;
  ref.group = reader.String("group").value_or("");
  ref.kind = reader.RequiredString("kind");
  ref.name = reader.RequiredString("name");
  ref.namespace_ = reader.String("namespace").value_or("");
  if (!ref.namespace_.empty()) {
    reader.FieldError("namespace", "must not be set: policies cannot target other namespaces");
  }
  bool allowed = (ref.group.empty() && ref.kind == "Service") ||
                 (ref.group == "networking.istio.io" && ref.kind == "ServiceEntry") ||
                 (ref.group == "gateway.networking.k8s.io" &&
                  (ref.kind == "Gateway" || ref.kind == "GatewayClass"));
  if (!allowed && !ref.kind.empty()) {
    reader.Error("must target a Service, ServiceEntry, Gateway or GatewayClass");
  }
  return ref;
}

}  // namespace

model::AuthorizationPolicy ReadAuthorizationPolicy(MapReader& object, model::ObjectMeta meta) {
  AuthorizationPolicy policy;
  policy.meta = std::move(meta);
  MapReader spec = object.Child("spec", /*strict=*/true);

  if (std::optional<MapReader> selector = spec.Map("selector")) {
    policy.selector = ReadSelectorLabels(*selector, "matchLabels");
  }
  if (std::optional<MapReader> ref = spec.Map("targetRef")) policy.target_ref = ReadTargetRef(*ref);
  for (MapReader& ref : spec.Items("targetRefs")) policy.target_refs.push_back(ReadTargetRef(ref));
  int selectors = policy.selector.has_value() + policy.target_ref.has_value() +
                  !policy.target_refs.empty();
  if (selectors > 1) {
    spec.Error("only one of selector, targetRef or targetRefs may be set");
  }

  policy.action = spec
                      .Enumerator<AuthorizationPolicy::Action>(
                          "action", {{"ALLOW", AuthorizationPolicy::Action::kAllow},
                                     {"DENY", AuthorizationPolicy::Action::kDeny},
                                     {"AUDIT", AuthorizationPolicy::Action::kAudit},
                                     {"CUSTOM", AuthorizationPolicy::Action::kCustom}})
                      .value_or(AuthorizationPolicy::Action::kAllow);
  if (std::optional<MapReader> provider = spec.Map("provider")) {
    policy.provider = provider->String("name").value_or("");
    if (policy.action != AuthorizationPolicy::Action::kCustom) {
      spec.FieldError("provider", "only allowed with action CUSTOM");
    }
  }
  for (MapReader& rule : spec.Items("rules")) policy.rules.push_back(ReadRule(rule));

  // Without rules, DENY and CUSTOM policies would never trigger: surely a mistake.
  bool deny_or_custom = policy.action == AuthorizationPolicy::Action::kDeny ||
                        policy.action == AuthorizationPolicy::Action::kCustom;
  if (policy.rules.empty() && deny_or_custom) {
    spec.FieldError("rules", "required for DENY and CUSTOM, which never trigger without rules; "
                             "an empty rule {} matches every request");
  }
  if (policy.action == AuthorizationPolicy::Action::kCustom && policy.provider.empty()) {
    spec.FieldError("provider.name", "required for action CUSTOM");
  }
  return policy;
}

}  // namespace meshpilot::convert
