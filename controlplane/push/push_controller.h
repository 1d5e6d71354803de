#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "controlplane/model/mesh_state.h"
#include "controlplane/push/debouncer.h"

namespace meshpilot::push {

// Takes every MeshState a source publishes and, debounced, hands the newest one to `push`
// on its own thread, so that sources never wait for proxies and bursts become one push.
class PushController {
 public:
  using PushFn = std::function<void(model::MeshStatePtr)>;

  PushController(Debouncer::Clock::duration quiet, Debouncer::Clock::duration max, PushFn push);
  ~PushController();

  void OnStateChanged(model::MeshStatePtr state);
  void Stop();

 private:
  void Run();

  PushFn push_;
  std::mutex mu_;
  std::condition_variable cv_;
  Debouncer debouncer_;
  model::MeshStatePtr latest_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace meshpilot::push
