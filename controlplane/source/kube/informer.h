#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "controlplane/source/kube/api_client.h"
#include "controlplane/source/kube/backoff.h"
#include "nlohmann/json.hpp"

namespace meshpilot::source {

// A kind of object as the API serves it.
struct ApiResource {
  std::string api_version;  // "v1", "discovery.k8s.io/v1", "networking.istio.io/v1"
  std::string kind;         // "Service"
  std::string plural;       // "services"
  bool namespaced = true;

  // "/api/v1/services", "/apis/networking.istio.io/v1/namespaces/ns/virtualservices"
  std::string Path(const std::string& namespace_) const;
};

// client-go's informer semantics for one resource (in one namespace, or all): list (in pages)
// then watch from the list's resourceVersion, with bookmarks; after a dropped connection, watch
// again from the last resourceVersion seen; on 410 Gone, list again; between failed attempts,
// exponential backoff with jitter. Runs on its own thread; the callbacks run there.
class Informer {
 public:
  struct Callbacks {
    // The complete current set of objects, after every (re)list. Each has apiVersion and kind.
    std::function<void(std::vector<nlohmann::json> objects)> replace;
    // One change from the watch: an object added or modified, or (`deleted`) its last state.
    std::function<void(nlohmann::json object, bool deleted)> apply;
  };
  struct Options {
    int64_t page_size = 500;
    std::chrono::milliseconds backoff_initial{200};
    std::chrono::milliseconds backoff_max{10000};
    // The server ends each watch after a random time in [min, 2*min), as client-go asks.
    std::chrono::seconds watch_timeout_min{300};
  };

  Informer(ApiClient& client, ApiResource resource, std::string namespace_, Callbacks callbacks,
           Options options);
  Informer(const Informer&) = delete;
  Informer& operator=(const Informer&) = delete;
  ~Informer();

  void Start();
  // Returns once the thread has ended; the ApiClient must be shut down first, or Stop waits
  // for the current request to end.
  void Stop();

  // "networking.istio.io/v1 virtualservices in ns" for logs.
  const std::string& name() const { return name_; }

 private:
  enum class WatchEnd { kExpired, kGone, kFailed, kStopped };

  void Run();
  // Lists every page; on success the objects went to `replace` and resource_version_ is set.
  absl::Status List();
  WatchEnd Watch();
  // Waits `delay` or until Stop(); false once stopping.
  bool Sleep(std::chrono::milliseconds delay);

  ApiClient& client_;
  const ApiResource resource_;
  const std::string namespace_;
  const Callbacks callbacks_;
  const Options options_;
  const std::string name_;

  std::string resource_version_;  // empty: list first
  Backoff backoff_;
  int failures_ = 0;  // watch attempts failed in a row, for quieter logs during an outage

  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace meshpilot::source
