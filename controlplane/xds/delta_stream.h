#pragma once

#include <array>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "controlplane/xds/stream.h"

namespace meshpilot::xds {

// One incremental ADS stream (DeltaAggregatedResources, xDS "Incremental xDS"). The client
// subscribes and unsubscribes by name; a response carries only the resources whose version
// the client does not hold, and in `removed_resources` the names it holds (or asked for)
// that do not exist. Per type the stream knows what the client holds as of its last ACK; a
// NACK leaves that as it was. Push order, the barrier, at most one un-ACKed response per
// type and the write queue are StreamReactor's, as for the state-of-the-world stream.
class DeltaStream final
    : public StreamReactor<envoy::service::discovery::v3::DeltaDiscoveryRequest,
                           envoy::service::discovery::v3::DeltaDiscoveryResponse> {
 public:
  DeltaStream(AdsServer& server, grpc::CallbackServerContext* context);

 private:
  using Request = envoy::service::discovery::v3::DeltaDiscoveryRequest;
  using Response = envoy::service::discovery::v3::DeltaDiscoveryResponse;
  // Resource name -> version; "" means the client was told the resource does not exist.
  using Versions = std::map<std::string, std::string>;

  struct Subscription {
    bool explicit_wildcard = false;  // "*" subscribed
    bool legacy_wildcard = false;    // the first request named nothing (CDS, LDS)
    Versions held;                   // what the client has, as of its last ACK
    Versions in_flight;              // what the un-ACKed response tells it
    std::set<std::string> resend;    // send (or report removed) even if held
    bool answer = false;             // a response is due even if nothing differs
  };

  void HandleRequestLocked(const Request& request) override;
  std::optional<Response> DiffLocked(cache::ResourceType type,
                                     const cache::ResourceMap& available) override;
  void SentLocked(cache::ResourceType type, const Response& response) override;

  void UpdateSubscriptionLocked(cache::ResourceType type, const Request& request);
  // The client ACKed: what was in flight is now held.
  void ApplyInFlightLocked(cache::ResourceType type);
  // Whether the client's subscription to `type` covers `name`.
  bool InScopeLocked(cache::ResourceType type, const std::string& name);
  Subscription& subscription(cache::ResourceType type) {
    return subscriptions_[static_cast<size_t>(type)];
  }

  std::array<Subscription, cache::kResourceTypeCount> subscriptions_;
};

}  // namespace meshpilot::xds
