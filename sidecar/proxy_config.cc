#include "sidecar/proxy_config.h"

namespace meshpilot::sidecar {

const ListenerEntry* ProxyConfig::FindListener(const std::string& name) const {
  auto it = listeners.find(name);
  return it == listeners.end() ? nullptr : &it->second;
}

const ListenerEntry* ProxyConfig::ListenerForDestination(
    const boost::asio::ip::tcp::endpoint& destination) const {
  auto it = by_destination.find(destination);
  if (it == by_destination.end()) {
    boost::asio::ip::tcp::endpoint wildcard(
        destination.address().is_v4() ? boost::asio::ip::address(boost::asio::ip::address_v4::any())
                                      : boost::asio::ip::address(boost::asio::ip::address_v6::any()),
        destination.port());
    it = by_destination.find(wildcard);
  }
  return it == by_destination.end() ? nullptr : FindListener(it->second);
}

const ClusterEntry* ProxyConfig::FindCluster(const std::string& name) const {
  auto it = clusters.find(name);
  return it == clusters.end() ? nullptr : &it->second;
}

const config::RouteTable* ProxyConfig::RoutesFor(const config::HttpChain& chain) const {
  if (chain.inline_routes) return chain.inline_routes.get();
  auto it = routes.find(chain.rds_name);
  return it == routes.end() ? nullptr : it->second.get();
}

}  // namespace meshpilot::sidecar
