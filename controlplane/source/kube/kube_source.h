#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "controlplane/convert/object.h"
#include "controlplane/model/mesh_state.h"
#include "controlplane/source/kube/api_client.h"
#include "controlplane/source/kube/cluster_config.h"
#include "controlplane/source/kube/informer.h"
#include "controlplane/source/kube/leader_election.h"
#include "controlplane/source/kube/status_writer.h"
#include "nlohmann/json.hpp"

namespace meshpilot::source {

// Serves the objects of a Kubernetes cluster: Services, EndpointSlices (or legacy Endpoints),
// Pods, Namespaces, and Istio's VirtualServices, DestinationRules and AuthorizationPolicies
// (listed at their storage versions v1; the API server converts whatever version users
// applied). One informer per kind (per kind and namespace with --watched-namespaces) keeps a
// copy of the objects; every change publishes a new MeshState, assembled exactly as the file
// source assembles it.
//
// The first MeshState is published only once every informer has listed its kind, so that
// meshpilot never serves a partial view (it gates /ready and the first push).
//
// Bad input loses nothing: an object that fails validation is reported in MeshState::errors
// (origin "kube"); if an earlier version of it was accepted, that version keeps serving.
//
// With Options::status, validation results go back to the cluster: the status subresource
// of every VirtualService, DestinationRule and AuthorizationPolicy, and an Event for each
// rejection, written only by the replica that holds the Lease (leader_election.h). Changes
// to an object's status alone (those writes coming back through the watch) publish nothing.
class KubeSource {
 public:
  using Subscriber = std::function<void(model::MeshStatePtr)>;

  struct Options {
    // Namespaces to read; empty: all. Cluster-scoped Namespaces are filtered to these.
    std::vector<std::string> watched_namespaces;
    // Read v1 Endpoints instead of discovery.k8s.io/v1 EndpointSlices.
    bool legacy_endpoints = false;
    Informer::Options informer;
    // Changes this close together make one publish (a relist, a burst of endpoint updates).
    std::chrono::milliseconds coalesce{20};

    struct Status {
      bool write = false;  // write status and Events at all
      // Compete for the Lease and write only while holding it; false: always write (a single
      // replica, or tests).
      bool leader_elect = true;
      LeaderElector::Options lease;
    };
    Status status;
  };

  KubeSource(ClusterConfig config, Options options, Subscriber subscriber);
  KubeSource(const KubeSource&) = delete;
  KubeSource& operator=(const KubeSource&) = delete;
  ~KubeSource();

  // Starts the informers and returns at once; they keep retrying until the API answers.
  absl::Status Start();
  // Once it returns, the subscriber is not called again. Idempotent.
  void Stop();

 private:
  // What meshpilot holds of one object: the version it last accepted and, if its current
  // version is rejected, why.
  struct Entry {
    std::optional<convert::SourcedObject> accepted;
    std::optional<model::ConfigError> error;
    // The object without its status and write metadata: equal ones differ only in status.
    size_t content_hash = 0;
    std::optional<StatusTarget> status;  // for the kinds whose status meshpilot writes
  };
  // One per informer, keyed by "namespace/name".
  struct Store {
    std::map<std::string, Entry> entries;
    bool synced = false;
  };

  void Replace(size_t store, std::vector<nlohmann::json> objects);
  void Apply(size_t store, const nlohmann::json& object, bool deleted);
  // Converts `object`, keeping `previous`'s accepted version when the new one is rejected.
  Entry Convert(size_t store, const nlohmann::json& object, const Entry* previous) const;
  std::vector<StatusTarget> StatusTargets() const;  // under mu_
  bool Watched(const nlohmann::json& object) const;
  void PublishLoop();

  const Options options_;
  const Subscriber subscriber_;
  ApiClient client_;
  std::vector<std::unique_ptr<Informer>> informers_;
  std::vector<ApiResource> informer_resources_;  // by informer index
  // Status writes and the Lease have their own connection, which outlives the informers'
  // at shutdown so that the Lease can be released.
  std::unique_ptr<ApiClient> status_client_;
  std::unique_ptr<StatusWriter> status_writer_;
  std::unique_ptr<LeaderElector> elector_;

  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<Store> stores_;  // by informer index
  bool dirty_ = false;
  bool stopping_ = false;
  uint64_t version_ = 0;  // only the publisher thread
  std::thread publisher_;
};

}  // namespace meshpilot::source
