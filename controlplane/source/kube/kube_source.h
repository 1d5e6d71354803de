#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "controlplane/convert/object.h"
#include "controlplane/model/mesh_state.h"
#include "controlplane/source/kube/api_client.h"
#include "controlplane/source/kube/cluster_config.h"
#include "controlplane/source/kube/informer.h"
#include "controlplane/source/kube/label_selector.h"
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
// Namespaces are selected as istiod's meshConfig.discoverySelectors select them: with a
// namespace selector, only objects of namespaces whose labels match are admitted (the root
// namespace istio-system included: it too must match). Namespaces are watched, so a namespace
// whose labels change so that it enters or leaves the selection brings its objects in or
// takes them out at the next publish. --watched-namespaces narrows what is read at all.
//
// With Options::status, validation results go back to the cluster: the status subresource
// of every VirtualService, DestinationRule and AuthorizationPolicy, and an Event for each
// rejection, written only by the replica that holds the Lease (leader_election.h). An
// object's status is written once the state holding its current generation has been pushed
// (OnPushed), with the translator's warnings about it. Changes to an object's status alone
// (those writes coming back through the watch) publish nothing.
class KubeSource {
 public:
  using Subscriber = std::function<void(model::MeshStatePtr)>;

  struct Options {
    // Namespaces to read; empty: all. Cluster-scoped Namespaces are filtered to these.
    std::vector<std::string> watched_namespaces;
    // Of those, the namespaces whose objects are admitted (discoverySelectors).
    LabelSelector namespace_selector;
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

  // The state of `state_version` (or a later one) that this source published has been
  // installed and its push handed to every connected proxy; `warnings` are the translator's
  // about it. Objects whose current generation it holds get their status written.
  void OnPushed(uint64_t state_version, std::vector<model::ConfigError> warnings);

 private:
  // What meshpilot holds of one object: what serves of it and, if its newest version is
  // rejected, why (convert::ServedVersion).
  struct Entry {
    convert::ServedVersion served;
    std::string namespace_;  // empty for Namespaces
    std::map<std::string, std::string> labels;  // of Namespaces, for the selector
    // The object without its status and write metadata: equal ones differ only in status.
    size_t content_hash = 0;
    std::optional<StatusTarget> status;  // for the kinds whose status meshpilot writes
    // The first published state that holds this content; 0: none yet (new, changed, or in a
    // namespace not selected).
    uint64_t published_in = 0;
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
  // The namespaces whose objects are admitted, from the Namespaces store. Under mu_.
  std::set<std::string> SelectedNamespaces() const;
  bool Admitted(const std::string& key, const Entry& entry,
                const std::set<std::string>& selected) const;
  // Logs when the root namespace enters or leaves the selection. Under mu_.
  void LogRootSelection(const std::set<std::string>& selected);
  // What the status writer should write: the admitted objects whose content has been pushed.
  // Under mu_.
  std::vector<StatusTarget> StatusTargets() const;
  bool Watched(const nlohmann::json& object) const;
  void PublishLoop();

  const Options options_;
  const Subscriber subscriber_;
  ApiClient client_;
  std::vector<std::unique_ptr<Informer>> informers_;
  std::vector<ApiResource> informer_resources_;  // by informer index
  size_t namespace_store_ = 0;                   // the store of Namespaces
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
  uint64_t version_ = 0;         // of the last state published
  uint64_t pushed_version_ = 0;  // of the last state pushed (OnPushed)
  // The translator's warnings about the pushed state, by "Kind/namespace/name".
  std::map<std::string, std::vector<model::ConfigError>> warnings_;
  // Whether the root namespace was selected at the last publish (logged when it changes).
  std::optional<bool> root_selected_;
  std::thread publisher_;
};

}  // namespace meshpilot::source
