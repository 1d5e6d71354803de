#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "controlplane/model/mesh_state.h"
#include "controlplane/source/kube/api_client.h"
#include "controlplane/source/kube/informer.h"
#include "nlohmann/json.hpp"

namespace meshpilot::source {

// One Istio object (VirtualService, DestinationRule, AuthorizationPolicy) whose status
// meshpilot reports, as last read from the API.
struct StatusTarget {
  ApiResource resource;
  std::string namespace_;
  std::string name;
  std::string uid;
  std::string resource_version;
  int64_t generation = 0;
  nlohmann::json status;  // as the API holds it; null when none
  // Why its current generation is rejected ("spec.http[0]...: ...; spec...: ..."); empty
  // when accepted.
  std::string validation_error;
  // Said in the Accepted condition of a rejected object that still serves an older version.
  std::string serving_note;
  // What the translator warns about the version that serves (translator::CheckConfig).
  std::vector<model::ConfigError> warnings;
};

// The status meshpilot wants `target` to have once the state holding its generation has been
// pushed, in Istio's shape (IstioStatus): observedGeneration (the generation the Reconciled
// condition refers to); an Accepted condition; a Reconciled condition (True: that push has been
// sent); validationMessages: one per problem, IST0106 SchemaValidationError at level ERROR for
// a rejection, then the translator's warnings at level WARNING with their analyzer type.
// A condition's `lastTransitionTime` is kept from `target.status` while its status stays the
// same, so that an unchanged object yields exactly its current status.
nlohmann::json DesiredStatus(const StatusTarget& target, const std::string& now_rfc3339);

// Whether `current` already says what `desired` says (meshpilot's fields only).
bool StatusUpToDate(const nlohmann::json& current, const nlohmann::json& desired);

// Writes validation results and warnings to the status subresource of Istio objects, and a Kubernetes Event
// (reason Rejected) whenever an object's generation newly becomes rejected. Only while
// leading: replicas that are not leaders compute nothing. A status is written only when it
// differs from what the object already has, each write conditional on the resourceVersion
// it was computed from (a conflict waits for the watch to bring the newer object), so no two
// writers and no stale view can cause a storm. Runs on its own thread.
class StatusWriter {
 public:
  struct Options {
    std::string identity;  // reportingInstance of Events
    std::chrono::milliseconds retry_initial{500};
    std::chrono::milliseconds retry_max{30000};
  };
  StatusWriter(ApiSender& client, Options options);
  StatusWriter(const StatusWriter&) = delete;
  StatusWriter& operator=(const StatusWriter&) = delete;
  ~StatusWriter();

  void Start();
  void Stop();

  // The newest view of every target (replaces the previous one).
  void Update(std::vector<StatusTarget> targets);
  void SetLeading(bool leading);

  // Counters for tests and logs.
  uint64_t writes() const;
  uint64_t events() const;

 private:
  void Run();
  // One pass over the targets; false if something should be retried.
  bool Reconcile(const std::vector<StatusTarget>& targets);
  bool Write(const StatusTarget& target, const nlohmann::json& desired);
  void RecordEvent(const StatusTarget& target, const nlohmann::json& desired);

  ApiSender& client_;
  const Options options_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::vector<StatusTarget> targets_;
  bool dirty_ = false;
  bool leading_ = false;
  bool stopping_ = false;
  uint64_t writes_ = 0;
  uint64_t events_ = 0;
  // Only the writer's thread: per "kind/ns/name", the resourceVersion a write was based on
  // and what it wrote (skipped until the watch brings a newer object), and the last refusal
  // logged.
  struct Written {
    std::string based_on;
    nlohmann::json status;
  };
  std::map<std::string, Written> written_;
  std::map<std::string, std::string> refusals_;
  std::thread thread_;
};

}  // namespace meshpilot::source
