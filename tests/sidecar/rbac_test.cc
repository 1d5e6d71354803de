// The RBAC filters' decisions: policy trees over addresses, ports, headers and paths, the three
// actions, and the errors for configs meshproxy cannot honour.

#include <catch2/catch.hpp>

#include <map>

#include "envoy/extensions/filters/http/rbac/v3/rbac.pb.h"
#include "envoy/extensions/filters/network/rbac/v3/rbac.pb.h"
#include "sidecar/config/tls.h"
#include "sidecar/filters/rbac.h"
#include "tests/sidecar/proto_json.h"

namespace meshpilot::sidecar {
namespace {

using filters::RbacFilter;
using filters::RbacRequest;
using testing::FromJson;
namespace ip = boost::asio::ip;

std::shared_ptr<const RbacFilter> Http(const std::string& rules_json) {
  google::protobuf::Any any;
  any.PackFrom(FromJson<envoy::extensions::filters::http::rbac::v3::RBAC>(rules_json));
  auto filter = RbacFilter::ParseHttp(any, "rbac");
  INFO(filter.status().ToString());
  REQUIRE(filter.ok());
  return *filter;
}

std::string HttpError(const std::string& rules_json) {
  google::protobuf::Any any;
  any.PackFrom(FromJson<envoy::extensions::filters::http::rbac::v3::RBAC>(rules_json));
  auto filter = RbacFilter::ParseHttp(any, "rbac");
  REQUIRE_FALSE(filter.ok());
  return std::string(filter.status().message());
}

struct Request {
  std::string remote = "10.1.0.7";
  std::string destination = "10.1.0.2";
  uint16_t port = 8080;
  std::map<std::string, std::string> headers = {{":method", "GET"}, {":authority", "web"}};
  std::string path = "/public/a";
  bool http = true;
  bool tls = false;
  std::optional<config::PeerCertificate> peer;  // with `tls`: the client's certificate

  RbacFilter::Decision Run(const RbacFilter& filter) const {
    auto lookup = [this](std::string_view name) -> std::optional<std::string_view> {
      auto it = headers.find(std::string(name));
      if (it == headers.end()) return std::nullopt;
      return std::string_view(it->second);
    };
    RbacRequest request{ip::tcp::endpoint(ip::make_address(remote), 40000),
                        ip::tcp::endpoint(ip::make_address(destination), port), std::nullopt,
                        path};
    if (http) request.headers.emplace(lookup);
    request.tls_terminated = tls;
    if (peer) request.peer_certificate = &*peer;
    return filter.Evaluate(request);
  }
};

TEST_CASE("rbac: ALLOW admits only what a policy matches, and names the policy") {
  auto filter = Http(R"({"rules": {"action": "ALLOW", "policies": {
    "get-public": {
      "permissions": [{"and_rules": {"rules": [
        {"header": {"name": ":method", "string_match": {"exact": "GET"}}},
        {"url_path": {"path": {"prefix": "/public/"}}}]}}],
      "principals": [{"any": true}]},
    "from-block": {
      "permissions": [{"destination_port": 9090}],
      "principals": [{"remote_ip": {"address_prefix": "10.1.0.0", "prefix_len": 24}}]}}}})");
  Request get;
  auto decision = get.Run(*filter);
  CHECK(decision.allowed);
  CHECK(decision.policy == "get-public");

  Request post = get;
  post.headers[":method"] = "POST";
  CHECK_FALSE(post.Run(*filter).allowed);

  Request query = get;
  query.path = "/private";  // the path is matched without its query
  CHECK_FALSE(query.Run(*filter).allowed);

  Request port = post;
  port.port = 9090;
  CHECK(port.Run(*filter).allowed);
  port.remote = "10.2.0.7";
  CHECK_FALSE(port.Run(*filter).allowed);
}

TEST_CASE("rbac: DENY rejects what a policy matches, LOG admits everything") {
  auto deny = Http(R"({"rules": {"action": "DENY", "policies": {
    "not-from-block": {
      "permissions": [{"any": true}],
      "principals": [{"not_id": {"direct_remote_ip": {"address_prefix": "10.1.0.0", "prefix_len": 16}}}]}}}})");
  Request inside;
  CHECK(deny->Evaluate({}).allowed == false);  // 0.0.0.0 is outside 10.1/16
  CHECK(inside.Run(*deny).allowed);
  Request outside;
  outside.remote = "192.168.1.1";
  auto decision = outside.Run(*deny);
  CHECK_FALSE(decision.allowed);
  CHECK(decision.policy == "not-from-block");

  auto log = Http(R"({"rules": {"action": "LOG", "policies": {
    "all": {"permissions": [{"any": true}], "principals": [{"any": true}]}}}})");
  CHECK(outside.Run(*log).allowed);
}

TEST_CASE("rbac: a filter without rules admits everything; an empty ALLOW admits nothing") {
  CHECK(Request{}.Run(*Http("{}")).allowed);
  CHECK_FALSE(Request{}.Run(*Http(R"({"rules": {"action": "ALLOW"}})")).allowed);
  CHECK(Request{}.Run(*Http(R"({"rules": {"action": "DENY"}})")).allowed);
}

TEST_CASE("rbac: authenticated principals read URI SANs, then DNS SANs, then the subject") {
  auto filter = Http(R"({"rules": {"action": "ALLOW", "policies": {
    "ns": {"permissions": [{"any": true}],
           "principals": [{"authenticated": {"principal_name": {"safe_regex": {"regex": ".*/ns/default/.*"}}}},
                          {"authenticated": {"principal_name": {"exact": "db.internal"}}},
                          {"authenticated": {"principal_name": {"exact": "CN=ops,O=example"}}}]}}}})");
  Request request;
  request.tls = true;
  request.peer = config::PeerCertificate{{"spiffe://cluster.local/ns/default/sa/web"}, {}, "CN=web"};
  CHECK(request.Run(*filter).allowed);
  request.peer = config::PeerCertificate{{"spiffe://cluster.local/ns/other/sa/web"}, {}, "CN=web"};
  CHECK_FALSE(request.Run(*filter).allowed);
  request.peer = config::PeerCertificate{{}, {"db.internal"}, "CN=db"};
  CHECK(request.Run(*filter).allowed);
  request.peer = config::PeerCertificate{{}, {}, "CN=ops,O=example"};
  CHECK(request.Run(*filter).allowed);
  request.peer.reset();  // TLS without a client certificate: an empty subject
  CHECK_FALSE(request.Run(*filter).allowed);
  // Without principal_name any TLS session is authenticated, as Envoy's.
  auto any = Http(R"({"rules": {"action": "ALLOW", "policies": {
    "tls": {"permissions": [{"any": true}], "principals": [{"authenticated": {}}]}}}})");
  CHECK(request.Run(*any).allowed);
  request.tls = false;
  CHECK_FALSE(request.Run(*any).allowed);
}

TEST_CASE("rbac: without TLS no peer is authenticated and there is no JWT metadata") {
  auto filter = Http(R"({"rules": {"action": "ALLOW", "policies": {
    "ns": {"permissions": [{"any": true}],
           "principals": [{"authenticated": {"principal_name": {"safe_regex": {"regex": ".*/ns/default/.*"}}}}]},
    "not-jwt": {"permissions": [{"destination_port": 7000}],
                "principals": [{"metadata": {"filter": "istio_authn", "path": [{"key": "request.auth.principal"}],
                                             "value": {"string_match": {"exact": "a"}}, "invert": true}}]}}}})");
  Request request;
  CHECK_FALSE(request.Run(*filter).allowed);
  request.port = 7000;
  CHECK(request.Run(*filter).allowed);  // the absent value, inverted
}

TEST_CASE("rbac: ports, port ranges, destination addresses and IPv6 blocks") {
  auto filter = Http(R"({"rules": {"action": "ALLOW", "policies": {
    "p": {"permissions": [{"or_rules": {"rules": [
            {"destination_port_range": {"start": 8000, "end": 8080}},
            {"destination_ip": {"address_prefix": "fd00::", "prefix_len": 8}}]}}],
          "principals": [{"any": true}]}}}})");
  Request request;
  request.port = 8079;
  CHECK(request.Run(*filter).allowed);
  request.port = 8080;  // end is exclusive
  CHECK_FALSE(request.Run(*filter).allowed);
  request.destination = "fd12::1";
  CHECK(request.Run(*filter).allowed);
}

TEST_CASE("rbac: the network filter never matches header or path rules") {
  google::protobuf::Any any;
  any.PackFrom(FromJson<envoy::extensions::filters::network::rbac::v3::RBAC>(R"({
    "stat_prefix": "tcp.", "rules": {"action": "ALLOW", "policies": {
      "get": {"permissions": [{"header": {"name": ":method", "present_match": true}}],
              "principals": [{"any": true}]},
      "missing": {"permissions": [{"not_rule": {"url_path": {"path": {"exact": "/"}}}}],
                  "principals": [{"any": true}]}}}})"));
  auto filter = RbacFilter::ParseNetwork(any, "rbac");
  REQUIRE(filter.ok());
  Request tcp;
  tcp.http = false;
  auto decision = tcp.Run(**filter);
  CHECK(decision.allowed);  // only through not(url_path)
  CHECK(decision.policy == "missing");
}

TEST_CASE("rbac: what cannot be honoured is rejected with its field path") {
  CHECK(HttpError(R"({"rules": {"policies": {"p": {"permissions": [{"any": true}],
          "principals": [{"remote_ip": {"address_prefix": "10.0.0.300", "prefix_len": 8}}]}}}})") ==
        "rbac.rules.policies[\"p\"].principals[0].remote_ip.address_prefix: \"10.0.0.300\" is not "
        "an IP address");
  CHECK(HttpError(R"({"rules": {"policies": {"p": {"permissions": [{"and_rules": {"rules": [
          {"destination_ip": {"address_prefix": "10.0.0.0", "prefix_len": 33}}]}}],
          "principals": [{"any": true}]}}}})") ==
        "rbac.rules.policies[\"p\"].permissions[0].and_rules.rules[0].destination_ip.prefix_len: "
        "33 is longer than the address (32 bits)");
  CHECK(HttpError(R"({"rules": {"policies": {"p": {"permissions": [{"url_path": {"path":
          {"safe_regex": {"regex": "("}}}}], "principals": [{"any": true}]}}}})")
            .starts_with("rbac.rules.policies[\"p\"].permissions[0].url_path.path"));
  CHECK(HttpError(R"({"rules": {"policies": {"p": {"permissions": [{"any": true}],
          "principals": [{"filter_state": {"key": "k"}}]}}}})") ==
        "rbac.rules.policies[\"p\"].principals[0]: unsupported principal (filter_state)");
}

}  // namespace
}  // namespace meshpilot::sidecar
