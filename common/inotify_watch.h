#pragma once

// Folders watched with inotify, and a way to wake the thread that waits on them: what
// meshpilot's file source and meshproxy's SDS files (path_config_source) share.

#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace meshpilot {

class InotifyWatch {
 public:
  InotifyWatch() = default;
  InotifyWatch(const InotifyWatch&) = delete;
  InotifyWatch& operator=(const InotifyWatch&) = delete;
  ~InotifyWatch();

  absl::Status Open();
  // Watches `directory` for `events` (IN_* flags); also while another thread waits.
  absl::Status Add(const std::string& directory, uint32_t events);

  struct Event {
    std::string directory;  // as given to Add
    std::string name;       // the entry in it, empty for the folder itself
    uint32_t mask = 0;
  };
  enum class Wake { kChange, kTimeout, kStop };
  // Waits up to `timeout_ms` (-1: forever) for changes (all of those already queued are
  // read and, with `events`, returned) or for Stop().
  Wake Wait(int timeout_ms, std::vector<Event>* events = nullptr);
  // From another thread: the current or next Wait returns kStop.
  void Stop();
  void Close();

 private:
  int inotify_fd_ = -1;
  int stop_fd_ = -1;  // an eventfd
  std::mutex mutex_;  // guards directories_: Add and Wait may run on two threads
  std::vector<std::pair<int, std::string>> directories_;  // by watch descriptor
};

}  // namespace meshpilot
