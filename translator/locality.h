#pragma once

#include "controlplane/model/endpoint.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"
#include "translator/traffic_policy.h"

namespace meshpilot::translator {

// Istio's locality load balancing over a cluster's endpoints (grouped by locality), for a
// proxy at `proxy_locality` (from node.locality; nothing happens without one):
// - localityLbSetting.enabled false turns it off; unset, it is on (Istio's mesh default).
// - `distribute`: the first entry whose `from` matches the proxy sets the locality weights;
//   each `to` weight is shared evenly by the localities it matches; localities no `to`
//   matches get no traffic and are left out.
// - otherwise failover, only with outlierDetection (as in Istio): priority 0 for the proxy's
//   region/zone/subzone, 1 its region/zone, 2 its region, 3 the `failover` target region of the
//   proxy's region, then the rest; priorities are compacted so that none is empty.
// `failoverPriority` is reported by CheckDestinationRules and not applied.
void ApplyLocalityLb(const ClusterTrafficPolicy& policy, const model::Locality& proxy_locality,
                     envoy::config::endpoint::v3::ClusterLoadAssignment& assignment);

// Whether `locality` matches an Istio locality pattern "region/zone/subzone", where a missing
// or "*" part matches anything ("us-east/*", "us-east").
bool LocalityMatches(const model::Locality& locality, std::string_view pattern);

}  // namespace meshpilot::translator
