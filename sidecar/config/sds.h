#pragma once

// SDS from the file system, as Envoy without a control plane: an SdsSecretConfig whose
// sds_config is a path_config_source names a file holding a DiscoveryResponse (JSON, or YAML
// for *.yaml / *.yml) of envoy.extensions.transport_sockets.tls.v3.Secret resources. The file
// is read when the resource that names it is parsed, and again when it (or the watched
// directory) changes: SecretFileWatcher calls back whoever registered for it.

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "common/inotify_watch.h"
#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"

namespace meshpilot::sidecar::config {

struct SdsFile {
  std::string secret_name;
  std::string path;
  std::string watched_directory;  // empty: the file itself (and those the secret names)
};

// Only path_config_source (and the deprecated `path`) are read; other sources are NACKed.
absl::StatusOr<SdsFile> ParseSdsSecretConfig(
    const envoy::extensions::transport_sockets::tls::v3::SdsSecretConfig& proto,
    const std::string& field);

// The secret named `file.secret_name` in the file; errors name the file and what is wrong.
absl::StatusOr<envoy::extensions::transport_sockets::tls::v3::Secret> ReadSecret(
    const SdsFile& file);

// One inotify thread for the process, started by the first registration. A registration
// lives as long as its owner (held weakly): reloads are called on the watcher's thread.
class SecretFileWatcher {
 public:
  static SecretFileWatcher& Get();
  ~SecretFileWatcher();

  // `reload` runs when `file` or, without a watched directory, a file its secret names
  // (`secret_files`) is replaced (moved to or written and closed), while `owner` lives. What
  // is registered again for the same owner is not added twice.
  void Register(const SdsFile& file, const std::vector<std::string>& secret_files,
                std::weak_ptr<const void> owner, std::function<void()> reload);

 private:
  struct Registration {
    std::string directory;
    std::string name;  // empty: any entry of the directory
    std::weak_ptr<const void> owner;
    std::function<void()> reload;
  };
  SecretFileWatcher() = default;
  void Run();

  std::mutex mutex_;
  std::vector<Registration> registrations_;
  InotifyWatch watch_;
  std::thread thread_;
};

}  // namespace meshpilot::sidecar::config
