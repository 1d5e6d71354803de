#include "controlplane/push/push_controller.h"

namespace meshpilot::push {

PushController::PushController(Debouncer::Clock::duration quiet, Debouncer::Clock::duration max,
                               PushFn push)
    : push_(std::move(push)), debouncer_(quiet, max), thread_([this] { Run(); }) {}

PushController::~PushController() { Stop(); }

void PushController::OnStateChanged(model::MeshStatePtr state) {
  std::lock_guard lock(mu_);
  latest_ = std::move(state);
  debouncer_.OnChange(Debouncer::Clock::now());
  cv_.notify_one();
}

void PushController::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    cv_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
}

void PushController::Run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    auto deadline = debouncer_.Deadline();
    if (!deadline) {
      cv_.wait(lock);
      continue;
    }
    if (!debouncer_.Due(Debouncer::Clock::now())) {
      cv_.wait_until(lock, *deadline);
      continue;
    }
    debouncer_.Reset();
    model::MeshStatePtr state = latest_;
    lock.unlock();
    push_(std::move(state));
    lock.lock();
  }
}

}  // namespace meshpilot::push
