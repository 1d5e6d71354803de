#include "common/inotify_watch.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"

namespace meshpilot {

InotifyWatch::~InotifyWatch() { Close(); }

absl::Status InotifyWatch::Open() {
  if (inotify_fd_ >= 0) return absl::OkStatus();
  inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  stop_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (inotify_fd_ < 0 || stop_fd_ < 0) {
    absl::Status status = absl::ErrnoToStatus(errno, "cannot set up inotify");
    Close();
    return status;
  }
  return absl::OkStatus();
}

absl::Status InotifyWatch::Add(const std::string& directory, uint32_t events) {
  const int wd = inotify_add_watch(inotify_fd_, directory.c_str(), events);
  if (wd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot watch ", directory));
  std::lock_guard lock(mutex_);
  for (auto& [known, name] : directories_) {
    if (known == wd) return absl::OkStatus();  // the same folder again
  }
  directories_.emplace_back(wd, directory);
  return absl::OkStatus();
}

InotifyWatch::Wake InotifyWatch::Wait(int timeout_ms, std::vector<Event>* events) {
  pollfd fds[] = {{inotify_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
  const int ready = poll(fds, 2, timeout_ms);
  if (ready < 0 && errno == EINTR) return Wake::kTimeout;
  if (ready < 0 || fds[1].revents != 0) return Wake::kStop;
  if (fds[0].revents == 0) return Wake::kTimeout;
  alignas(inotify_event) char buffer[4096];
  ssize_t length;
  std::lock_guard lock(mutex_);
  while ((length = read(inotify_fd_, buffer, sizeof(buffer))) > 0) {
    for (char* at = buffer; at < buffer + length;) {
      const auto* event = reinterpret_cast<const inotify_event*>(at);
      if (events != nullptr) {
        Event& out = events->emplace_back();
        for (const auto& [wd, directory] : directories_) {
          if (wd == event->wd) out.directory = directory;
        }
        if (event->len > 0) out.name = event->name;  // NUL-padded
        out.mask = event->mask;
      }
      at += sizeof(inotify_event) + event->len;
    }
  }
  return Wake::kChange;
}

void InotifyWatch::Stop() {
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t written = write(stop_fd_, &one, sizeof(one));
}

void InotifyWatch::Close() {
  for (int* fd : {&inotify_fd_, &stop_fd_}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
  std::lock_guard lock(mutex_);
  directories_.clear();
}

}  // namespace meshpilot
