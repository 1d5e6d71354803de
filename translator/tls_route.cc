#include "translator/tls_route.h"

#include <set>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "translator/tcp_route.h"

namespace meshpilot::translator {
namespace {

// A destinationSubnets entry (an IP or a CIDR, validated on input) as Envoy's CidrRange.
void AddPrefixRange(const std::string& subnet,
                    envoy::config::listener::v3::FilterChainMatch& match) {
  auto* range = match.add_prefix_ranges();
  const size_t slash = subnet.find('/');
  range->set_address_prefix(subnet.substr(0, slash));
  uint32_t bits = subnet.find(':') == std::string::npos ? 32 : 128;
  if (slash != std::string::npos) (void)absl::SimpleAtoi(subnet.substr(slash + 1), &bits);
  range->mutable_prefix_len()->set_value(bits);
}

}  // namespace

std::vector<envoy::config::listener::v3::FilterChain> OutboundTlsChains(
    const model::MeshState& state, const VirtualServiceIndex& virtual_services,
    const DestinationRuleIndex& rules, const ProxyInfo& proxy, const model::Service& service,
    uint32_t port) {
  std::vector<envoy::config::listener::v3::FilterChain> chains;
  std::set<std::string> handled;  // the connection-time predicates already given a chain
  for (const model::VirtualService* vs : virtual_services.ForService(service)) {
    for (const model::TlsRoute& rule : vs->tls) {
      for (const model::TlsMatchAttributes& match : rule.match) {
        if (!MatchesProxy(match, proxy, port)) continue;
        if (!handled
                 .insert(absl::StrCat(absl::StrJoin(match.sni_hosts, ","), "|",
                                      absl::StrJoin(match.destination_subnets, ",")))
                 .second) {
          continue;
        }
        auto& chain = chains.emplace_back();
        auto* chain_match = chain.mutable_filter_chain_match();
        for (const std::string& sni : match.sni_hosts) chain_match->add_server_names(sni);
        for (const std::string& subnet : match.destination_subnets) {
          AddPrefixRange(subnet, *chain_match);
        }
        *chain.add_filters() =
            TcpProxyTo(state, rules, service, port, &rule.route, vs->meta.namespace_);
      }
    }
  }
  if (chains.empty()) {
    *chains.emplace_back().add_filters() = TcpProxyTo(state, rules, service, port, nullptr, "");
  }
  return chains;
}

}  // namespace meshpilot::translator
