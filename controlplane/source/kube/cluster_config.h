#pragma once

#include <filesystem>
#include <string>

#include "absl/status/statusor.h"

namespace meshpilot::source {

// How to reach and authenticate to one Kubernetes API server. PEM blocks are held in memory
// (kubeconfig's *-data fields and files alike), so nothing is written to disk.
struct ClusterConfig {
  std::string server;  // "https://10.0.0.1:443"
  std::string ca_pem;  // empty: the system's trust store
  bool insecure_skip_tls_verify = false;
  std::string client_cert_pem;
  std::string client_key_pem;
  std::string token;       // a fixed bearer token
  std::string token_file;  // or a file re-read as it rotates (service-account tokens)
};

// Reads a kubeconfig file: the cluster and user of `context`, or of the current context when
// `context` is empty. Supports client certificates and keys, bearer tokens and token files,
// CA bundles, inline (*-data) or as files relative to the kubeconfig; not exec or auth-provider
// plugins, which fail with a message saying so.
absl::StatusOr<ClusterConfig> LoadKubeconfig(const std::filesystem::path& path,
                                             const std::string& context = "");

// The service account's access from inside a pod: KUBERNETES_SERVICE_HOST and
// KUBERNETES_SERVICE_PORT, and the token and CA bundle mounted in `account_dir`.
inline constexpr char kServiceAccountDir[] = "/var/run/secrets/kubernetes.io/serviceaccount";
absl::StatusOr<ClusterConfig> InClusterConfig(
    const std::filesystem::path& account_dir = kServiceAccountDir);

}  // namespace meshpilot::source
