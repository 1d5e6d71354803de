#include "controlplane/source/kube/cluster_config.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "yaml-cpp/yaml.h"

namespace meshpilot::source {
namespace {

absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  std::ostringstream content;
  content << file.rdbuf();
  return std::move(content).str();
}

std::string Scalar(const YAML::Node& map, const char* key) {
  if (!map.IsMap()) return "";
  YAML::Node value = map[key];
  return value.IsDefined() && value.IsScalar() ? value.Scalar() : "";
}

// The entry called `name` of a kubeconfig list (clusters, users, contexts): its inner mapping.
YAML::Node Named(const YAML::Node& root, const char* list, const char* field,
                 const std::string& name) {
  const YAML::Node items = root[list];
  if (items.IsSequence()) {
    for (const YAML::Node& item : items) {
      if (Scalar(item, "name") == name && item[field].IsMap()) return item[field];
    }
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

// A PEM from `<key>-data` (base64) or from the file `<key>`, relative to the kubeconfig.
absl::StatusOr<std::string> Pem(const YAML::Node& map, const std::string& key,
                                const std::filesystem::path& base) {
  if (std::string data = Scalar(map, (key + "-data").c_str()); !data.empty()) {
    std::string decoded;
    if (!absl::Base64Unescape(data, &decoded)) {
      return absl::InvalidArgumentError(absl::StrCat(key, "-data is not base64"));
    }
    return decoded;
  }
  std::string file = Scalar(map, key.c_str());
  if (file.empty()) return std::string();
  std::filesystem::path path(file);
  if (path.is_relative()) path = base / path;
  return ReadFile(path);
}

absl::StatusOr<ClusterConfig> ParseKubeconfig(const YAML::Node& root,
                                              const std::filesystem::path& path,
                                              const std::string& wanted_context) {
  const std::filesystem::path base = path.parent_path();
  std::string context_name = wanted_context.empty() ? Scalar(root, "current-context")
                                                    : wanted_context;
  if (context_name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path.string(), ": no current-context and no context chosen"));
  }
  YAML::Node context = Named(root, "contexts", "context", context_name);
  if (!context.IsDefined()) {
    return absl::NotFoundError(absl::StrCat(path.string(), ": no context ", context_name));
  }
  std::string cluster_name = Scalar(context, "cluster");
  YAML::Node cluster = Named(root, "clusters", "cluster", cluster_name);
  if (!cluster.IsDefined()) {
    return absl::NotFoundError(absl::StrCat(path.string(), ": no cluster ", cluster_name));
  }
  ClusterConfig config;
  config.server = Scalar(cluster, "server");
  if (config.server.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path.string(), ": cluster ", cluster_name, " has no server"));
  }
  config.insecure_skip_tls_verify = Scalar(cluster, "insecure-skip-tls-verify") == "true";
  absl::StatusOr<std::string> ca = Pem(cluster, "certificate-authority", base);
  if (!ca.ok()) return ca.status();
  config.ca_pem = *std::move(ca);

  std::string user_name = Scalar(context, "user");
  YAML::Node user = Named(root, "users", "user", user_name);
  if (!user.IsDefined()) return config;  // anonymous
  if (user["exec"].IsDefined() || user["auth-provider"].IsDefined()) {
    return absl::UnimplementedError(absl::StrCat(
        path.string(), ": user ", user_name,
        " authenticates with an exec or auth-provider plugin, which meshpilot does not run; "
        "use a client certificate or a token"));
  }
  absl::StatusOr<std::string> cert = Pem(user, "client-certificate", base);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = Pem(user, "client-key", base);
  if (!key.ok()) return key.status();
  config.client_cert_pem = *std::move(cert);
  config.client_key_pem = *std::move(key);
  if (config.client_cert_pem.empty() != config.client_key_pem.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path.string(), ": user ", user_name, " needs both a client certificate and a key"));
  }
  config.token = Scalar(user, "token");
  if (std::string file = Scalar(user, "tokenFile"); !file.empty()) {
    std::filesystem::path token_path(file);
    config.token_file = (token_path.is_relative() ? base / token_path : token_path).string();
  }
  return config;
}

}  // namespace

absl::StatusOr<ClusterConfig> LoadKubeconfig(const std::filesystem::path& path,
                                             const std::string& context) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  try {
    return ParseKubeconfig(YAML::Load(*text), path, context);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": not a kubeconfig: ", e.what()));
  }
}

absl::StatusOr<ClusterConfig> InClusterConfig(const std::filesystem::path& account_dir) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || *host == '\0' || port == nullptr || *port == '\0') {
    return absl::FailedPreconditionError(
        "not running in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are "
        "not set");
  }
  ClusterConfig config;
  std::string host_text = host;
  if (host_text.find(':') != std::string::npos) host_text = absl::StrCat("[", host_text, "]");
  config.server = absl::StrCat("https://", host_text, ":", port);
  absl::StatusOr<std::string> ca = ReadFile(account_dir / "ca.crt");
  if (!ca.ok()) return ca.status();
  config.ca_pem = *std::move(ca);
  config.token_file = (account_dir / "token").string();
  if (absl::StatusOr<std::string> token = ReadFile(config.token_file); !token.ok()) {
    return token.status();
  }
  return config;
}

}  // namespace meshpilot::source
