#pragma once

// meshproxy's bootstrap: who it is (the xDS Node, in Istio's form) and where things are. From
// flags, optionally over a small JSON file:
//
//   {"node": {"id": "sidecar~10.0.0.1~app-1.default~default.svc.cluster.local",
//             "metadata": {"NAMESPACE": "default", "LABELS": {"app": "app"}}},
//    "xds_address": "127.0.0.1:15010", "admin_port": 15000, "readiness_port": 15021,
//    "concurrency": 2}
//
// "node" is an envoy.config.core.v3.Node in proto JSON.

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "envoy/config/core/v3/base.pb.h"

namespace meshpilot::sidecar {

struct Bootstrap {
  envoy::config::core::v3::Node node;
  std::string xds_address = "127.0.0.1:15010";
  std::string admin_address = "127.0.0.1";
  uint16_t admin_port = 15000;
  uint16_t readiness_port = 15021;  // 0: none
  int concurrency = 0;              // 0: one worker per core
};

// Fields present in the file override `defaults`.
absl::StatusOr<Bootstrap> LoadBootstrapFile(const std::string& path, Bootstrap defaults);

struct NodeIdentity {
  std::string node_id;  // empty: built from the fields below
  std::string pod_ip = "127.0.0.1";
  std::string pod_name;
  std::string namespace_;
  std::string service_account;
  std::map<std::string, std::string> labels;
  std::string workload_name;           // the pod's owner (metadata WORKLOAD_NAME); empty: app label, else pod
  std::string cluster_id = "Kubernetes";  // metadata CLUSTER_ID, istio-agent's default
  std::string locality;  // "region/zone/subzone" (node.locality), as istio-agent sends it
};

// The Node istio-agent would send: id `sidecar~IP~POD.NS~NS.svc.cluster.local`, metadata
// NAMESPACE, NAME, LABELS (with service.istio.io/canonical-name and -revision, as Istio's
// injector adds them), SERVICE_ACCOUNT, INSTANCE_IPS, WORKLOAD_NAME, CLUSTER_ID; node.locality.
absl::StatusOr<envoy::config::core::v3::Node> BuildNode(const NodeIdentity& identity);

}  // namespace meshpilot::sidecar
