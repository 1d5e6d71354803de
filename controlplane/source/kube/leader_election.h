#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "controlplane/source/kube/api_client.h"
#include "nlohmann/json.hpp"

namespace meshpilot::source {

// client-go's leader election over one coordination.k8s.io/v1 Lease: the holder renews it
// every `renew_period`; the others look every `retry_period` and take it once it has not been
// renewed for `lease_duration`, as measured by their own clock from when they last saw it
// change (so clocks need not agree). Every write carries the resourceVersion it read, so two
// candidates cannot both win. A leader whose renewals keep failing steps down after two
// thirds of the lease duration, before anyone else may take over. Stop() releases a held
// lease, so a successor takes over at its next look instead of after the lease expires.
class LeaderElector {
 public:
  struct Options {
    std::string namespace_ = "meshpilot-system";
    std::string name = "meshpilot-leader";
    std::string identity;  // the pod name, or hostname_random
    std::chrono::seconds lease_duration{15};
    std::chrono::milliseconds renew_period{5000};
    std::chrono::milliseconds retry_period{2000};
  };
  // Called on the elector's thread whenever leadership starts (true) or ends (false).
  using OnChange = std::function<void(bool leading)>;

  LeaderElector(ApiClient& client, Options options, OnChange on_change);
  LeaderElector(const LeaderElector&) = delete;
  LeaderElector& operator=(const LeaderElector&) = delete;
  ~LeaderElector();

  void Start();
  // Ends leadership (on_change(false) if held), releases the lease, joins the thread.
  void Stop();

  bool leading() const { return leading_; }
  const Options& options() const { return options_; }

 private:
  enum class Attempt { kLeading, kHeldByOther, kFailed };

  void Run();
  Attempt TryAcquireOrRenew();
  void Release();
  void SetLeading(bool leading);
  // Logs `problem` when it differs from the last one (an outage or a 403 is said once).
  void Report(const std::string& problem);
  bool Sleep(std::chrono::milliseconds delay);
  std::string LeasePath(bool collection) const;

  ApiClient& client_;
  const Options options_;
  const OnChange on_change_;

  std::atomic<bool> leading_ = false;
  // Only the elector's thread touches these.
  nlohmann::json lease_;  // the lease as last read or written
  std::string observed_version_;
  std::chrono::steady_clock::time_point observed_at_;
  std::chrono::steady_clock::time_point renewed_at_;
  std::string last_problem_;
  std::string last_holder_;

  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

// The identity this replica claims leases with: $POD_NAME (the Deployment sets it from the
// downward API), else the hostname with a random suffix, so that replicas sharing a host
// still differ.
std::string DefaultIdentity();

}  // namespace meshpilot::source
