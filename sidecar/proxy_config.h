#pragma once

// The applied configuration as one immutable value, and the store that swaps it atomically.
// The data path loads the current ProxyConfig once per connection (TCP) or per request (HTTP)
// and keeps its shared_ptr until done, so an update never changes what an in-flight
// connection or request uses, and readers take no locks.

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

#include "google/protobuf/any.pb.h"
#include "sidecar/config/cluster.h"
#include "sidecar/config/listener.h"
#include "sidecar/config/route.h"
#include "sidecar/stats.h"
#include "sidecar/upstream/load_balancer.h"

namespace meshpilot::sidecar {

enum class XdsType { kCluster = 0, kEndpoint = 1, kListener = 2, kRoute = 3 };
inline constexpr std::array<XdsType, 4> kXdsTypes = {XdsType::kCluster, XdsType::kEndpoint,
                                                     XdsType::kListener, XdsType::kRoute};
inline constexpr std::array<const char*, 4> kTypeUrls = {
    "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    "type.googleapis.com/envoy.config.listener.v3.Listener",
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"};
inline constexpr std::array<const char*, 4> kTypeNames = {"Cluster", "ClusterLoadAssignment",
                                                          "Listener", "RouteConfiguration"};
inline const char* TypeUrl(XdsType type) { return kTypeUrls[static_cast<size_t>(type)]; }

struct ClusterEntry {
  std::shared_ptr<const config::ClusterConfig> config;
  std::shared_ptr<const upstream::LoadBalancer> lb;  // null for ORIGINAL_DST
  std::shared_ptr<ClusterStats> stats;
};

// Its HTTP connection managers' stats by stat_prefix.
using HttpStatsByPrefix = std::map<std::string, std::shared_ptr<HttpConnectionManagerStats>>;

struct ListenerEntry {
  std::shared_ptr<const config::ListenerConfig> config;
  std::shared_ptr<ListenerStats> stats;
  std::shared_ptr<const HttpStatsByPrefix> http_stats;  // shared: an entry is copied per connection

  // The stats of `chain`, one of this listener's.
  const std::shared_ptr<HttpConnectionManagerStats>& HttpStats(const config::HttpChain& chain) const {
    return http_stats->at(chain.stat_prefix);
  }
};

// What /config_dump shows of one applied resource.
struct AppliedResource {
  std::string name;
  std::string version;
  std::string last_updated;  // RFC 3339
  std::shared_ptr<const google::protobuf::Any> resource;
};

struct TypeDump {
  std::string version_info;  // last ACKed
  std::vector<AppliedResource> resources;
  std::string last_error;  // of the last NACK, if any
};

struct ProxyConfig {
  std::map<std::string, ListenerEntry> listeners;
  std::map<std::string, std::shared_ptr<const config::RouteTable>> routes;
  std::map<std::string, ClusterEntry> clusters;
  std::array<TypeDump, 4> dump;
  // CDS and LDS have each been received once (what /ready reports).
  bool initialized = false;

  const ListenerEntry* FindListener(const std::string& name) const;
  // The listener that owns connections to `destination` once virtualOutbound hands them over:
  // exact address and port first, then the wildcard address with that port. Listeners that
  // themselves use the original destination are never candidates.
  const ListenerEntry* ListenerForDestination(const boost::asio::ip::tcp::endpoint& destination) const;
  const ClusterEntry* FindCluster(const std::string& name) const;
  // The route table of an HTTP chain: inline, or the RDS one by name (null until it arrives).
  const config::RouteTable* RoutesFor(const config::HttpChain& chain) const;

  // Built by the config builder: (address, port) -> listener name.
  std::map<boost::asio::ip::tcp::endpoint, std::string> by_destination;
};

class ConfigStore {
 public:
  ConfigStore() : current_(std::make_shared<const ProxyConfig>()) {}
  std::shared_ptr<const ProxyConfig> Load() const {
    return current_.load(std::memory_order_acquire);
  }
  void Store(std::shared_ptr<const ProxyConfig> config) {
    current_.store(std::move(config), std::memory_order_release);
  }

 private:
  std::atomic<std::shared_ptr<const ProxyConfig>> current_;
};

}  // namespace meshpilot::sidecar
