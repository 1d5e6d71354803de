#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "common/inotify_watch.h"
#include "controlplane/convert/object.h"
#include "controlplane/model/mesh_state.h"

namespace meshpilot::source {

// Serves the Kubernetes and Istio objects of a folder of YAML files (*.yaml and *.yml, any
// number of documents each; subfolders and hidden files are not read).
//
// Start() loads the folder and hands the first MeshState to the subscriber before returning;
// a background thread then watches the folder with inotify and publishes a new MeshState,
// with a higher version, after every change that alters what the folder holds.
//
// Bad input loses nothing. A document that fails to parse or validate is reported in
// MeshState::errors (origin "dir/file.yaml[2]") and logged; the other documents keep serving,
// and so does the last accepted version of that same object, if there was one. A file that is
// not YAML at all is reported with the line and column of the error, and the objects it last
// held keep serving until it parses again. Deleting a file removes its objects.
// Whether the folder's entry is config: *.yaml and *.yml, not hidden (hidden files are editors'
// swap files and a ConfigMap's internal "..data" entries).
bool IsConfigFile(const std::filesystem::path& path);

class FileSource {
 public:
  using Subscriber = std::function<void(model::MeshStatePtr)>;

  // Changes closer together than `quiet_period` (an editor's write and rename, a ConfigMap's
  // symlink swap) make a single publish.
  FileSource(std::filesystem::path directory, Subscriber subscriber,
             std::chrono::milliseconds quiet_period = std::chrono::milliseconds(50));
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;
  ~FileSource();

  // Fails when the folder cannot be watched or listed; nothing is published then.
  absl::Status Start();
  // Stops watching; once it returns, the subscriber is not called again. Idempotent.
  void Stop();

 private:
  // What one file contributes: the objects it last held validly and its current errors.
  struct FileState {
    std::string content;
    std::vector<convert::SourcedObject> objects;
    std::vector<model::ConfigError> errors;
  };

  // Re-reads the folder; true when any file appeared, changed or vanished.
  bool Rescan();
  FileState Load(const std::string& origin, std::string content, const FileState* previous);
  void Publish();
  void Watch();
  InotifyWatch::Wake WaitForChange(int timeout_ms);

  const std::filesystem::path directory_;
  const Subscriber subscriber_;
  const std::chrono::milliseconds quiet_period_;

  // By file name. Only the thread that runs Start(), then the watcher thread, touch these.
  std::map<std::string, FileState> files_;
  uint64_t version_ = 0;

  InotifyWatch watch_;
  std::thread watcher_;
};

}  // namespace meshpilot::source
