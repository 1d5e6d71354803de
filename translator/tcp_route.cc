#include "translator/tcp_route.h"

#include <arpa/inet.h>

#include <array>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/algorithm/container.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.pb.h"
#include "translator/duration.h"
#include "translator/names.h"
#include "translator/subset.h"

namespace meshpilot::translator {
namespace {

using TcpProxy = envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;

// An address in its 16-byte form (IPv4 as v4-mapped) and how many leading bits count.
std::optional<std::pair<std::array<unsigned char, 16>, int>> ParseBlock(std::string_view text) {
  std::string address(text);
  int bits = -1;
  if (size_t slash = address.find('/'); slash != std::string::npos) {
    if (!absl::SimpleAtoi(address.substr(slash + 1), &bits)) return std::nullopt;
    address.resize(slash);
  }
  std::array<unsigned char, 16> bytes{};
  in_addr v4;
  if (inet_pton(AF_INET, address.c_str(), &v4) == 1) {
    bytes[10] = bytes[11] = 0xff;
    std::memcpy(&bytes[12], &v4, 4);
    if (bits < 0) bits = 32;
    if (bits > 32) return std::nullopt;
    return std::pair{bytes, bits + 96};
  }
  if (inet_pton(AF_INET6, address.c_str(), bytes.data()) != 1) return std::nullopt;
  if (bits < 0) bits = 128;
  if (bits > 128) return std::nullopt;
  return std::pair{bytes, bits};
}

bool InSubnet(std::string_view ip, std::string_view subnet) {
  auto address = ParseBlock(ip);
  auto block = ParseBlock(subnet);
  if (!address || !block) return false;
  for (int bit = 0; bit < block->second; ++bit) {
    const unsigned char mask = static_cast<unsigned char>(0x80 >> (bit % 8));
    if ((address->first[bit / 8] & mask) != (block->first[bit / 8] & mask)) return false;
  }
  return true;
}

bool Applies(const model::L4MatchAttributes& match, const ProxyInfo& proxy,
             const model::Service& service, uint32_t port) {
  if (!MatchesProxy(match, proxy, port)) return false;
  if (!match.destination_subnets.empty() &&
      absl::c_none_of(match.destination_subnets, [&](const std::string& subnet) {
        return InSubnet(service.cluster_ip, subnet);
      })) {
    return false;
  }
  return true;
}

// The first tcp rule for this service and port, in merge order.
std::pair<const model::TcpRoute*, const model::VirtualService*> SelectRule(
    const VirtualServiceIndex& virtual_services, const ProxyInfo& proxy,
    const model::Service& service, uint32_t port) {
  for (const model::VirtualService* vs : virtual_services.ForService(service)) {
    for (const model::TcpRoute& rule : vs->tcp) {
      if (rule.match.empty() ||
          absl::c_any_of(rule.match, [&](const model::L4MatchAttributes& match) {
            return Applies(match, proxy, service, port);
          })) {
        return {&rule, vs};
      }
    }
  }
  return {nullptr, nullptr};
}

}  // namespace

bool MatchesProxy(const model::L4MatchAttributes& match, const ProxyInfo& proxy, uint32_t port) {
  if (!match.gateways.empty() && !absl::c_linear_search(match.gateways, "mesh")) return false;
  for (const auto& [key, value] : match.source_labels) {
    auto it = proxy.labels.find(key);
    if (it == proxy.labels.end() || it->second != value) return false;
  }
  if (!match.source_namespace.empty() && match.source_namespace != proxy.namespace_) return false;
  return !match.port || *match.port == port;
}

envoy::config::listener::v3::Filter TcpProxyTo(const model::MeshState& state,
                                               const DestinationRuleIndex& rules,
                                               const model::Service& service, uint32_t port,
                                               const std::vector<model::RouteDestination>* route,
                                               const std::string& config_namespace) {
  const std::string own_cluster = OutboundClusterName(port, "", service.Hostname());
  TcpProxy tcp_proxy;
  tcp_proxy.set_stat_prefix(own_cluster);
  const ClusterTrafficPolicy policy = ResolveTrafficPolicy(rules.ForService(service), nullptr, port);
  if (policy.connection_pool && policy.connection_pool->tcp &&
      policy.connection_pool->tcp->idle_timeout) {
    SetDuration(*policy.connection_pool->tcp->idle_timeout, *tcp_proxy.mutable_idle_timeout());
  }
  if (policy.load_balancer && policy.load_balancer->consistent_hash &&
      policy.load_balancer->consistent_hash->use_source_ip) {
    tcp_proxy.add_hash_policy()->mutable_source_ip();
  }
  std::vector<const model::RouteDestination*> destinations;
  if (route != nullptr) {
    // As for http rules: weight 0 destinations are dropped when there are others.
    for (const model::RouteDestination& destination : *route) {
      if (route->size() == 1 || destination.weight > 0) destinations.push_back(&destination);
    }
  }
  auto resolve = [&](const model::RouteDestination& destination) {
    return ResolveDestination(state, destination.destination, config_namespace, port).cluster;
  };
  if (destinations.empty()) {
    tcp_proxy.set_cluster(own_cluster);
  } else if (destinations.size() == 1) {
    tcp_proxy.set_cluster(resolve(*destinations.front()));
  } else {
    for (const model::RouteDestination* destination : destinations) {
      auto* cluster = tcp_proxy.mutable_weighted_clusters()->add_clusters();
      cluster->set_name(resolve(*destination));
      cluster->set_weight(static_cast<uint32_t>(destination->weight));
    }
  }
  envoy::config::listener::v3::Filter filter;
  filter.set_name("envoy.filters.network.tcp_proxy");
  filter.mutable_typed_config()->PackFrom(tcp_proxy);
  return filter;
}

envoy::config::listener::v3::Filter OutboundTcpProxy(const model::MeshState& state,
                                                     const VirtualServiceIndex& virtual_services,
                                                     const DestinationRuleIndex& rules,
                                                     const ProxyInfo& proxy,
                                                     const model::Service& service, uint32_t port) {
  auto [rule, vs] = SelectRule(virtual_services, proxy, service, port);
  if (rule == nullptr) return TcpProxyTo(state, rules, service, port, nullptr, "");
  return TcpProxyTo(state, rules, service, port, &rule->route, vs->meta.namespace_);
}

}  // namespace meshpilot::translator
