#include "sidecar/filters/rbac.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "envoy/extensions/filters/http/rbac/v3/rbac.pb.h"
#include "envoy/extensions/filters/network/rbac/v3/rbac.pb.h"
#include "sidecar/config/tls.h"

namespace meshpilot::sidecar::filters {
namespace {

namespace rbac_v3 = envoy::config::rbac::v3;
using Kind = RbacMatcher::Kind;

absl::Status Invalid(const std::string& field, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", message));
}

// A PathMatcher: the request's path without its query.
absl::StatusOr<RbacMatcher> ParseUrlPathLeaf(const envoy::type::matcher::v3::PathMatcher& proto,
                                             const std::string& field) {
  if (!proto.has_path()) return Invalid(absl::StrCat(field, ".path"), "missing");
  auto path = config::ParseStringMatch(proto.path(), absl::StrCat(field, ".path"));
  if (!path.ok()) return path.status();
  RbacMatcher m;
  m.kind = RbacMatcher::Kind::kUrlPath;
  m.string = *std::move(path);
  return m;
}

// and/or over a Permission::Set or Principal::Set, with `parse` for their members.
template <typename Proto, typename ParseFn>
absl::StatusOr<RbacMatcher> ParseSet(RbacMatcher::Kind kind,
                                     const google::protobuf::RepeatedPtrField<Proto>& protos,
                                     const std::string& field, ParseFn parse) {
  if (protos.empty()) return Invalid(field, "empty set");
  RbacMatcher m;
  m.kind = kind;
  for (int i = 0; i < protos.size(); ++i) {
    auto child = parse(protos[i], absl::StrCat(field, "[", i, "]"));
    if (!child.ok()) return child.status();
    m.children.push_back(*std::move(child));
  }
  return m;
}

template <typename Proto, typename ParseFn>
absl::StatusOr<RbacMatcher> ParseNot(const Proto& proto, const std::string& field, ParseFn parse) {
  auto child = parse(proto, field);
  if (!child.ok()) return child.status();
  RbacMatcher m;
  m.kind = Kind::kNot;
  m.children.push_back(*std::move(child));
  return m;
}

absl::StatusOr<RbacMatcher> ParseHeaderLeaf(const envoy::config::route::v3::HeaderMatcher& proto,
                                            const std::string& field) {
  RbacMatcher m;
  m.kind = Kind::kHeader;
  auto header = config::ParseHeaderMatcher(proto, field);
  if (!header.ok()) return header.status();
  m.header = *std::move(header);
  return m;
}

absl::StatusOr<RbacMatcher> ParseMetadataLeaf(
    const envoy::type::matcher::v3::MetadataMatcher& proto, const std::string& field) {
  if (proto.filter().empty()) return Invalid(absl::StrCat(field, ".filter"), "empty");
  RbacMatcher m;
  m.kind = Kind::kMetadata;
  m.invert = proto.invert();
  return m;
}

absl::StatusOr<RbacMatcher> ParseStringLeaf(Kind kind,
                                            const envoy::type::matcher::v3::StringMatcher& proto,
                                            const std::string& field) {
  RbacMatcher m;
  m.kind = kind;
  auto string = config::ParseStringMatch(proto, field);
  if (!string.ok()) return string.status();
  m.string = *std::move(string);
  return m;
}

absl::StatusOr<RbacMatcher> ParseCidrLeaf(Kind kind,
                                          const envoy::config::core::v3::CidrRange& proto,
                                          const std::string& field) {
  RbacMatcher m;
  m.kind = kind;
  auto cidr = config::ParseCidr(proto, field);
  if (!cidr.ok()) return cidr.status();
  m.cidr = *cidr;
  return m;
}

absl::StatusOr<RbacMatcher> ParsePermission(const rbac_v3::Permission& proto,
                                            const std::string& field) {
  using P = rbac_v3::Permission;
  RbacMatcher m;
  switch (proto.rule_case()) {
    case P::kAny:
      if (!proto.any()) return Invalid(absl::StrCat(field, ".any"), "must be true");
      return m;
    case P::kAndRules:
      return ParseSet(Kind::kAnd, proto.and_rules().rules(),
                      absl::StrCat(field, ".and_rules.rules"), ParsePermission);
    case P::kOrRules:
      return ParseSet(Kind::kOr, proto.or_rules().rules(), absl::StrCat(field, ".or_rules.rules"),
                      ParsePermission);
    case P::kNotRule:
      return ParseNot(proto.not_rule(), absl::StrCat(field, ".not_rule"), ParsePermission);
    case P::kHeader:
      return ParseHeaderLeaf(proto.header(), absl::StrCat(field, ".header"));
    case P::kUrlPath:
      return ParseUrlPathLeaf(proto.url_path(), absl::StrCat(field, ".url_path"));
    case P::kDestinationIp:
      return ParseCidrLeaf(Kind::kDestinationIp, proto.destination_ip(),
                           absl::StrCat(field, ".destination_ip"));
    case P::kDestinationPort:
      if (proto.destination_port() > 65535) {
        return Invalid(absl::StrCat(field, ".destination_port"), "must be <= 65535");
      }
      m.kind = Kind::kDestinationPortRange;
      m.port_first = m.port_last = proto.destination_port();
      return m;
    case P::kDestinationPortRange: {
      const auto& range = proto.destination_port_range();
      // Int32Range is half-open: [start, end).
      if (range.start() < 0 || range.end() > 65536 || range.start() >= range.end()) {
        return Invalid(absl::StrCat(field, ".destination_port_range"),
                       absl::StrCat("[", range.start(), ", ", range.end(),
                                    ") is not a non-empty range of ports"));
      }
      m.kind = Kind::kDestinationPortRange;
      m.port_first = static_cast<uint32_t>(range.start());
      m.port_last = static_cast<uint32_t>(range.end() - 1);
      return m;
    }
    case P::kRequestedServerName:
      return ParseStringLeaf(Kind::kServerName, proto.requested_server_name(),
                             absl::StrCat(field, ".requested_server_name"));
    case P::kMetadata:
      return ParseMetadataLeaf(proto.metadata(), absl::StrCat(field, ".metadata"));
    case P::kMatcher:
    case P::kUriTemplate:
      return Invalid(field, "unsupported permission (matcher, uri_template)");
    case P::RULE_NOT_SET:
      break;
  }
  return Invalid(field, "no rule set");
}

absl::StatusOr<RbacMatcher> ParsePrincipal(const rbac_v3::Principal& proto,
                                           const std::string& field) {
  using P = rbac_v3::Principal;
  RbacMatcher m;
  switch (proto.identifier_case()) {
    case P::kAny:
      if (!proto.any()) return Invalid(absl::StrCat(field, ".any"), "must be true");
      return m;
    case P::kAndIds:
      return ParseSet(Kind::kAnd, proto.and_ids().ids(), absl::StrCat(field, ".and_ids.ids"),
                      ParsePrincipal);
    case P::kOrIds:
      return ParseSet(Kind::kOr, proto.or_ids().ids(), absl::StrCat(field, ".or_ids.ids"),
                      ParsePrincipal);
    case P::kNotId:
      return ParseNot(proto.not_id(), absl::StrCat(field, ".not_id"), ParsePrincipal);
    case P::kAuthenticated:
      m.kind = Kind::kAuthenticated;
      if (proto.authenticated().has_principal_name()) {
        auto name = config::ParseStringMatch(proto.authenticated().principal_name(),
                                             absl::StrCat(field, ".authenticated.principal_name"));
        if (!name.ok()) return name.status();
        m.string = *std::move(name);
      }
      return m;
    case P::kSourceIp:
      // Deprecated; Envoy treats it as direct_remote_ip.
      return ParseCidrLeaf(Kind::kDirectRemoteIp, proto.source_ip(),
                           absl::StrCat(field, ".source_ip"));
    case P::kDirectRemoteIp:
      return ParseCidrLeaf(Kind::kDirectRemoteIp, proto.direct_remote_ip(),
                           absl::StrCat(field, ".direct_remote_ip"));
    case P::kRemoteIp:
      return ParseCidrLeaf(Kind::kRemoteIp, proto.remote_ip(), absl::StrCat(field, ".remote_ip"));
    case P::kHeader:
      return ParseHeaderLeaf(proto.header(), absl::StrCat(field, ".header"));
    case P::kUrlPath:
      return ParseUrlPathLeaf(proto.url_path(), absl::StrCat(field, ".url_path"));
    case P::kMetadata:
      return ParseMetadataLeaf(proto.metadata(), absl::StrCat(field, ".metadata"));
    case P::kFilterState:
      return Invalid(field, "unsupported principal (filter_state)");
    case P::IDENTIFIER_NOT_SET:
      break;
  }
  return Invalid(field, "no identifier set");
}

bool Matches(const RbacMatcher& m, const RbacRequest& request) {
  switch (m.kind) {
    case Kind::kAny:
      return true;
    case Kind::kAnd:
      for (const RbacMatcher& child : m.children) {
        if (!Matches(child, request)) return false;
      }
      return true;
    case Kind::kOr:
      for (const RbacMatcher& child : m.children) {
        if (Matches(child, request)) return true;
      }
      return false;
    case Kind::kNot:
      return !Matches(m.children.front(), request);
    case Kind::kHeader:
      return request.headers && router::HeaderMatches(m.header, *request.headers);
    case Kind::kUrlPath:
      return request.headers && m.string->Matches(request.path);
    case Kind::kDestinationIp:
      return m.cidr.Contains(request.destination.address());
    case Kind::kDestinationPortRange: {
      const uint32_t port = request.destination.port();
      return port >= m.port_first && port <= m.port_last;
    }
    case Kind::kServerName:
      return m.string->Matches(request.server_name);
    case Kind::kAuthenticated: {
      // As Envoy: any TLS session is authenticated; without a certificate the principal is
      // an empty subject.
      if (!request.tls_terminated) return false;
      if (!m.string) return true;
      const config::PeerCertificate* peer = request.peer_certificate;
      if (peer == nullptr) return m.string->Matches("");
      for (const std::string& uri : peer->uri_sans) {
        if (m.string->Matches(uri)) return true;
      }
      for (const std::string& dns : peer->dns_sans) {
        if (m.string->Matches(dns)) return true;
      }
      return m.string->Matches(peer->subject);
    }
    case Kind::kDirectRemoteIp:
    case Kind::kRemoteIp:
      return m.cidr.Contains(request.remote.address());
    case Kind::kMetadata:
      return m.invert;  // no dynamic metadata: the value is absent
  }
  return false;
}

bool AnyMatches(const std::vector<RbacMatcher>& matchers, const RbacRequest& request) {
  for (const RbacMatcher& m : matchers) {
    if (Matches(m, request)) return true;
  }
  return false;
}

template <typename FilterProto>
absl::StatusOr<FilterProto> Unpack(const google::protobuf::Any& any, const std::string& field) {
  FilterProto proto;
  if (!any.UnpackTo(&proto)) {
    return Invalid(field, absl::StrCat("cannot unpack as ", FilterProto::descriptor()->full_name()));
  }
  return proto;
}

}  // namespace

RbacFilter::Decision RbacFilter::Evaluate(const RbacRequest& request) const {
  if (!enabled_) return {};
  for (const RbacPolicy& policy : policies_) {
    if (AnyMatches(policy.permissions, request) && AnyMatches(policy.principals, request)) {
      return {action_ != Action::kDeny, policy.name};
    }
  }
  return {action_ != Action::kAllow, {}};
}

absl::StatusOr<std::shared_ptr<const RbacFilter>> RbacFilter::Build(
    const rbac_v3::RBAC* rules, const std::string& field) {
  auto filter = std::make_shared<RbacFilter>();
  if (rules == nullptr) return std::shared_ptr<const RbacFilter>(std::move(filter));
  filter->enabled_ = true;
  switch (rules->action()) {
    case rbac_v3::RBAC::ALLOW:
      filter->action_ = Action::kAllow;
      break;
    case rbac_v3::RBAC::DENY:
      filter->action_ = Action::kDeny;
      break;
    case rbac_v3::RBAC::LOG:
      filter->action_ = Action::kLog;
      break;
    default:
      return Invalid(absl::StrCat(field, ".rules.action"), "unknown action");
  }
  // Envoy keeps policies in a map: evaluate them in name order, so the reported policy is stable.
  std::vector<std::string> names;
  for (const auto& [name, unused] : rules->policies()) names.push_back(name);
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    const rbac_v3::Policy& proto = rules->policies().at(name);
    const std::string pf = absl::StrCat(field, ".rules.policies[\"", name, "\"]");
    if (proto.has_condition() || proto.has_checked_condition()) {
      return Invalid(pf, "CEL conditions are not supported");
    }
    RbacPolicy policy;
    policy.name = name;
    for (int i = 0; i < proto.permissions_size(); ++i) {
      auto m = ParsePermission(proto.permissions(i), absl::StrCat(pf, ".permissions[", i, "]"));
      if (!m.ok()) return m.status();
      policy.permissions.push_back(*std::move(m));
    }
    for (int i = 0; i < proto.principals_size(); ++i) {
      auto m = ParsePrincipal(proto.principals(i), absl::StrCat(pf, ".principals[", i, "]"));
      if (!m.ok()) return m.status();
      policy.principals.push_back(*std::move(m));
    }
    filter->policies_.push_back(std::move(policy));
  }
  return std::shared_ptr<const RbacFilter>(std::move(filter));
}

absl::StatusOr<std::shared_ptr<const RbacFilter>> RbacFilter::ParseHttp(
    const google::protobuf::Any& typed_config, const std::string& field) {
  auto proto =
      Unpack<envoy::extensions::filters::http::rbac::v3::RBAC>(typed_config, field);
  if (!proto.ok()) return proto.status();
  if (proto->has_matcher()) {
    return Invalid(absl::StrCat(field, ".matcher"), "the matcher API is not supported");
  }
  return Build(proto->has_rules() ? &proto->rules() : nullptr, field);
}

absl::StatusOr<std::shared_ptr<const RbacFilter>> RbacFilter::ParseNetwork(
    const google::protobuf::Any& typed_config, const std::string& field) {
  auto proto =
      Unpack<envoy::extensions::filters::network::rbac::v3::RBAC>(typed_config, field);
  if (!proto.ok()) return proto.status();
  if (proto->has_matcher()) {
    return Invalid(absl::StrCat(field, ".matcher"), "the matcher API is not supported");
  }
  return Build(proto->has_rules() ? &proto->rules() : nullptr, field);
}

}  // namespace meshpilot::sidecar::filters
