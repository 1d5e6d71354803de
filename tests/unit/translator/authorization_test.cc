// AuthorizationPolicy as Istio translates it: which policies select a workload, the inbound
// listeners that carry them, and the field-by-field mapping to Envoy RBAC.

#include <catch2/catch.hpp>

#include "envoy/extensions/filters/http/rbac/v3/rbac.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "envoy/extensions/filters/network/rbac/v3/rbac.pb.h"
#include "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.pb.h"
#include "tests/testing/mesh_builder.h"
#include "translator/authorization.h"
#include "translator/inbound.h"
#include "translator/rbac.h"
#include "translator/translate.h"

namespace meshpilot::translator {
namespace {

using envoy::config::listener::v3::Listener;
using envoy::config::rbac::v3::RBAC;
using envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
using model::AuthorizationPolicy;
using model::Protocol;
using Action = model::AuthorizationPolicy::Action;

constexpr char kPodIp[] = "10.0.0.5";

ProxyInfo Workload(bool grpc = false, std::map<std::string, std::string> labels = {{"app", "web"}},
                   const std::string& ns = "default", const std::string& ip = kPodIp) {
  envoy::config::core::v3::Node node;
  node.set_id("sidecar~" + ip + "~web-1." + ns + "~" + ns + ".svc.cluster.local");
  auto& metadata = *node.mutable_metadata()->mutable_fields();
  if (grpc) metadata["GENERATOR"].set_string_value("grpc");
  for (const auto& [key, value] : labels) {
    (*metadata["LABELS"].mutable_struct_value()->mutable_fields())[key].set_string_value(value);
  }
  return *ParseProxyInfo(node);
}

// `web` (HTTP 8000 -> 8080) and `db` (TCP 5432) both served by the pod at kPodIp; `other`
// (HTTP 9080) by another pod.
model::MeshState Mesh() {
  model::MeshState state;
  testing::AddService(state,
                      testing::MakeService("default", "web", "10.96.0.1",
                                           {testing::MakePort("http", 8000, Protocol::kHttp, 8080)}),
                      {testing::MakeEndpoint(kPodIp, 8080, "http"),
                       testing::MakeEndpoint("10.0.0.6", 8080, "http")});
  testing::AddService(state,
                      testing::MakeService("default", "db", "10.96.0.2",
                                           {testing::MakePort("tcp-pg", 5432, Protocol::kTcp)}),
                      {testing::MakeEndpoint(kPodIp, 5432, "tcp-pg")});
  testing::AddService(state,
                      testing::MakeService("default", "other", "10.96.0.3",
                                           {testing::MakePort("http", 9080, Protocol::kHttp)}),
                      {testing::MakeEndpoint("10.0.0.6", 9080, "http")});
  return state;
}

AuthorizationPolicy& AddPolicy(model::MeshState& state, const std::string& ns,
                               const std::string& name, Action action,
                               std::vector<model::AuthorizationRule> rules = {{}}) {
  AuthorizationPolicy& policy = state.authorization_policies[ns + "/" + name];
  policy.meta.namespace_ = ns;
  policy.meta.name = name;
  policy.action = action;
  policy.rules = std::move(rules);
  return policy;
}

Listener VirtualInbound(const model::MeshState& state, const ProxyInfo& proxy) {
  for (const Listener& listener : TranslateWorkload(state, proxy).listeners) {
    if (listener.name() == "virtualInbound") return listener;
  }
  FAIL("no virtualInbound");
  return {};
}

const envoy::config::listener::v3::FilterChain* ChainForPort(const Listener& listener,
                                                             uint32_t port) {
  for (const auto& chain : listener.filter_chains()) {
    if (chain.filter_chain_match().destination_port().value() == port) return &chain;
  }
  return nullptr;
}

HttpConnectionManager HcmOf(const envoy::config::listener::v3::FilterChain& chain) {
  HttpConnectionManager hcm;
  REQUIRE(chain.filters(chain.filters_size() - 1).typed_config().UnpackTo(&hcm));
  return hcm;
}

// The RBAC configs of an HCM's filters, in order, with the filter names.
std::vector<std::pair<std::string, RBAC>> HttpRbacs(const HttpConnectionManager& hcm) {
  std::vector<std::pair<std::string, RBAC>> rbacs;
  for (const auto& filter : hcm.http_filters()) {
    envoy::extensions::filters::http::rbac::v3::RBAC config;
    if (filter.typed_config().UnpackTo(&config)) rbacs.emplace_back(filter.name(), config.rules());
  }
  return rbacs;
}

std::vector<RBAC> NetworkRbacs(const envoy::config::listener::v3::FilterChain& chain) {
  std::vector<RBAC> rbacs;
  for (const auto& filter : chain.filters()) {
    envoy::extensions::filters::network::rbac::v3::RBAC config;
    if (filter.typed_config().UnpackTo(&config)) rbacs.push_back(config.rules());
  }
  return rbacs;
}

std::vector<std::pair<std::string, RBAC>> WebRbacs(const model::MeshState& state,
                                                   const ProxyInfo& proxy = Workload()) {
  const Listener listener = VirtualInbound(state, proxy);
  const auto* chain = ChainForPort(listener, 8080);
  REQUIRE(chain != nullptr);
  return HttpRbacs(HcmOf(*chain));
}

// The one Envoy policy of a single-rule ALLOW policy, for HTTP.
envoy::config::rbac::v3::Policy HttpPolicy(const model::AuthorizationRule& rule,
                                           bool grpc = false) {
  auto policy = RulePolicy(rule, "default", RBAC::ALLOW, {.tcp = false, .proxyless_grpc = grpc});
  REQUIRE(policy.has_value());
  return *policy;
}

// ----- inbound listeners and clusters

TEST_CASE("virtualInbound has a chain per inbound port of the proxy's own endpoints",
          "[inbound]") {
  Listener listener = VirtualInbound(Mesh(), Workload());
  CHECK(listener.address().socket_address().port_value() == 15006);
  CHECK(listener.use_original_dst().value());
  CHECK(listener.traffic_direction() == envoy::config::core::v3::INBOUND);
  REQUIRE(listener.listener_filters_size() == 1);
  CHECK(listener.listener_filters(0).name() == "envoy.filters.listener.original_dst");
  // Target ports 8080 (HTTP) and 5432 (TCP); 9080 belongs to another pod.
  REQUIRE(listener.filter_chains_size() == 2);
  CHECK(ChainForPort(listener, 9080) == nullptr);

  HttpConnectionManager hcm = HcmOf(*ChainForPort(listener, 8080));
  REQUIRE(hcm.route_config().virtual_hosts_size() == 1);
  const auto& route = hcm.route_config().virtual_hosts(0).routes(0);
  CHECK(route.route().cluster() == "inbound|8080||");
  // No policy: Istio's metadata exchange (optional), then the router.
  REQUIRE(hcm.http_filters_size() == 2);
  CHECK(hcm.http_filters(0).name() == "istio.metadata_exchange");
  CHECK(hcm.http_filters(0).is_optional());
  CHECK(hcm.http_filters(1).name() == "envoy.filters.http.router");

  const auto* tcp = ChainForPort(listener, 5432);
  REQUIRE(tcp->filters_size() == 1);
  envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy proxy;
  REQUIRE(tcp->filters(0).typed_config().UnpackTo(&proxy));
  CHECK(proxy.cluster() == "inbound|5432||");
  CHECK(listener.default_filter_chain().filters(0).name() == "envoy.filters.network.tcp_proxy");
}

TEST_CASE("inbound clusters are STATIC to 127.0.0.1:PORT, named inbound|PORT||", "[inbound]") {
  auto clusters = TranslateWorkload(Mesh(), Workload()).clusters;
  const envoy::config::cluster::v3::Cluster* web = nullptr;
  bool passthrough = false;
  for (const auto& cluster : clusters) {
    if (cluster.name() == "inbound|8080||") web = &cluster;
    if (cluster.name() == "InboundPassthroughClusterIpv4") passthrough = true;
  }
  REQUIRE(web != nullptr);
  CHECK(web->type() == envoy::config::cluster::v3::Cluster::STATIC);
  const auto& address =
      web->load_assignment().endpoints(0).lb_endpoints(0).endpoint().address().socket_address();
  CHECK(address.address() == "127.0.0.1");
  CHECK(address.port_value() == 8080);
  CHECK(passthrough);
  // A proxy with no endpoints of its own still gets virtualInbound, with passthrough only.
  CHECK(VirtualInbound(Mesh(), Workload(false, {}, "default", "10.9.9.9")).filter_chains_size() ==
        0);
}

TEST_CASE("TranslationKey separates proxies whose IPs differ (their inbound listeners do)",
          "[inbound][proxy]") {
  CHECK(Workload().TranslationKey() !=
        Workload(false, {{"app", "web"}}, "default", "10.0.0.6").TranslationKey());
  CHECK(Workload().TranslationKey() == Workload().TranslationKey());
}

// ----- which policies apply

TEST_CASE("no policy: no RBAC filter, everything allowed", "[authz]") {
  CHECK(WebRbacs(Mesh()).empty());
  CHECK(NetworkRbacs(*ChainForPort(VirtualInbound(Mesh(), Workload()), 5432)).empty());
}

TEST_CASE("selector matchLabels select by the proxy's labels, within the namespace", "[authz]") {
  model::MeshState state = Mesh();
  AddPolicy(state, "default", "web-only", Action::kDeny).selector =
      std::map<std::string, std::string>{{"app", "web"}};
  AddPolicy(state, "default", "api-only", Action::kDeny).selector =
      std::map<std::string, std::string>{{"app", "api"}};
  AddPolicy(state, "shop", "shop-wide", Action::kDeny);
  SelectedPolicies selected = SelectPolicies(state, Workload());
  REQUIRE(selected.deny.size() == 1);
  CHECK(selected.deny[0]->meta.name == "web-only");
  CHECK(SelectPolicies(state, Workload(false, {{"app", "api"}})).deny[0]->meta.name ==
        "api-only");
  CHECK(SelectPolicies(state, Workload(false, {}, "shop")).deny[0]->meta.name == "shop-wide");
}

TEST_CASE("root namespace policies apply mesh-wide, with their selector", "[authz]") {
  model::MeshState state = Mesh();
  AddPolicy(state, "istio-system", "mesh", Action::kDeny);
  AddPolicy(state, "istio-system", "mesh-web", Action::kDeny).selector =
      std::map<std::string, std::string>{{"app", "web"}};
  CHECK(SelectPolicies(state, Workload(false, {{"app", "web"}}, "shop")).deny.size() == 2);
  CHECK(SelectPolicies(state, Workload(false, {{"app", "db"}}, "shop")).deny.size() == 1);
}

TEST_CASE("policies with targetRefs select no sidecar (they bind to gateways/waypoints)",
          "[authz]") {
  model::MeshState state = Mesh();
  AddPolicy(state, "default", "gw", Action::kDeny).target_refs.push_back(
      {.group = "gateway.networking.k8s.io", .kind = "Gateway", .name = "ingress"});
  CHECK(SelectPolicies(state, Workload()).empty());
  auto warnings = CheckAuthorizationPolicies(state);
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].message.find("spec.targetRefs[0]") == 0);
}

TEST_CASE("filters run CUSTOM (as deny), DENY, ALLOW, then the router; AUDIT adds none",
          "[authz]") {
  model::MeshState state = Mesh();
  AddPolicy(state, "default", "allow", Action::kAllow);
  AddPolicy(state, "default", "deny", Action::kDeny);
  AddPolicy(state, "default", "audit", Action::kAudit);
  AddPolicy(state, "default", "custom", Action::kCustom).provider = "ext";
  auto rbacs = WebRbacs(state);
  REQUIRE(rbacs.size() == 3);
  CHECK(rbacs[0].second.action() == RBAC::DENY);
  CHECK(rbacs[0].second.policies().contains("ns[default]-policy[custom]-rule[0]"));
  CHECK(rbacs[1].second.action() == RBAC::DENY);
  CHECK(rbacs[1].second.policies().contains("ns[default]-policy[deny]-rule[0]"));
  CHECK(rbacs[2].second.action() == RBAC::ALLOW);
  CHECK(rbacs[2].second.policies().contains("ns[default]-policy[allow]-rule[0]"));
  for (const auto& [name, rbac] : rbacs) CHECK(name == "envoy.filters.http.rbac");
  auto hcm = HcmOf(*ChainForPort(VirtualInbound(state, Workload()), 8080));
  CHECK(hcm.http_filters(hcm.http_filters_size() - 1).name() == "envoy.filters.http.router");
  // TCP chains: the same three as network RBAC filters, before tcp_proxy.
  auto tcp = *ChainForPort(VirtualInbound(state, Workload()), 5432);
  CHECK(NetworkRbacs(tcp).size() == 3);
  CHECK(tcp.filters(3).name() == "envoy.filters.network.tcp_proxy");
  CHECK(NetworkRbacs(VirtualInbound(state, Workload()).default_filter_chain()).size() == 3);
}

TEST_CASE("an ALLOW policy without rules allows nothing; `{}` allows everything", "[authz]") {
  model::MeshState state = Mesh();
  AddPolicy(state, "default", "nothing", Action::kAllow, {});
  auto rbacs = WebRbacs(state);
  REQUIRE(rbacs.size() == 1);
  CHECK(rbacs[0].second.action() == RBAC::ALLOW);
  CHECK(rbacs[0].second.policies().empty());  // RBAC ALLOW without policies denies all

  AddPolicy(state, "default", "everything", Action::kAllow);  // rules: [{}]
  rbacs = WebRbacs(state);
  const auto& policy = rbacs[0].second.policies().at("ns[default]-policy[everything]-rule[0]");
  CHECK(policy.permissions(0).and_rules().rules(0).any());
  CHECK(policy.principals(0).and_ids().ids(0).any());
}

// ----- field mapping

TEST_CASE("paths: exact, prefix*, *suffix, * (present), and notPaths negated", "[rbac]") {
  model::AuthorizationRule rule;
  rule.to.push_back({.paths = {"/exact", "/pre*", "*/suf", "*"}, .not_paths = {"/no"}});
  auto policy = HttpPolicy(rule);
  const auto& and_rules = policy.permissions(0).and_rules();
  REQUIRE(and_rules.rules_size() == 2);
  const auto& any_of = and_rules.rules(0).or_rules();
  CHECK(any_of.rules(0).url_path().path().exact() == "/exact");
  CHECK(any_of.rules(1).url_path().path().prefix() == "/pre");
  CHECK(any_of.rules(2).url_path().path().suffix() == "/suf");
  CHECK(any_of.rules(3).url_path().path().safe_regex().regex() == ".+");
  CHECK(and_rules.rules(1).not_rule().or_rules().rules(0).url_path().path().exact() == "/no");
}

TEST_CASE("methods and hosts are header matchers; hosts ignore case; ports destination_port",
          "[rbac]") {
  model::AuthorizationRule rule;
  rule.to.push_back({.hosts = {"*.example.com"}, .ports = {"8080"}, .methods = {"GET"}});
  auto rules = HttpPolicy(rule).permissions(0).and_rules();
  REQUIRE(rules.rules_size() == 3);  // Istio's order: hosts, methods, paths, ports
  const auto& host = rules.rules(0).or_rules().rules(0).header();
  CHECK(host.name() == ":authority");
  CHECK(host.string_match().suffix() == ".example.com");
  CHECK(host.string_match().ignore_case());
  CHECK(rules.rules(1).or_rules().rules(0).header().name() == ":method");
  CHECK(rules.rules(1).or_rules().rules(0).header().string_match().exact() == "GET");
  CHECK(rules.rules(2).or_rules().rules(0).destination_port() == 8080);
}

TEST_CASE("sources: principals as spiffe://, namespaces as regex, IP blocks as CIDRs",
          "[rbac]") {
  model::AuthorizationRule rule;
  rule.from.push_back({.principals = {"cluster.local/ns/a/sa/b", "*/sa/c"},
                       .namespaces = {"team-*"},
                       .ip_blocks = {"10.0.0.0/16"},
                       .remote_ip_blocks = {"1.2.3.4"},
                       .not_remote_ip_blocks = {"::1"}});
  rule.from.push_back({.service_accounts = {"shop/cart"}});
  auto policy = HttpPolicy(rule);
  REQUIRE(policy.principals_size() == 2);  // one per `from`, any of them
  const auto& ids = policy.principals(0).and_ids();
  REQUIRE(ids.ids_size() == 5);  // principals, namespaces, remote IPs, not remote IPs, IPs
  CHECK(ids.ids(0).or_ids().ids(0).authenticated().principal_name().exact() ==
        "spiffe://cluster.local/ns/a/sa/b");
  CHECK(ids.ids(0).or_ids().ids(1).authenticated().principal_name().safe_regex().regex() ==
        "spiffe://.*/sa/c");
  CHECK(ids.ids(1).or_ids().ids(0).authenticated().principal_name().safe_regex().regex() ==
        ".*/ns/team-.*/.*");
  CHECK(ids.ids(2).or_ids().ids(0).remote_ip().address_prefix() == "1.2.3.4");
  CHECK(ids.ids(2).or_ids().ids(0).remote_ip().prefix_len().value() == 32);
  CHECK(ids.ids(3).not_id().or_ids().ids(0).remote_ip().prefix_len().value() == 128);
  CHECK(ids.ids(4).or_ids().ids(0).direct_remote_ip().prefix_len().value() == 16);
  CHECK(policy.principals(1).and_ids().ids(0).or_ids().ids(0).authenticated().principal_name()
            .exact() == "spiffe://cluster.local/ns/shop/sa/cart");
}

TEST_CASE("when: headers, IPs and identities join the principals; destination and SNI the "
          "permissions",
          "[rbac]") {
  model::AuthorizationRule rule;
  rule.to.push_back({.methods = {"GET"}});
  rule.when = {{.key = "request.headers[x-token]", .values = {"secret"}},
               {.key = "source.namespace", .values = {"prod"}},
               {.key = "remote.ip", .not_values = {"10.0.0.1"}},
               {.key = "destination.port", .values = {"8080"}},
               {.key = "destination.ip", .values = {"10.0.0.0/8"}},
               {.key = "connection.sni", .values = {"*.local"}}};
  auto policy = HttpPolicy(rule);
  const auto& ids = policy.principals(0).and_ids();
  REQUIRE(ids.ids_size() == 3);
  CHECK(ids.ids(0).or_ids().ids(0).header().name() == "x-token");
  CHECK(ids.ids(0).or_ids().ids(0).header().string_match().exact() == "secret");
  CHECK(ids.ids(1).or_ids().ids(0).authenticated().principal_name().safe_regex().regex() ==
        ".*/ns/prod/.*");
  CHECK(ids.ids(2).not_id().or_ids().ids(0).remote_ip().address_prefix() == "10.0.0.1");
  const auto& rules = policy.permissions(0).and_rules();
  REQUIRE(rules.rules_size() == 4);  // methods, then the conditions in order
  CHECK(rules.rules(1).or_rules().rules(0).destination_port() == 8080);
  CHECK(rules.rules(2).or_rules().rules(0).destination_ip().prefix_len().value() == 8);
  CHECK(rules.rules(3).or_rules().rules(0).requested_server_name().suffix() == ".local");
}

TEST_CASE("requestPrincipals match Istio's authn metadata, which nothing sets without JWT",
          "[rbac]") {
  model::AuthorizationRule rule;
  rule.from.push_back({.request_principals = {"issuer/subject"}});
  auto ids = HttpPolicy(rule).principals(0).and_ids();
  CHECK(ids.ids(0).or_ids().ids(0).metadata().filter() == "istio_authn");
  CHECK(ids.ids(0).or_ids().ids(0).metadata().path(0).key() == "request.auth.principal");
}

TEST_CASE("on TCP, an ALLOW rule with HTTP-only fields is dropped", "[rbac][tcp]") {
  model::MeshState state = Mesh();
  model::AuthorizationRule http_rule;
  http_rule.to.push_back({.ports = {"5432"}, .methods = {"GET"}});
  model::AuthorizationRule port_rule;
  port_rule.to.push_back({.ports = {"5433"}});
  AddPolicy(state, "default", "allow", Action::kAllow, {http_rule, port_rule});
  Listener listener = VirtualInbound(state, Workload());
  auto tcp = NetworkRbacs(*ChainForPort(listener, 5432));
  REQUIRE(tcp.size() == 1);
  CHECK(tcp[0].action() == RBAC::ALLOW);
  CHECK(tcp[0].policies().size() == 1);
  CHECK(tcp[0].policies().contains("ns[default]-policy[allow]-rule[1]"));
  // On the HTTP port both rules stay.
  CHECK(WebRbacs(state)[0].second.policies().size() == 2);
  // With only HTTP rules, the ALLOW filter on TCP has no policies: nothing is allowed.
  state.authorization_policies.clear();
  AddPolicy(state, "default", "allow", Action::kAllow, {http_rule});
  listener = VirtualInbound(state, Workload());
  tcp = NetworkRbacs(*ChainForPort(listener, 5432));
  REQUIRE(tcp.size() == 1);
  CHECK(tcp[0].policies().empty());
}

TEST_CASE("on TCP, a DENY rule ignores its HTTP-only fields, so it denies more", "[rbac][tcp]") {
  model::AuthorizationRule rule;
  rule.to.push_back({.ports = {"5432"}, .paths = {"/admin"}});
  rule.when = {{.key = "request.headers[x-a]", .values = {"b"}}};
  auto policy = RulePolicy(rule, "default", RBAC::DENY, {.tcp = true});
  REQUIRE(policy.has_value());
  const auto& rules = policy->permissions(0).and_rules();
  REQUIRE(rules.rules_size() == 1);  // paths ignored, the port stays
  CHECK(rules.rules(0).or_rules().rules(0).destination_port() == 5432);
  CHECK(policy->principals(0).and_ids().ids(0).any());  // the header condition ignored
  CHECK(RulePolicy(rule, "default", RBAC::ALLOW, {.tcp = true}) == std::nullopt);
}

// ----- proxyless gRPC servers

TEST_CASE("gRPC servers get grpc/server?xds.resource.listening_address=IP:PORT listeners",
          "[grpc][authz]") {
  model::MeshState state = Mesh();
  model::AuthorizationRule rule;
  rule.when = {{.key = "request.headers[x-token]", .values = {"ok", "pre*"}}};
  AddPolicy(state, "default", "allow", Action::kAllow, {rule});
  AddPolicy(state, "default", "deny", Action::kDeny);
  auto listeners = TranslateWorkload(state, Workload(true)).listeners;
  const Listener* server = nullptr;
  int server_listeners = 0;
  for (const auto& listener : listeners) {
    if (listener.name().starts_with("grpc/server?")) ++server_listeners;
    if (listener.name() == "grpc/server?xds.resource.listening_address=10.0.0.5:8080") {
      server = &listener;
    }
  }
  CHECK(server_listeners == 6);  // 8080 and 5432, each for the pod IP, 0.0.0.0 and [::]
  REQUIRE(server != nullptr);
  CHECK(server->address().socket_address().address() == "10.0.0.5");
  CHECK(server->address().socket_address().port_value() == 8080);
  REQUIRE(server->filter_chains_size() == 1);
  HttpConnectionManager hcm = HcmOf(server->filter_chains(0));
  CHECK(hcm.route_config().virtual_hosts(0).routes(0).has_non_forwarding_action());
  auto rbacs = HttpRbacs(hcm);
  REQUIRE(rbacs.size() == 2);
  // gRPC rejects duplicate filter names and (1.51) HeaderMatcher.string_match.
  CHECK(rbacs[0].first == "envoy.filters.http.rbac.deny");
  CHECK(rbacs[1].first == "envoy.filters.http.rbac.allow");
  const auto& header =
      rbacs[1].second.policies().at("ns[default]-policy[allow]-rule[0]").principals(0)
          .and_ids().ids(0).or_ids();
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  CHECK(header.ids(0).header().exact_match() == "ok");
  CHECK(header.ids(1).header().prefix_match() == "pre");
#pragma GCC diagnostic pop
  CHECK(hcm.http_filters(hcm.http_filters_size() - 1).name() == "envoy.filters.http.router");
}

TEST_CASE("a gRPC client with no endpoints of its own gets no server listeners", "[grpc]") {
  for (const auto& listener :
       TranslateWorkload(Mesh(), Workload(true, {}, "default", "10.9.9.9")).listeners) {
    CHECK_FALSE(listener.name().starts_with("grpc/server?"));
  }
}

// ----- CheckConfig

bool HasWarning(const std::vector<model::ConfigError>& warnings, const std::string& name,
                const std::string& text) {
  for (const auto& warning : warnings) {
    if (warning.kind == "AuthorizationPolicy" && warning.name == name &&
        warning.message.find(text) != std::string::npos) {
      return true;
    }
  }
  return false;
}

TEST_CASE("CheckConfig reports what AuthorizationPolicies cannot do yet", "[authz][check]") {
  model::MeshState state = Mesh();
  AddPolicy(state, "default", "custom", Action::kCustom).provider = "opa";
  AddPolicy(state, "default", "audit", Action::kAudit);
  model::AuthorizationRule identities;
  identities.from.push_back({.principals = {"cluster.local/ns/a/sa/b"}});
  identities.from.push_back({.request_principals = {"iss/sub"}});
  identities.when = {{.key = "request.auth.claims[group]", .values = {"admin"}},
                     {.key = "source.namespace", .values = {"a"}}};
  AddPolicy(state, "default", "identities", Action::kAllow, {identities});
  model::AuthorizationRule http_only;
  http_only.to.push_back({.methods = {"GET"}});
  AddPolicy(state, "default", "http-allow", Action::kAllow, {http_only});
  AddPolicy(state, "default", "http-deny", Action::kDeny, {http_only});

  auto warnings = CheckConfig(state);
  CHECK(HasWarning(warnings, "custom", "spec.action: CUSTOM"));
  CHECK(HasWarning(warnings, "audit", "spec.action: AUDIT"));
  CHECK(HasWarning(warnings, "identities",
                   "spec.rules[0].from[0].source.principals: matches mTLS peer identities"));
  CHECK(HasWarning(warnings, "identities",
                   "spec.rules[0].from[1].source.requestPrincipals: needs JWT"));
  CHECK(HasWarning(warnings, "identities", "spec.rules[0].when[0] (request.auth.claims[group])"));
  CHECK(HasWarning(warnings, "identities", "spec.rules[0].when[1] (source.namespace)"));
  // HTTP-only fields: Istio's TCP semantics, naming the TCP port of the selected workload.
  CHECK(HasWarning(warnings, "http-allow", "TCP ports 5432"));
  CHECK(HasWarning(warnings, "http-allow", "this ALLOW rule is dropped"));
  CHECK(HasWarning(warnings, "http-deny", "those fields are ignored, so the rule denies more"));
}

}  // namespace
}  // namespace meshpilot::translator
